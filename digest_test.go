package httpmirror_test

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/policy"
)

// digestSource is one way an origin (or the URL) publishes an object's
// digest: publish returns the path to serve good at and the response
// headers that go with it.
type digestSource struct {
	name    string
	publish func(good []byte) (path string, h http.Header)
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func sum256(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func crc32c(b []byte) []byte {
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
	return out[:]
}

var digestSources = []digestSource{
	{"url: OCI blob", func(good []byte) (string, http.Header) {
		return "/v2/library/app/blobs/sha256:" + hex.EncodeToString(sum256(good)), nil
	}},
	{"url: apt by-hash SHA256", func(good []byte) (string, http.Header) {
		return "/debian/dists/stable/main/binary-amd64/by-hash/SHA256/" + hex.EncodeToString(sum256(good)), nil
	}},
	{"url: apt by-hash SHA512", func(good []byte) (string, http.Header) {
		s := sha512.Sum512(good)
		return "/debian/dists/stable/main/binary-amd64/by-hash/SHA512/" + hex.EncodeToString(s[:]), nil
	}},
	{"url: blobs/<sha256>", func(good []byte) (string, http.Header) {
		return "/models/org/name/blobs/" + hex.EncodeToString(sum256(good)), nil
	}},
	{"digest-path", func(good []byte) (string, http.Header) {
		return "/releases/v1/sha256/" + hex.EncodeToString(sum256(good)) + "/tool.tgz", nil
	}},
	{"Repr-Digest", func(good []byte) (string, http.Header) {
		return "/repr.bin", http.Header{"Repr-Digest": {"sha-256=:" + b64(sum256(good)) + ":"}}
	}},
	{"Content-Digest sha-512", func(good []byte) (string, http.Header) {
		s := sha512.Sum512(good)
		return "/content.bin", http.Header{"Content-Digest": {"sha-512=:" + b64(s[:]) + ":"}}
	}},
	{"x-amz-checksum-sha256", func(good []byte) (string, http.Header) {
		return "/bucket/obj.bin", http.Header{"X-Amz-Checksum-Sha256": {b64(sum256(good))}}
	}},
	{"x-amz-checksum-crc32c", func(good []byte) (string, http.Header) {
		return "/bucket/obj32.bin", http.Header{"X-Amz-Checksum-Crc32c": {b64(crc32c(good))}}
	}},
	{"x-goog-hash", func(good []byte) (string, http.Header) {
		m := md5.Sum(good)
		return "/gcs/obj.bin", http.Header{"X-Goog-Hash": {"crc32c=" + b64(crc32c(good)) + ",md5=" + b64(m[:])}}
	}},
	{"Content-MD5", func(good []byte) (string, http.Header) {
		m := md5.Sum(good)
		return "/md5.bin", http.Header{"Content-Md5": {b64(m[:])}}
	}},
}

// withDigestPath adds the digest-path source's pattern.
func withDigestPath(m *httpmirror.MirrorHandler) {
	m.DigestPaths = []string{`/releases/v1/(?P<alg>sha256)/(?P<hex>[0-9a-f]{64})/`}
}

// flip returns a copy of b with one byte changed: same length, other bytes.
func flip(b []byte, at int) []byte {
	c := append([]byte(nil), b...)
	c[at] ^= 0x40
	return c
}

// segmented makes fills of objects over 64 KiB use four connections.
func segmented(m *httpmirror.MirrorHandler) {
	m.FillConnections = 4
	m.FillSegmentSize = 64 << 10
}

// The mirror checks every digest published for an object while it
// fetches it: from each source, a correct object is stored and its hits
// carry its SHA-256 (Repr-Digest); one byte flipped (same length) aborts
// the client's transfer, stores nothing, and the next request fetches
// again. On local disk and S3, over one connection and in segments (the
// first answer then a part: the digests of a whole response come from a
// HEAD).
func TestDigestSources(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		for _, fill := range []string{"single", "segmented"} {
			t.Run(backend+"/"+fill, func(t *testing.T) {
				for i, src := range digestSources {
					t.Run(src.name, func(t *testing.T) {
						testDigestSource(t, backend, fill == "segmented", src, i)
					})
				}
			})
		}
	}
}

func testDigestSource(t *testing.T, backend string, segments bool, src digestSource, seed int) {
	o := newOrigin(t)
	good := payload(uint64(500+seed), 300<<10+17)
	path, h := src.publish(good)
	f := o.Put(path, good)
	f.Header = h
	opts := []func(*httpmirror.MirrorHandler){withDigestPath}
	var stored func() bool
	if backend == "s3" {
		st := newS3(t, nil, "")
		opts = append(opts, withStore(st), func(m *httpmirror.MirrorHandler) { m.NoRedirect = true })
		stored = func() bool { _, err := st.Stat(context.Background(), o.HostPort()+path); return err == nil }
	}
	if segments {
		opts = append(opts, segmented)
	}
	m := newMirror(t, o, opts...)
	if stored == nil {
		stored = func() bool { _, err := m.store.Stat(context.Background(), o.HostPort()+path); return err == nil }
	}
	u := m.url(o, path)

	// Correct: stored, and hits say what the bytes hash to.
	if r := get(t, u); r.StatusCode != 200 || r.err != nil || sha(r.body) != sha(good) {
		t.Fatalf("correct object: status %d, err %v, sha256 %s", r.StatusCode, r.err, sha(r.body))
	}
	waitFills(t, m)
	if !stored() {
		t.Fatalf("correct object not stored")
	}
	r := get(t, u)
	if want := "sha-256=:" + b64(sum256(good)) + ":"; r.Header.Get("Repr-Digest") != want || sha(r.body) != sha(good) {
		t.Errorf("hit: Repr-Digest %q; want %q", r.Header.Get("Repr-Digest"), want)
	}
	gets := o.Gets.Load()

	// Corrupted: the origin serves other bytes of the same length.
	if _, err := m.h.Purge(context.Background(), o.URL+path); err != nil {
		t.Fatal(err)
	}
	f.Data = flip(good, len(good)/2)
	for i := range 2 {
		r := get(t, u)
		if r.err == nil && r.StatusCode == 200 && len(r.body) == len(good) {
			t.Fatalf("corrupted object, request %d: served whole (sha256 %s)", i, sha(r.body))
		}
		waitFills(t, m)
		if stored() {
			t.Fatalf("corrupted object, request %d: stored", i)
		}
	}
	if n := o.Gets.Load() - gets; n < 2 {
		t.Errorf("origin GETs %d for two requests of the corrupted object; want each to fetch again", n)
	}
}

// Ten clients of one corrupted object share one download and all see it
// aborted; nothing is stored, and the next request fetches again.
func TestDigestMismatchAbortsEveryClient(t *testing.T) {
	for _, segments := range []bool{false, true} {
		t.Run(fmt.Sprintf("segmented %v", segments), func(t *testing.T) {
			o := newOrigin(t)
			good := payload(600, 1<<20+3)
			path := "/v2/library/app/blobs/sha256:" + hex.EncodeToString(sum256(good))
			o.Put(path, flip(good, 1<<19))
			const clients = 10
			allIn := newGate(t)
			opts := []func(*httpmirror.MirrorHandler){}
			if segments {
				opts = append(opts, segmented)
			}
			m := newMirror(t, o, opts...)
			openWhenEntered(m, clients, allIn)
			o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
				allIn.Wait()
				return false
			})
			u := m.url(o, path)
			var wg sync.WaitGroup
			results := make([]response, clients)
			for i := range clients {
				wg.Go(func() { results[i] = get(t, u) })
			}
			wg.Wait()
			for i, r := range results {
				if r.err == nil && r.StatusCode == 200 && len(r.body) == len(good) {
					t.Errorf("client %d: whole body served", i)
				}
			}
			waitFills(t, m)
			if n := countFiles(t, m.root+"/objects"); n != 0 {
				t.Errorf("%d objects stored", n)
			}
			before := o.Gets.Load()
			get(t, u)
			waitFills(t, m)
			if o.Gets.Load() == before {
				t.Errorf("the next request did not fetch again")
			}
			// Repaired, it is stored with its digest.
			o.Put(path, good)
			get(t, u)
			waitFills(t, m)
			r := get(t, u)
			if want := "sha-256=:" + b64(sum256(good)) + ":"; r.err != nil || r.Header.Get("Repr-Digest") != want || sha(r.body) != sha(good) {
				t.Errorf("after the repair: err %v, Repr-Digest %q; want %q and the good bytes", r.err, r.Header.Get("Repr-Digest"), want)
			}
		})
	}
}

// The Hugging Face Hub publishes a large file's SHA-256 as the
// X-Linked-Etag of its resolve redirect: a CDN answer of other bytes is
// refused; a 64-hex ETag from another host means nothing.
func TestDigestHubLinkedEtag(t *testing.T) {
	good := payload(700, 200<<10)
	var mu sync.Mutex
	cdnData := good
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/org/model/resolve/"):
			w.Header().Set("X-Linked-Etag", `"`+hex.EncodeToString(sum256(good))+`"`)
			http.Redirect(w, r, "http://cdn-lfs.huggingface.co/blob", http.StatusFound)
		case r.URL.Path == "/blob":
			mu.Lock()
			data := cdnData
			mu.Unlock()
			w.Header().Set("Content-Length", fmt.Sprint(len(data)))
			w.Write(data)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(origin.Close)
	// Every host is this server: huggingface.co and its CDN are names the
	// test cannot resolve.
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, origin.Listener.Addr().String())
	}
	m := newMirror(t, nil, func(m *httpmirror.MirrorHandler) {
		m.UpstreamScheme = "http"
		m.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{ProxyDial: dial, AllowPrivate: true})
	})
	u := m.URL + "/huggingface.co/org/model/resolve/main/weights.bin"
	if r := get(t, u); r.StatusCode != 200 || sha(r.body) != sha(good) {
		t.Fatalf("correct: status %d, sha256 %s", r.StatusCode, sha(r.body))
	}
	waitFills(t, m)
	if _, err := m.h.Purge(context.Background(), "https://huggingface.co/org/model/resolve/main/weights.bin"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	cdnData = flip(good, 10)
	mu.Unlock()
	if r := get(t, u); r.err == nil && len(r.body) == len(good) {
		t.Fatalf("corrupted CDN answer served whole")
	}
	waitFills(t, m)
	if _, err := m.store.Stat(context.Background(), "huggingface.co/org/model/resolve/main/weights.bin"); err == nil {
		t.Errorf("corrupted object stored")
	}
}

// An object stored with no published digest still has its SHA-256 kept
// and sent; a digest of an algorithm the mirror cannot check changes
// nothing.
func TestDigestComputedAndUnknown(t *testing.T) {
	o := newOrigin(t)
	data := payload(800, 70000)
	o.Put("/plain.bin", data)
	f := o.Put("/unknown.bin", data)
	f.Header = http.Header{"Repr-Digest": {"unixsum=:AAAA:"}}
	m := newMirror(t, o)
	for _, p := range []string{"/plain.bin", "/unknown.bin"} {
		get(t, m.url(o, p))
		waitFills(t, m)
		info, err := m.store.Stat(context.Background(), o.HostPort()+p)
		if err != nil {
			t.Fatalf("%s not stored: %v", p, err)
		}
		if got, ok := policy.StoredSHA256(info); !ok || hex.EncodeToString(got) != sha(data) {
			t.Errorf("%s: stored digest %x, %v; want %s", p, got, ok, sha(data))
		}
		if r := get(t, m.url(o, p)); r.Header.Get("Repr-Digest") != "sha-256=:"+b64(sum256(data))+":" {
			t.Errorf("%s: Repr-Digest %q", p, r.Header.Get("Repr-Digest"))
		}
		if st, err := m.h.Lookup(context.Background(), o.URL+p); err != nil || st.SHA256 != sha(data) {
			t.Errorf("%s: Lookup sha256 %q, %v; want %s", p, st.SHA256, err, sha(data))
		}
	}
}
