package httpmirror_test

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// Without a cache every request goes to the origin, and its status, headers
// and body come back as they are.
func TestDirectMode(t *testing.T) {
	o := newOrigin(t)
	data := payload(20, 200000)
	f := o.Put("/d.bin", data)
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.RemoteCache = nil })
	u := m.url(o, "/d.bin")

	for i := range 2 {
		r := get(t, u)
		if r.StatusCode != 200 || !bytes.Equal(r.body, data) || r.Header.Get("Etag") != f.ETag {
			t.Fatalf("GET %d: status %d, %d bytes, ETag %q", i, r.StatusCode, len(r.body), r.Header.Get("Etag"))
		}
	}
	if n := o.Gets.Load(); n != 2 {
		t.Errorf("origin GETs %d; want 2 (nothing is cached)", n)
	}
	r := do(t, "GET", u, http.Header{"Range": {"bytes=5-9"}})
	if r.StatusCode != 206 || !bytes.Equal(r.body, data[5:10]) {
		t.Errorf("range: status %d, body %q", r.StatusCode, r.body)
	}
	r = do(t, "GET", u, http.Header{"If-None-Match": {f.ETag}})
	if r.StatusCode != 304 {
		t.Errorf("conditional: status %d; want the origin's 304", r.StatusCode)
	}
	r = do(t, "HEAD", u, nil)
	if r.StatusCode != 200 || r.ContentLength != int64(len(data)) || len(r.body) != 0 {
		t.Errorf("HEAD: status %d, length %d", r.StatusCode, r.ContentLength)
	}
	if r := get(t, m.url(o, "/missing")); r.StatusCode != 404 {
		t.Errorf("missing: status %d; want 404", r.StatusCode)
	}
	if n := countFiles(t, m.root+"/objects"); n != 0 {
		t.Errorf("%d objects stored in direct mode", n)
	}
}

// A streamed body of unknown length that breaks is aborted, not ended
// cleanly.
func TestDirectModeAbortsBrokenBody(t *testing.T) {
	o := newOrigin(t)
	o.Put("/broken", payload(21, 100000))
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		w.Write(f.Data[:50000]) // chunked: no Content-Length
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.RemoteCache = nil })
	r := get(t, m.url(o, "/broken"))
	if r.err == nil {
		t.Fatalf("body of %d bytes ended cleanly; want an aborted transfer", len(r.body))
	}
}
