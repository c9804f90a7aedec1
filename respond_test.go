package httpmirror_test

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

func TestMissThenHit(t *testing.T) {
	o := newOrigin(t)
	data := payload(1, 3<<20+5)
	f := o.Put("/dist/app.tar.gz", data)
	f.Type = "application/gzip"
	f.Header = http.Header{"Content-Disposition": {`attachment; filename="app.tar.gz"`}}
	m := newMirror(t, o)

	for i, want := range []int64{1, 1, 1} {
		r := get(t, m.url(o, "/dist/app.tar.gz"))
		if r.StatusCode != 200 || r.err != nil {
			t.Fatalf("request %d: status %d, body error %v", i, r.StatusCode, r.err)
		}
		if sha(r.body) != sha(data) {
			t.Fatalf("request %d: body sha256 %s; want %s", i, sha(r.body), sha(data))
		}
		if got := o.Gets.Load(); got != want {
			t.Fatalf("after request %d the origin saw %d GETs; want %d", i, got, want)
		}
		if r.ContentLength != int64(len(data)) {
			t.Errorf("request %d: Content-Length %d; want %d", i, r.ContentLength, len(data))
		}
		for k, v := range map[string]string{
			"Etag":                f.ETag,
			"Content-Type":        "application/gzip",
			"Last-Modified":       f.ModTime.Format(http.TimeFormat),
			"Content-Disposition": `attachment; filename="app.tar.gz"`,
		} {
			if got := r.Header.Get(k); got != v {
				t.Errorf("request %d: %s = %q; want %q", i, k, got, v)
			}
		}
	}
	// The origin got one plain GET: no client headers, no compression.
	req := o.Received()[0]
	if req.Header.Get("Accept-Encoding") != "" || req.Header.Get("Range") != "" {
		t.Errorf("fill request carried Accept-Encoding %q, Range %q", req.Header.Get("Accept-Encoding"), req.Header.Get("Range"))
	}
}

func TestMissingContentTypeStaysMissing(t *testing.T) {
	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		// Go would sniff a type; a nil entry suppresses it at the origin.
		w.Header()["Content-Type"] = nil
		w.Write([]byte("<html>not really</html>"))
		return true
	})
	m := newMirror(t, o)
	for i := range 2 {
		r := get(t, m.url(o, "/page"))
		if ct, ok := r.Header["Content-Type"]; r.StatusCode != 200 || ok {
			t.Errorf("request %d: status %d, Content-Type %q; want 200 without Content-Type", i, r.StatusCode, ct)
		}
	}
}

func TestHitHTTPSemantics(t *testing.T) {
	o := newOrigin(t)
	data := payload(2, 100000)
	f := o.Put("/file.bin", data)
	m := newMirror(t, o)
	u := m.url(o, "/file.bin")
	if r := get(t, u); r.StatusCode != 200 {
		t.Fatalf("warm-up: %d", r.StatusCode)
	}

	t.Run("range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=100-199"}})
		if r.StatusCode != 206 || !bytes.Equal(r.body, data[100:200]) {
			t.Fatalf("status %d, %d bytes; want 206 with bytes 100-199", r.StatusCode, len(r.body))
		}
		if cr := r.Header.Get("Content-Range"); cr != "bytes 100-199/100000" {
			t.Errorf("Content-Range = %q", cr)
		}
	})
	t.Run("suffix range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=-10"}})
		if r.StatusCode != 206 || !bytes.Equal(r.body, data[len(data)-10:]) {
			t.Fatalf("status %d; want 206 with the last 10 bytes", r.StatusCode)
		}
	})
	t.Run("open range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=99990-"}})
		if r.StatusCode != 206 || !bytes.Equal(r.body, data[99990:]) {
			t.Fatalf("status %d; want 206 with bytes from 99990", r.StatusCode)
		}
	})
	t.Run("multi range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=0-9,500-509"}})
		if r.StatusCode != 206 {
			t.Fatalf("status %d; want 206", r.StatusCode)
		}
		parts := readMultipart(t, r)
		if len(parts) != 2 || !bytes.Equal(parts[0], data[0:10]) || !bytes.Equal(parts[1], data[500:510]) {
			t.Fatalf("multipart parts wrong: %d parts", len(parts))
		}
	})
	t.Run("unsatisfiable", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=200000-"}})
		if r.StatusCode != 416 {
			t.Fatalf("status %d; want 416", r.StatusCode)
		}
		if cr := r.Header.Get("Content-Range"); cr != "bytes */100000" {
			t.Errorf("Content-Range = %q; want bytes */100000", cr)
		}
	})
	t.Run("if-none-match", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"If-None-Match": {f.ETag}})
		if r.StatusCode != 304 || len(r.body) != 0 {
			t.Fatalf("status %d, %d bytes; want 304 without body", r.StatusCode, len(r.body))
		}
		if r.Header.Get("Etag") != f.ETag {
			t.Errorf("304 ETag = %q; want %q", r.Header.Get("Etag"), f.ETag)
		}
	})
	t.Run("if-none-match other", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"If-None-Match": {`"other"`}})
		if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("status %d; want 200 with the body", r.StatusCode)
		}
	})
	t.Run("if-modified-since", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"If-Modified-Since": {f.ModTime.Add(time.Hour).Format(http.TimeFormat)}})
		if r.StatusCode != 304 {
			t.Fatalf("status %d; want 304", r.StatusCode)
		}
		r = do(t, "GET", u, http.Header{"If-Modified-Since": {f.ModTime.Add(-time.Hour).Format(http.TimeFormat)}})
		if r.StatusCode != 200 || len(r.body) != len(data) {
			t.Fatalf("older date: status %d; want 200", r.StatusCode)
		}
	})
	t.Run("if-range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=0-9"}, "If-Range": {f.ETag}})
		if r.StatusCode != 206 || len(r.body) != 10 {
			t.Fatalf("matching If-Range: status %d; want 206", r.StatusCode)
		}
		r = do(t, "GET", u, http.Header{"Range": {"bytes=0-9"}, "If-Range": {`"stale"`}})
		if r.StatusCode != 200 || len(r.body) != len(data) {
			t.Fatalf("stale If-Range: status %d; want 200 with the whole body", r.StatusCode)
		}
	})
	t.Run("head", func(t *testing.T) {
		r := do(t, "HEAD", u, nil)
		if r.StatusCode != 200 || len(r.body) != 0 || r.ContentLength != int64(len(data)) {
			t.Fatalf("status %d, %d body bytes, Content-Length %d; want 200, none, %d", r.StatusCode, len(r.body), r.ContentLength, len(data))
		}
		if r.Header.Get("Etag") != f.ETag || r.Header.Get("Accept-Ranges") != "bytes" {
			t.Errorf("HEAD headers: ETag %q Accept-Ranges %q", r.Header.Get("Etag"), r.Header.Get("Accept-Ranges"))
		}
	})
	if got := o.Gets.Load(); got != 1 {
		t.Errorf("origin saw %d GETs; want 1", got)
	}
}

func readMultipart(t *testing.T, r response) [][]byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var parts [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, b)
	}
}

func TestUpstreamStatuses(t *testing.T) {
	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		var code int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/status/"), "%d", &code)
		if code == 0 {
			return false
		}
		w.Header().Set("X-Internal", "secret detail")
		http.Error(w, "origin says: internal stack trace", code)
		return true
	})
	m := newMirror(t, o)
	for code, want := range map[int]int{404: 404, 410: 410, 403: 403, 401: 401, 500: 502, 503: 502, 204: 502} {
		r := get(t, m.url(o, fmt.Sprintf("/status/%d", code)))
		if r.StatusCode != want {
			t.Errorf("origin %d: mirror answered %d; want %d", code, r.StatusCode, want)
		}
		if strings.Contains(string(r.body), "stack trace") || r.Header.Get("X-Internal") != "" {
			t.Errorf("origin %d: origin detail leaked to the client: %q", code, r.body)
		}
	}
	// Server errors are not remembered: asking again reaches the origin.
	before := o.Gets.Load()
	get(t, m.url(o, "/status/500"))
	if o.Gets.Load() != before+1 {
		t.Errorf("a 500 was cached")
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	o := newOrigin(t)
	m := newMirror(t, o)
	addr := o.HostPort()
	o.Close() // nothing listens there any more
	r := get(t, m.URL+"/"+addr+"/file")
	if r.StatusCode != 502 {
		t.Fatalf("status %d; want 502", r.StatusCode)
	}
	if strings.Contains(string(r.body), "127.0.0.1") || strings.Contains(string(r.body), "refused") {
		t.Errorf("body leaks internal detail: %q", r.body)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	o := newOrigin(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		<-release // never answers while the test runs
		return true
	})
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{
			RootCAs: o.CertPool(), AllowPrivate: true, ResponseHeaderTimeout: 200 * time.Millisecond,
		})
	})
	r := get(t, m.url(o, "/slow"))
	if r.StatusCode != 504 {
		t.Fatalf("status %d; want 504", r.StatusCode)
	}
}

// A file the origin serves with Content-Encoding (a .gz served as gzip, as
// many origins do) is replayed byte for byte, with the encoding and with
// Content-Length, whole and by range.
func TestContentEncodingKeepsLength(t *testing.T) {
	o := newOrigin(t)
	data := payload(22, 50000)
	o.Put("/pkg.tar.gz", data).Header = http.Header{"Content-Encoding": {"gzip"}}
	m := newMirror(t, o)
	for _, round := range []string{"cold", "warm"} {
		r := get(t, m.url(o, "/pkg.tar.gz"))
		if r.StatusCode != 200 || !bytes.Equal(r.body, data) || r.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: status %d, %d bytes, encoding %q", round, r.StatusCode, len(r.body), r.Header.Get("Content-Encoding"))
		}
		// (The test origin itself sends no length with an encoding:
		// net/http's ServeContent leaves it out. Once stored, the length
		// is known.)
		if round == "warm" && r.ContentLength != int64(len(data)) {
			t.Errorf("warm: Content-Length %d; want %d", r.ContentLength, len(data))
		}
		waitFills(t, m)
	}
	r := do(t, "GET", m.url(o, "/pkg.tar.gz"), http.Header{"Range": {"bytes=0-9"}})
	if r.StatusCode != 206 || !bytes.Equal(r.body, data[:10]) || r.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("range: status %d, encoding %q", r.StatusCode, r.Header.Get("Content-Encoding"))
	}
	r = do(t, "GET", m.url(o, "/pkg.tar.gz"), http.Header{"Range": {"bytes=999999-"}})
	if r.StatusCode != 416 || r.Header.Get("Content-Encoding") != "" {
		t.Fatalf("416: encoding %q on an error", r.Header.Get("Content-Encoding"))
	}
}
