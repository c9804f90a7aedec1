package httpmirror_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/s3"
)

// TestMain stops the versitygw that the S3 tests of this package share.
func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// s3Store is an S3 backend on a fresh bucket of srv.
type s3Store struct {
	*s3.Backend
	srv    *s3test.Server
	bucket string
	gets   atomic.Int64 // GET requests the backend sent to the store
	all    atomic.Int64 // every request the backend sent to the store
}

// newS3 returns an S3 backend on a fresh bucket of srv (the shared server
// when nil), configured from the storage URL form plus query (without the
// leading '&').
func newS3(t *testing.T, srv *s3test.Server, query string) *s3Store {
	t.Helper()
	if srv == nil {
		srv = s3test.Shared(t)
	}
	st := &s3Store{srv: srv, bucket: srv.Bucket(t)}
	raw := srv.StorageURL(st.bucket, "")
	if query != "" {
		raw += "&" + query
	}
	cfg, err := s3.ParseURL(raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = testLogger(t)
	cfg.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		st.all.Add(1)
		if r.Method == http.MethodGet && !r.URL.Query().Has("uploads") {
			st.gets.Add(1)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	b, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st.Backend = b
	return st
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// withStore makes the mirror cache in b.
func withStore(b storage.Backend) func(*httpmirror.MirrorHandler) {
	return func(h *httpmirror.MirrorHandler) { h.RemoteCache = b }
}

func noTee(h *httpmirror.MirrorHandler) { h.TeeResponse = false }

// follow fetches a redirect target with a plain client, as a downloader
// following the mirror's 302 would.
func follow(t *testing.T, r response) response {
	t.Helper()
	if r.StatusCode != http.StatusFound {
		t.Fatalf("status %d; want 302", r.StatusCode)
	}
	return get(t, r.Header.Get("Location"))
}

// objectKeyOf returns the S3 object key the mirror stores path of origin o
// under.
func objectKeyOf(t *testing.T, st *s3Store, o *testOrigin, path string) string {
	t.Helper()
	k, err := st.ObjectKey(o.HostPort() + path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Acceptance 1: a miss is fetched once and answered with a redirect to a
// presigned URL of the stored object; later requests are redirected
// without reaching the origin.
func TestS3MissRedirectsToPresignedURL(t *testing.T) {
	for _, tee := range []bool{false, true} {
		t.Run(fmt.Sprintf("tee %v", tee), func(t *testing.T) {
			o := newOrigin(t)
			data := payload(31, 3<<20+7)
			o.Put("/rel/tool.tar.gz", data)
			st := newS3(t, nil, "")
			m := newMirror(t, o, withStore(st), func(h *httpmirror.MirrorHandler) { h.TeeResponse = tee })
			u := m.url(o, "/rel/tool.tar.gz")

			r := get(t, u)
			if tee {
				// The first client streams the fill; the next ones are hits.
				if r.StatusCode != 200 || sha(r.body) != sha(data) {
					t.Fatalf("streamed miss: status %d, %d bytes; want 200 with the file", r.StatusCode, len(r.body))
				}
				waitFills(t, m)
				r = get(t, u)
			}
			if r.StatusCode != http.StatusFound {
				t.Fatalf("status %d; want 302", r.StatusCode)
			}
			loc := r.Header.Get("Location")
			if !strings.HasPrefix(loc, st.srv.Endpoint+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
				t.Fatalf("Location %q; want a presigned URL of the store", loc)
			}
			if f := follow(t, r); f.StatusCode != 200 || sha(f.body) != sha(data) {
				t.Fatalf("following the redirect: status %d, sha256 %s; want 200, %s", f.StatusCode, sha(f.body), sha(data))
			}
			r2 := get(t, u)
			if f := follow(t, r2); sha(f.body) != sha(data) {
				t.Fatalf("second redirect: sha256 %s; want %s", sha(f.body), sha(data))
			}
			// HEAD of a hit is answered here, from the stored headers.
			h := do(t, http.MethodHead, u, nil)
			if h.StatusCode != 200 || h.ContentLength != int64(len(data)) || h.Header.Get("Location") != "" || len(h.body) != 0 {
				t.Fatalf("HEAD of a hit: status %d, length %d, Location %q; want 200 with the length and no redirect",
					h.StatusCode, h.ContentLength, h.Header.Get("Location"))
			}
			if n := o.Gets.Load(); n != 1 {
				t.Errorf("origin saw %d GETs; want 1", n)
			}
		})
	}
}

// Acceptance 2: the storage URL form with ROOTDIR and a sign endpoint:
// objects live under the prefix, and redirects point at the sign endpoint.
func TestS3SignEndpointAndRootDir(t *testing.T) {
	srv := s3test.Shared(t)
	_, port, _ := strings.Cut(srv.Addr, ":")
	o := newOrigin(t)
	data := payload(32, 100000)
	o.Put("/pool/pkg.deb", data)
	// httpmirror talks to the store as localhost; clients are sent to
	// 127.0.0.1.
	st := &s3Store{srv: srv, bucket: srv.Bucket(t)}
	cfg, err := s3.ParseURL(fmt.Sprintf("s3://%s:%s@%s.%s/mirror/root?regionendpoint=http://localhost:%s&signendpoint=http://127.0.0.1:%s&forcepathstyle=true",
		srv.AccessKey, srv.SecretKey, st.bucket, s3test.Region, port, port))
	if err != nil {
		t.Fatal(err)
	}
	if st.Backend, err = s3.New(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := newMirror(t, o, withStore(st), noTee)

	r := get(t, m.url(o, "/pool/pkg.deb"))
	loc, err := url.Parse(r.Header.Get("Location"))
	if err != nil || loc.Host != "127.0.0.1:"+port {
		t.Fatalf("Location %q; want host 127.0.0.1:%s (the sign endpoint)", r.Header.Get("Location"), port)
	}
	if f := follow(t, r); f.StatusCode != 200 || sha(f.body) != sha(data) {
		t.Fatalf("following: status %d; want 200 with the file", f.StatusCode)
	}
	key := objectKeyOf(t, st, o, "/pool/pkg.deb")
	if want := "mirror/root/" + o.HostPort() + "/pool/pkg.deb"; key != want {
		t.Errorf("object key %q; want %q", key, want)
	}
	if _, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: &st.bucket, Key: &key}); err != nil {
		t.Errorf("object not in the bucket under the root directory: %v", err)
	}
}

// Acceptance 2: with LinkExpires 1s, a link used after it expired is
// refused by the store.
func TestS3ExpiredLinkRefused(t *testing.T) {
	o := newOrigin(t)
	o.Put("/short.bin", payload(33, 1000))
	st := newS3(t, nil, "")
	m := newMirror(t, o, withStore(st), noTee, func(h *httpmirror.MirrorHandler) { h.LinkExpires = time.Second })
	r := get(t, m.url(o, "/short.bin"))
	if r.StatusCode != http.StatusFound {
		t.Fatalf("status %d; want 302", r.StatusCode)
	}
	loc, _ := url.Parse(r.Header.Get("Location"))
	if got := loc.Query().Get("X-Amz-Expires"); got != "1" {
		t.Fatalf("X-Amz-Expires = %q; want 1", got)
	}
	signed, err := time.Parse("20060102T150405Z", loc.Query().Get("X-Amz-Date"))
	if err != nil {
		t.Fatal(err)
	}
	// Waiting out the link's lifetime (second resolution) is the point of
	// the test, not a stand-in for synchronisation.
	time.Sleep(time.Until(signed.Add(2100 * time.Millisecond)))
	if f := follow(t, r); f.StatusCode != http.StatusForbidden {
		t.Errorf("expired link: status %d; want 403", f.StatusCode)
	}
}

// Acceptance 3: with NoRedirect, hits are served through the mirror from
// ranged GETs of the store: Range, multiple ranges, 304 and HEAD, and the
// latter two download nothing.
func TestS3NoRedirectHTTPSemantics(t *testing.T) {
	o := newOrigin(t)
	data := payload(34, 200000)
	f := o.Put("/file.bin", data)
	f.Type = "application/x-thing"
	st := newS3(t, nil, "")
	m := newMirror(t, o, withStore(st), noTee, func(h *httpmirror.MirrorHandler) { h.NoRedirect = true })
	u := m.url(o, "/file.bin")
	if r := get(t, u); r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("miss: status %d; want 200 with the file", r.StatusCode)
	}
	gets := func() int64 { return st.gets.Load() }

	t.Run("full", func(t *testing.T) {
		r := get(t, u)
		if r.StatusCode != 200 || sha(r.body) != sha(data) || r.Header.Get("Etag") != f.ETag || r.Header.Get("Content-Type") != f.Type {
			t.Fatalf("status %d, ETag %q, type %q; want 200 with the file and the origin's headers", r.StatusCode, r.Header.Get("Etag"), r.Header.Get("Content-Type"))
		}
	})
	t.Run("range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=1000-1999"}})
		if r.StatusCode != 206 || !bytes.Equal(r.body, data[1000:2000]) || r.Header.Get("Content-Range") != "bytes 1000-1999/200000" {
			t.Fatalf("status %d, %d bytes, Content-Range %q; want 206 with bytes 1000-1999", r.StatusCode, len(r.body), r.Header.Get("Content-Range"))
		}
	})
	t.Run("multi range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=0-9,150000-150009"}})
		if r.StatusCode != 206 {
			t.Fatalf("status %d; want 206", r.StatusCode)
		}
		parts := readMultipart(t, r)
		if len(parts) != 2 || !bytes.Equal(parts[0], data[0:10]) || !bytes.Equal(parts[1], data[150000:150010]) {
			t.Fatalf("parts differ from the stored bytes")
		}
	})
	t.Run("304", func(t *testing.T) {
		before := gets()
		r := do(t, "GET", u, http.Header{"If-None-Match": {f.ETag}})
		if r.StatusCode != 304 || len(r.body) != 0 {
			t.Fatalf("status %d; want 304", r.StatusCode)
		}
		if n := gets() - before; n != 0 {
			t.Errorf("304 sent %d GETs to the store; want 0", n)
		}
	})
	t.Run("head", func(t *testing.T) {
		before := gets()
		r := do(t, "HEAD", u, nil)
		if r.StatusCode != 200 || r.ContentLength != int64(len(data)) || len(r.body) != 0 || r.Header.Get("Etag") != f.ETag {
			t.Fatalf("status %d, Content-Length %d, ETag %q; want 200, %d, %q", r.StatusCode, r.ContentLength, r.Header.Get("Etag"), len(data), f.ETag)
		}
		if n := gets() - before; n != 0 {
			t.Errorf("HEAD sent %d GETs to the store; want 0", n)
		}
	})
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
}

var errStoreBroken = errors.New("store broken")

// A plain warm GET and HEAD on S3 storage cost one request to the store
// each, through the public listener as the command runs it: the hit loop
// looks the request up, declines an object it cannot send from memory,
// and hands its decision (with the object it opened) to net/http, which
// does not open it again. With NoRedirect, the GET reads the body: one
// more request, never two opens.
func TestS3WarmRequestsCostOneStoreRequest(t *testing.T) {
	for _, noRedirect := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-redirect %v", noRedirect), func(t *testing.T) {
			o := newOrigin(t)
			data := payload(32, 200<<10)
			o.Put("/pool/a.deb", data)
			st := newS3(t, nil, "")
			m := newMirror(t, o, withStore(st), func(h *httpmirror.MirrorHandler) { h.NoRedirect = noRedirect })
			u := m.url(o, "/pool/a.deb")
			get(t, u)
			waitFills(t, m)
			want := map[string]int64{http.MethodGet: 1, http.MethodHead: 1}
			if noRedirect {
				want[http.MethodGet] = 2 // HEAD to open, GET of the body
			}
			// Each request on a connection of its own, so that it meets
			// the hit loop first (a connection the loop hands over stays
			// with net/http).
			fresh := &http.Client{
				CheckRedirect: noRedirectClient.CheckRedirect,
				Transport:     &http.Transport{DisableKeepAlives: true, DisableCompression: true},
			}
			for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodGet} {
				before := st.all.Load()
				r := doWith(t, fresh, method, u, nil)
				if r.StatusCode != http.StatusOK && r.StatusCode != http.StatusFound {
					t.Fatalf("%s: status %d", method, r.StatusCode)
				}
				if method == http.MethodGet && noRedirect && sha(r.body) != sha(data) {
					t.Fatalf("GET: sha256 %s; want %s", sha(r.body), sha(data))
				}
				if n := st.all.Load() - before; n != want[method] {
					t.Errorf("warm %s: %d requests to the store; want %d", method, n, want[method])
				}
			}
		})
	}
}
