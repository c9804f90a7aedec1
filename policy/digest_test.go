package policy

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// The data the published digests in these tests are of.
var (
	hello     = []byte("hello")
	helloS256 = sha256.Sum256(hello)
	helloS512 = sha512.Sum512(hello)
	helloMD5  = md5.Sum(hello)
	helloC32C = binary.BigEndian.AppendUint32(nil, crc32.Checksum(hello, crc32.MakeTable(crc32.Castagnoli)))
	other     = sha256.Sum256([]byte("other"))
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
func hx(b []byte) string  { return hex.EncodeToString(b) }

func exp(alg string, sum []byte, source string) Expected {
	return Expected{Alg: alg, Sum: sum, Source: source}
}

// response returns a response of status from rawURL with the header
// lines kv ("Name", "value", ...).
func response(status int, rawURL string, kv ...string) *http.Response {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	resp := &http.Response{StatusCode: status, Header: h}
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil {
			panic(err)
		}
		resp.Request = &http.Request{Method: http.MethodGet, URL: u}
	}
	return resp
}

// redirects links responses into a redirect chain, first to last, as
// net/http's client does, and returns the last.
func redirects(rs ...*http.Response) *http.Response {
	for i := 1; i < len(rs); i++ {
		rs[i].Request.Response = rs[i-1]
	}
	return rs[len(rs)-1]
}

func formatExpected(es []Expected) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "[%s %s %x] ", e.Source, e.Alg, e.Sum)
	}
	return b.String()
}

type digestCase struct {
	name    string
	key     string
	resp    *http.Response
	want    []Expected
	unknown []string
}

func runDigestCases(t *testing.T, rules DigestRules, cases []digestCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, unknown := rules.Digests(tc.key, tc.resp)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Digests(%q) = %s; want %s", tc.key, formatExpected(got), formatExpected(tc.want))
			}
			if !reflect.DeepEqual(unknown, tc.unknown) {
				t.Errorf("Digests(%q) unknown = %q; want %q", tc.key, unknown, tc.unknown)
			}
		})
	}
}

func TestDigestsURL(t *testing.T) {
	s256, s512, m5 := hx(helloS256[:]), hx(helloS512[:]), hx(helloMD5[:])
	ok := func(host string) *http.Response { return response(http.StatusOK, "https://"+host+"/") }
	runDigestCases(t, DigestRules{}, []digestCase{
		{"oci blob sha256", "registry-1.docker.io/v2/library/alpine/blobs/sha256:" + s256, ok("registry-1.docker.io"),
			[]Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"oci blob sha512", "ghcr.io/v2/org/team/app/blobs/sha512:" + s512, ok("ghcr.io"),
			[]Expected{exp("sha-512", helloS512[:], "url")}, nil},
		{"oci blob, escaped colon, upper-case hex", "ghcr.io/v2/org/app/blobs/sha256%3A" + strings.ToUpper(s256), ok("ghcr.io"),
			[]Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"oci blob with query", "quay.io/v2/org/app/blobs/sha256:" + s256 + "?ns=docker.io", ok("quay.io"),
			[]Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"oci blob without a response", "ghcr.io/v2/org/app/blobs/sha256:" + s256, nil,
			[]Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"oci blob of an unknown algorithm", "ghcr.io/v2/org/app/blobs/blake3:" + s256, ok("ghcr.io"), nil, []string{"url:blake3"}},
		{"oci blob, short hex", "ghcr.io/v2/org/app/blobs/sha256:" + s256[:62], ok("ghcr.io"), nil, nil},
		{"oci blob, bad hex", "ghcr.io/v2/org/app/blobs/sha256:" + s256[:63] + "g", ok("ghcr.io"), nil, nil},
		{"oci blob, sha512 algorithm with a sha256", "ghcr.io/v2/org/app/blobs/sha512:" + s256, ok("ghcr.io"), nil, nil},
		{"no repository name", "ghcr.io/v2/blobs/sha256:" + s256, ok("ghcr.io"), nil, nil},
		{"not under /v2/", "example.com/files/blobs/sha256:" + s256, ok("example.com"), nil, nil},
		{"manifest by digest is not a blob", "ghcr.io/v2/org/app/manifests/sha256:" + s256, ok("ghcr.io"), nil, nil},
		{"blob upload session", "ghcr.io/v2/org/app/blobs/uploads/sha256:" + s256, ok("ghcr.io"), nil, nil},
		{"apt by-hash sha256", "deb.debian.org/debian/dists/bookworm/main/binary-amd64/by-hash/SHA256/" + s256, ok("deb.debian.org"),
			[]Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"apt by-hash sha512", "archive.ubuntu.com/ubuntu/dists/noble/main/by-hash/SHA512/" + s512, ok("archive.ubuntu.com"),
			[]Expected{exp("sha-512", helloS512[:], "url")}, nil},
		{"apt by-hash md5", "deb.debian.org/debian/dists/bookworm/main/i18n/by-hash/MD5Sum/" + m5, ok("deb.debian.org"),
			[]Expected{exp("md5", helloMD5[:], "url")}, nil},
		{"apt by-hash of an unknown algorithm", "deb.debian.org/debian/dists/sid/main/by-hash/SHA1/aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d", ok("deb.debian.org"),
			nil, []string{"url:SHA1"}},
		{"apt by-hash, sha256 of the wrong length", "deb.debian.org/debian/dists/sid/main/by-hash/SHA256/" + m5, ok("deb.debian.org"), nil, nil},
		{"apt by-hash directory", "deb.debian.org/debian/dists/sid/main/by-hash/SHA256/", ok("deb.debian.org"), nil, nil},
		{"hugging face blob store", "hf-mirror.example/models--org--model/blobs/" + s256, ok("hf-mirror.example"),
			[]Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"blob store, 40-hex git object", "hf-mirror.example/models--org--model/blobs/aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d", ok("hf-mirror.example"), nil, nil},
		{"blob store, not the last segment", "hf-mirror.example/blobs/" + s256 + "/x", ok("hf-mirror.example"), nil, nil},
		{"blob store, 64 hex with a suffix", "hf-mirror.example/blobs/" + s256 + ".bin", ok("hf-mirror.example"), nil, nil},
		{"64 hex outside a blob store", "example.com/files/" + s256, ok("example.com"), nil, nil},
		{"variant key of a blob", VariantKey("ghcr.io/v2/org/app/blobs/sha256:"+s256, "0123abcd"), ok("ghcr.io"),
			[]Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"hex in the query only", "example.com/get?blobs/" + s256, ok("example.com"), nil, nil},
	})
}

func TestDigestsPath(t *testing.T) {
	var rules DigestRules
	for _, p := range []string{
		`^cache\.example/(?P<alg>sha256|sha512|sha1|sha-?\d+)/(?P<hex>[0-9a-fA-F]+)$`,
		`^store\.example/(?P<alg>[A-Za-z0-9-]+)-(?P<hex>[0-9a-f]+)\.tar$`,
	} {
		re, err := ParseDigestPath(p)
		if err != nil {
			t.Fatalf("ParseDigestPath(%q): %v", p, err)
		}
		rules.Paths = append(rules.Paths, re)
	}
	s256, s512 := hx(helloS256[:]), hx(helloS512[:])
	ok := response(http.StatusOK, "https://cache.example/")
	runDigestCases(t, rules, []digestCase{
		{"sha256", "cache.example/sha256/" + s256, ok, []Expected{exp("sha-256", helloS256[:], "digest-path")}, nil},
		{"sha512", "cache.example/sha512/" + s512, ok, []Expected{exp("sha-512", helloS512[:], "digest-path")}, nil},
		{"spelled sha-256, upper case", "store.example/SHA-256-" + s256 + ".tar", ok, []Expected{exp("sha-256", helloS256[:], "digest-path")}, nil},
		{"query is not matched", "cache.example/sha256/" + s256 + "?x=1", ok, []Expected{exp("sha-256", helloS256[:], "digest-path")}, nil},
		{"unknown algorithm", "cache.example/sha1/aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d", ok, nil, []string{"digest-path:sha1"}},
		{"wrong length", "cache.example/sha256/" + s256[:40], ok, nil, nil},
		{"no match", "cache.example/other/" + s256, ok, nil, nil},
		{"after the URL's own digest, once", "cache.example/v2/app/blobs/sha256:" + s256, ok, []Expected{exp("sha-256", helloS256[:], "url")}, nil},
	})
	// A pattern that matches a URL rule's key adds nothing new: the
	// digest is kept once, at the URL's position.
	re, err := ParseDigestPath(`/blobs/(?P<alg>sha256):(?P<hex>[0-9a-f]{64})$`)
	if err != nil {
		t.Fatal(err)
	}
	runDigestCases(t, DigestRules{Paths: []*regexp.Regexp{re}}, []digestCase{
		{"duplicate of the url's", "ghcr.io/v2/app/blobs/sha256:" + s256, ok, []Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"not under /v2/: the pattern's only", "example.com/mirror/blobs/sha256:" + hx(other[:]), ok, []Expected{exp("sha-256", other[:], "digest-path")}, nil},
	})
}

func TestParseDigestPath(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		wantErr string // "" for success
	}{
		{`(?P<alg>sha256)/(?P<hex>[0-9a-f]{64})`, ""},
		{`^example\.com/(?i:(?P<alg>SHA-?512))/(?P<hex>.+)$`, ""},
		{`(?P<hex>[0-9a-f]{64})`, "(?P<alg>...)"},
		{`(?P<alg>sha256)/[0-9a-f]{64}`, "(?P<hex>...)"},
		{`(?P<algorithm>sha256)/(?P<hex>.+)`, "(?P<alg>...)"},
		{`(?P<alg>sha256)/(?P<hex>[0-9a-f]{64}`, "missing closing )"},
		{`(?P<alg>sha256)/(?P<hex>[z-a])`, "invalid character class range"},
		{``, "(?P<alg>...)"},
	} {
		re, err := ParseDigestPath(tc.pattern)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("ParseDigestPath(%q) = %v; want success", tc.pattern, err)
		case tc.wantErr == "" && re == nil:
			t.Errorf("ParseDigestPath(%q) = nil, nil", tc.pattern)
		case tc.wantErr != "" && err == nil:
			t.Errorf("ParseDigestPath(%q) succeeded; want an error naming %q", tc.pattern, tc.wantErr)
		case tc.wantErr != "":
			msg := err.Error()
			if !strings.Contains(msg, tc.wantErr) || !strings.Contains(msg, fmt.Sprintf("%q", tc.pattern)) {
				t.Errorf("ParseDigestPath(%q) = %q; want the pattern and %q", tc.pattern, msg, tc.wantErr)
			}
			// The regexp package's own wording stays out of it.
			if strings.Contains(msg, "regexp") || strings.Contains(msg, "error parsing") {
				t.Errorf("ParseDigestPath(%q) = %q; leaks the regexp package's message", tc.pattern, msg)
			}
		}
	}
}

func TestDigestsFields(t *testing.T) {
	s256, s512 := b64(helloS256[:]), b64(helloS512[:])
	both := "sha-256=:" + s256 + ":, sha-512=:" + s512 + ":"
	key := "example.com/file.bin"
	u := "https://example.com/file.bin"
	runDigestCases(t, DigestRules{}, []digestCase{
		{"repr-digest sha-256", key, response(200, u, "Repr-Digest", "sha-256=:"+s256+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest")}, nil},
		{"repr-digest both, in order", key, response(200, u, "Repr-Digest", both),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest"), exp("sha-512", helloS512[:], "repr-digest")}, nil},
		{"split over field lines, parameters and spaces", key, response(200, u, "Repr-Digest", " sha-512=:"+s512+":;a=1 ", "Repr-Digest", "\tsha-256 = :"+s256+":"),
			[]Expected{exp("sha-512", helloS512[:], "repr-digest"), exp("sha-256", helloS256[:], "repr-digest")}, nil},
		{"padding left out", key, response(200, u, "Repr-Digest", "sha-256=:"+strings.TrimRight(s256, "=")+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest")}, nil},
		{"key in upper case", key, response(200, u, "Repr-Digest", "SHA-256=:"+s256+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest")}, nil},
		{"a key given twice keeps its last value", key, response(200, u, "Repr-Digest", "sha-256=:"+b64(other[:])+":, sha-256=:"+s256+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest")}, nil},
		{"unknown algorithms reported", key, response(200, u, "Repr-Digest", "unixsum=:AAAA:, sha-256=:"+s256+":, sha=:"+b64(make([]byte, 20))+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest")}, []string{"repr-digest:unixsum", "repr-digest:sha"}},
		{"sha-1 reported", key, response(200, u, "Content-Digest", "sha-1=:qvTGHdzF6KLavt4PO0gs2a6pQ00=:"),
			nil, []string{"content-digest:sha-1"}},
		{"md5 is a deprecated key", key, response(200, u, "Repr-Digest", "md5=:"+b64(helloMD5[:])+":"),
			nil, []string{"repr-digest:md5"}},
		{"not a byte sequence", key, response(200, u, "Repr-Digest", "sha-256="+hx(helloS256[:])+", sha-512"),
			nil, []string{"repr-digest:sha-256", "repr-digest:sha-512"}},
		{"bad base64 dropped", key, response(200, u, "Repr-Digest", "sha-256=:"+s256[:10]+"!"+s256[11:]+":"), nil, nil},
		{"wrong length dropped", key, response(200, u, "Repr-Digest", "sha-512=:"+s256+":"), nil, nil},
		{"empty byte sequence dropped", key, response(200, u, "Repr-Digest", "sha-256=::"), nil, nil},
		{"empty members", key, response(200, u, "Repr-Digest", ", ,"), nil, nil},
		{"content-digest of a 200", key, response(200, u, "Content-Digest", "sha-256=:"+s256+":"),
			[]Expected{exp("sha-256", helloS256[:], "content-digest")}, nil},
		{"repr-digest before content-digest", key, response(200, u, "Content-Digest", "sha-512=:"+s512+":", "Repr-Digest", "sha-256=:"+s256+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest"), exp("sha-512", helloS512[:], "content-digest")}, nil},
		{"same digest in both, once", key, response(200, u, "Content-Digest", "sha-256=:"+s256+":", "Repr-Digest", "sha-256=:"+s256+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest")}, nil},
		{"content-digest of a 206 covers the part only", key, response(206, u, "Content-Digest", "sha-256=:"+b64(other[:])+":, sha-1=:qvTGHdzF6KLavt4PO0gs2a6pQ00=:"),
			nil, nil},
		{"repr-digest of a 206 covers the object", key, response(206, u, "Content-Digest", "sha-256=:"+b64(other[:])+":", "Repr-Digest", "sha-256=:"+s256+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest")}, nil},
		{"repr-digest of gzip-coded content counts", key, response(200, u, "Content-Encoding", "gzip", "Repr-Digest", "sha-256=:"+s256+":", "Content-Digest", "sha-512=:"+s512+":"),
			[]Expected{exp("sha-256", helloS256[:], "repr-digest"), exp("sha-512", helloS512[:], "content-digest")}, nil},
		{"repr-digest on a redirect is the redirect's", key, redirects(
			response(302, u, "Repr-Digest", "sha-256=:"+b64(other[:])+":", "Location", "https://cdn.example/x"),
			response(200, "https://cdn.example/x")), nil, nil},
	})

	// A body the transport decoded is not what the fields describe.
	dec := response(200, u, "Repr-Digest", "sha-256=:"+s256+":", "Content-Digest", "sha-256=:"+s256+":")
	dec.Uncompressed = true
	runDigestCases(t, DigestRules{}, []digestCase{{"decoded by the transport", key, dec, nil, nil}})
}

func TestDigestsHub(t *testing.T) {
	s256 := hx(helloS256[:])
	key := "huggingface.co/org/model/resolve/main/model.safetensors"
	resolve := "https://huggingface.co/org/model/resolve/main/model.safetensors"
	lfs := "https://cdn-lfs.huggingface.co/repos/ab/cd/" + s256 + "?X-Amz-Signature=x"
	xet := "https://cas-bridge.xethub.hf.co/xet-bridge-us/65c0/" + hx(other[:]) + "?X-Amz-Signature=x"
	redirect := func(from string, kv ...string) *http.Response { return response(302, from, kv...) }
	sha := []Expected{exp("sha-256", helloS256[:], "linked-etag")}
	runDigestCases(t, DigestRules{}, []digestCase{
		{"x-linked-etag on the resolve redirect", key, redirects(
			redirect(resolve, "X-Linked-Etag", `"`+s256+`"`, "ETag", `"`+s256+`"`, "X-Repo-Commit", "0123"),
			response(200, lfs, "ETag", `"5d41402abc4b2a76b9719d911017c592"`)),
			sha, nil},
		{"x-linked-etag through a rename redirect", key, redirects(
			redirect("https://huggingface.co/old/model/resolve/main/model.safetensors"),
			redirect(resolve, "X-Linked-Etag", s256),
			response(200, lfs)),
			sha, nil},
		{"x-linked-etag on hf.co", "hf.co/org/model/resolve/main/x", redirects(
			redirect("https://hf.co/org/model/resolve/main/x", "X-Linked-Etag", `W/"`+s256+`"`),
			response(200, xet)),
			sha, nil},
		{"the nearest x-linked-etag wins and no etag then", key, redirects(
			redirect(resolve, "X-Linked-Etag", `"`+hx(other[:])+`"`),
			redirect("https://huggingface.co/api/resolve-cache/x", "X-Linked-Etag", `"`+s256+`"`),
			response(200, xet, "ETag", `"`+hx(other[:])+`"`)),
			sha, nil},
		{"x-linked-etag on the final response", key, response(200, resolve, "X-Linked-Etag", `"`+s256+`"`), sha, nil},
		{"x-linked-etag on a 206", key, redirects(
			redirect(resolve, "X-Linked-Etag", `"`+s256+`"`),
			response(206, lfs, "Content-Range", "bytes 0-1/5")),
			sha, nil},
		{"etag of a file the hub serves itself", key, response(200, lfs, "ETag", `"`+s256+`"`),
			[]Expected{exp("sha-256", helloS256[:], "etag")}, nil},
		{"weak etag", key, response(200, "https://us.aws.cdn.hf.co/x", "ETag", `W/"`+strings.ToUpper(s256)+`"`),
			[]Expected{exp("sha-256", helloS256[:], "etag")}, nil},
		{"etag equal to the xet hash is not a sha256", key, response(200, xet, "ETag", `"`+hx(other[:])+`"`, "X-Xet-Hash", hx(other[:])),
			nil, nil},
		{"git sha1 etag of a small file", key, response(200, resolve, "ETag", `"aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"`), nil, nil},
		{"63 hex", key, response(200, resolve, "ETag", `"`+s256[:63]+`"`), nil, nil},
		{"x-linked-etag elsewhere means nothing", "example.com/f", redirects(
			redirect("https://example.com/f", "X-Linked-Etag", `"`+s256+`"`),
			response(200, "https://cdn.example.com/f")),
			nil, nil},
		{"look-alike host", "huggingface.co.evil.example/f", response(200, "https://huggingface.co.evil.example/f", "ETag", `"`+s256+`"`), nil, nil},
		{"suffix without a dot", "nothf.co/f", response(200, "https://nothf.co/f", "ETag", `"`+s256+`"`), nil, nil},
		{"64-hex etag elsewhere", "example.com/f", response(200, "https://example.com/f", "ETag", `"`+s256+`"`), nil, nil},
		{"hub redirect to a foreign host: its etag means nothing", key, redirects(
			redirect(resolve),
			response(200, "https://storage.example/f", "ETag", `"`+s256+`"`)),
			nil, nil},
		{"response without a request: the key's host", "huggingface.co:443/org/m/resolve/main/f", response(200, "", "ETag", `"`+s256+`"`),
			[]Expected{exp("sha-256", helloS256[:], "etag")}, nil},
		{"content-coded response", key, redirects(
			redirect(resolve, "X-Linked-Etag", `"`+s256+`"`),
			response(200, lfs, "Content-Encoding", "gzip")),
			nil, nil},
	})
}

func TestDigestsS3(t *testing.T) {
	key := "bucket.s3.amazonaws.com/data/file.bin"
	u := "https://" + key
	s256, c32c := b64(helloS256[:]), b64(helloC32C)
	runDigestCases(t, DigestRules{}, []digestCase{
		{"sha256 and crc32c", key, response(200, u, "X-Amz-Checksum-Crc32c", c32c, "X-Amz-Checksum-Sha256", s256, "X-Amz-Checksum-Type", "FULL_OBJECT"),
			[]Expected{exp("sha-256", helloS256[:], "amz-checksum"), exp("crc32c", helloC32C, "amz-checksum")}, nil},
		{"crc32c alone", key, response(200, u, "x-amz-checksum-crc32c", c32c),
			[]Expected{exp("crc32c", helloC32C, "amz-checksum")}, nil},
		{"composite type", key, response(200, u, "X-Amz-Checksum-Sha256", s256, "X-Amz-Checksum-Type", "COMPOSITE"), nil, nil},
		{"part-count suffix", key, response(200, u, "X-Amz-Checksum-Crc32c", c32c+"-3", "X-Amz-Checksum-Sha256", s256+"-3"), nil, nil},
		{"other algorithms reported", key, response(200, u, "X-Amz-Checksum-Crc64nvme", "AAAAAAAAAAA=", "X-Amz-Checksum-Crc32", "AAAAAA==", "X-Amz-Checksum-Sha1", "qvTGHdzF6KLavt4PO0gs2a6pQ00="),
			nil, []string{"amz-checksum:crc32", "amz-checksum:crc64nvme", "amz-checksum:sha1"}},
		{"crc32c of the wrong length", key, response(200, u, "X-Amz-Checksum-Crc32c", s256), nil, nil},
		{"bad base64", key, response(200, u, "X-Amz-Checksum-Sha256", "not base64!"), nil, nil},
		{"hex instead of base64", key, response(200, u, "X-Amz-Checksum-Sha256", hx(helloS256[:])), nil, nil},
		{"206", key, response(206, u, "X-Amz-Checksum-Sha256", s256), nil, nil},
		{"content-coded object: the bytes as sent", key, response(200, u, "Content-Encoding", "gzip", "X-Amz-Checksum-Sha256", s256),
			[]Expected{exp("sha-256", helloS256[:], "amz-checksum")}, nil},
	})
}

func TestDigestsGCS(t *testing.T) {
	key := "storage.googleapis.com/bucket/file.bin"
	u := "https://" + key
	c32c, m5 := b64(helloC32C), b64(helloMD5[:])
	want := []Expected{exp("crc32c", helloC32C, "goog-hash"), exp("md5", helloMD5[:], "goog-hash")}
	runDigestCases(t, DigestRules{}, []digestCase{
		{"one line", key, response(200, u, "X-Goog-Hash", "crc32c="+c32c+",md5="+m5), want, nil},
		{"one line with spaces", key, response(200, u, "X-Goog-Hash", "crc32c="+c32c+", md5="+m5), want, nil},
		{"two lines", key, response(200, u, "X-Goog-Hash", "crc32c="+c32c, "X-Goog-Hash", "md5="+m5), want, nil},
		{"composite object: crc32c only", key, response(200, u, "X-Goog-Hash", "crc32c="+c32c, "X-Goog-Component-Count", "3"),
			want[:1], nil},
		{"unknown name reported", key, response(200, u, "X-Goog-Hash", "sha1=qvTGHdzF6KLavt4PO0gs2a6pQ00=,md5="+m5),
			want[1:], []string{"goog-hash:sha1"}},
		{"bad values dropped", key, response(200, u, "X-Goog-Hash", "crc32c=AAAAAAAA,md5=%%%,crc32c,=x"), nil, nil},
		{"stored gzip served gzip", key, response(200, u, "X-Goog-Hash", "md5="+m5, "Content-Encoding", "gzip", "X-Goog-Stored-Content-Encoding", "gzip"),
			want[1:], nil},
		{"decompressive transcoding", key, response(200, u, "X-Goog-Hash", "md5="+m5, "X-Goog-Stored-Content-Encoding", "gzip"), nil, nil},
		{"stored identity", key, response(200, u, "X-Goog-Hash", "md5="+m5, "X-Goog-Stored-Content-Encoding", "identity"), want[1:], nil},
		{"206", key, response(206, u, "X-Goog-Hash", "crc32c="+c32c+",md5="+m5), nil, nil},
	})
}

func TestDigestsContentMD5(t *testing.T) {
	key := "files.example/f"
	u := "https://" + key
	m5 := b64(helloMD5[:])
	runDigestCases(t, DigestRules{}, []digestCase{
		{"200", key, response(200, u, "Content-MD5", m5), []Expected{exp("md5", helloMD5[:], "content-md5")}, nil},
		{"206 covers the part", key, response(206, u, "Content-MD5", m5), nil, nil},
		{"hex instead of base64", key, response(200, u, "Content-MD5", hx(helloMD5[:])), nil, nil},
		{"two values", key, response(200, u, "Content-MD5", m5, "Content-MD5", m5), nil, nil},
		{"after goog-hash's md5, once", key, response(200, u, "Content-MD5", m5, "X-Goog-Hash", "md5="+m5),
			[]Expected{exp("md5", helloMD5[:], "goog-hash")}, nil},
	})
}

// TestDigestsOrder checks the order of trust over every source at once,
// and that a digest two sources publish is kept at the most trusted.
func TestDigestsOrder(t *testing.T) {
	re, err := ParseDigestPath(`/blobs/(?P<alg>sha512):(?P<hex>[0-9a-f]+)/`)
	if err != nil {
		t.Fatal(err)
	}
	rules := DigestRules{Paths: []*regexp.Regexp{re}}
	// Distinct digests per source, so each one's position shows.
	d := func(s string) []byte { b := sha256.Sum256([]byte(s)); return b[:] }
	d5 := func(s string) []byte { b := sha512.Sum512([]byte(s)); return b[:] }
	key := "huggingface.co/v2/app/blobs/sha512:" + hx(d5("path")) + "/blobs/" + hx(d("url"))
	resp := redirects(
		response(302, "https://"+key, "X-Linked-Etag", hx(d("linked"))),
		response(200, "https://cdn-lfs.hf.co/x",
			"Content-MD5", b64(helloMD5[:]),
			"X-Goog-Hash", "crc32c="+b64(helloC32C),
			"X-Amz-Checksum-Sha256", b64(d("amz")),
			"X-Amz-Checksum-Crc32c", b64(helloC32C),
			"Content-Digest", "sha-256=:"+b64(d("content"))+":",
			"Repr-Digest", "sha-256=:"+b64(d("repr"))+":, sha-512=:"+b64(d5("path"))+":",
			"ETag", `"`+hx(d("etag"))+`"`,
		))
	got, unknown := rules.Digests(key, resp)
	want := []Expected{
		exp("sha-256", d("url"), "url"),
		exp("sha-512", d5("path"), "digest-path"),
		exp("sha-256", d("repr"), "repr-digest"),
		exp("sha-256", d("content"), "content-digest"),
		exp("sha-256", d("linked"), "linked-etag"),
		exp("sha-256", d("amz"), "amz-checksum"),
		exp("crc32c", helloC32C, "amz-checksum"),
		exp("md5", helloMD5[:], "content-md5"),
	}
	if !reflect.DeepEqual(got, want) || unknown != nil {
		t.Errorf("Digests = %s, %q;\nwant %s, none", formatExpected(got), unknown, formatExpected(want))
	}
}

func TestDigestsContentCoding(t *testing.T) {
	// The URL names the content without coding: an origin compressing on
	// the fly sends other bytes, which the mirror stores as they are.
	key := "deb.debian.org/debian/dists/sid/main/by-hash/SHA256/" + hx(helloS256[:])
	u := "https://" + key
	runDigestCases(t, DigestRules{}, []digestCase{
		{"gzip", key, response(200, u, "Content-Encoding", "gzip"), nil, nil},
		{"identity", key, response(200, u, "Content-Encoding", "identity"), []Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"empty", key, response(200, u, "Content-Encoding", ""), []Expected{exp("sha-256", helloS256[:], "url")}, nil},
		{"gzip with repr-digest", key, response(200, u, "Content-Encoding", "gzip", "Repr-Digest", "sha-256=:"+b64(other[:])+":"),
			[]Expected{exp("sha-256", other[:], "repr-digest")}, nil},
	})
	// A body the transport decoded is the content again: the URL's digest
	// applies, the storage services' checksums (of the coded bytes) do not.
	dec := response(200, u, "X-Amz-Checksum-Sha256", b64(other[:]), "Content-MD5", b64(helloMD5[:]))
	dec.Uncompressed = true
	runDigestCases(t, DigestRules{}, []digestCase{{"decoded by the transport", key, dec, []Expected{exp("sha-256", helloS256[:], "url")}, nil}})
}

func TestDigestsUnknownBounded(t *testing.T) {
	var members []string
	for i := range 100 {
		members = append(members, fmt.Sprintf("alg%d-%s=:AAAA:", i, strings.Repeat("x", 100)))
	}
	_, unknown := DigestRules{}.Digests("example.com/f", response(200, "https://example.com/f", "Repr-Digest", strings.Join(members, ",")))
	if len(unknown) != maxUnknown {
		t.Fatalf("%d unknown names; want %d", len(unknown), maxUnknown)
	}
	for _, n := range unknown {
		if len(n) > len("repr-digest:")+maxName+len("...") {
			t.Errorf("unknown name %q is %d bytes long", n, len(n))
		}
	}
}

func TestNewHash(t *testing.T) {
	for _, tc := range []struct {
		alg, data, want string
	}{
		{"sha-256", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"sha-512", "abc", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
		{"crc32c", "123456789", "e3069283"},
		{"md5", "abc", "900150983cd24fb0d6963f7d28e17f72"},
	} {
		h := NewHash(tc.alg)
		if h == nil {
			t.Errorf("NewHash(%q) = nil", tc.alg)
			continue
		}
		h.Write([]byte(tc.data))
		if got := hx(h.Sum(nil)); got != tc.want {
			t.Errorf("NewHash(%q) of %q = %s; want %s", tc.alg, tc.data, got, tc.want)
		}
		if got := len(h.Sum(nil)); got != sumSize[tc.alg] {
			t.Errorf("NewHash(%q) sum is %d bytes; want %d", tc.alg, got, sumSize[tc.alg])
		}
	}
	for _, alg := range []string{"", "sha-1", "sha1", "SHA-256", "sha256", "crc32", "unixsum"} {
		if h := NewHash(alg); h != nil {
			t.Errorf("NewHash(%q) = %T; want nil", alg, h)
		}
	}
}

// TestDigestsHashable checks that every digest Digests returns can be
// checked: NewHash knows its algorithm and its length is the hash's.
func TestDigestsHashable(t *testing.T) {
	resp := response(200, "https://huggingface.co/x",
		"Repr-Digest", "sha-512=:"+b64(helloS512[:])+":",
		"X-Amz-Checksum-Crc32c", b64(helloC32C),
		"Content-MD5", b64(helloMD5[:]),
		"ETag", hx(helloS256[:]))
	got, _ := DigestRules{}.Digests("huggingface.co/x", resp)
	if len(got) != 4 {
		t.Fatalf("Digests = %s; want four", formatExpected(got))
	}
	for _, e := range got {
		h := NewHash(e.Alg)
		if h == nil {
			t.Errorf("%s: NewHash(%q) = nil", e.Source, e.Alg)
			continue
		}
		h.Write(hello)
		if s := h.Sum(nil); !reflect.DeepEqual(s, e.Sum) {
			t.Errorf("%s: %s of the data = %x; published %x", e.Source, e.Alg, s, e.Sum)
		}
	}
}

func FuzzDigests(f *testing.F) {
	s256 := b64(helloS256[:])
	f.Add("ghcr.io/v2/a/blobs/sha256:"+hx(helloS256[:]), 200, "sha-256=:"+s256+":", "sha-512=:x:;a", `W/"`+hx(helloS256[:])+`"`, "crc32c=AAAAAA==,md5=x", s256+"-2")
	f.Add("huggingface.co/a/blobs/x?q", 206, ",,=,:", "sha-256", "\"", "=", "")
	f.Add("", 0, "", "", "", "", "")
	re := regexp.MustCompile(`(?P<alg>[^/]*)/(?P<hex>.*)`)
	rules := DigestRules{Paths: []*regexp.Regexp{re}}
	f.Fuzz(func(t *testing.T, key string, status int, repr, content, etag, goog, amz string) {
		redirect := response(302, "https://huggingface.co/r", "X-Linked-Etag", etag)
		resp := redirects(redirect, response(status, "https://cdn-lfs.hf.co/x",
			"Repr-Digest", repr, "Content-Digest", content, "ETag", etag,
			"X-Goog-Hash", goog, "X-Amz-Checksum-Sha256", amz, "X-Amz-Checksum-Crc32c", amz,
			"Content-MD5", amz, "X-Goog-Stored-Content-Encoding", content))
		for _, r := range []*http.Response{resp, nil} {
			got, unknown := rules.Digests(key, r)
			if len(unknown) > maxUnknown {
				t.Fatalf("%d unknown names", len(unknown))
			}
			for i, e := range got {
				if len(e.Sum) != sumSize[e.Alg] || NewHash(e.Alg) == nil {
					t.Fatalf("Digests returned %s %s %x", e.Source, e.Alg, e.Sum)
				}
				for _, o := range got[:i] {
					if o.Alg == e.Alg && string(o.Sum) == string(e.Sum) {
						t.Fatalf("Digests returned %s %x twice", e.Alg, e.Sum)
					}
				}
			}
		}
	})
}
