package httpmirror_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// A plain hit answered by ServeHit (the public listener's loop) carries
// exactly the status, header fields and body ServeHTTP gives the same
// request, for GET and HEAD, with and without freshness headers,
// Content-Encoding or Content-Type; and it is counted and logged.
func TestServeHitMatchesServeHTTP(t *testing.T) {
	o, m, files := storedFiles(t, "/plain.bin", 200, 3000)
	for path := range files {
		get(t, m.url(o, path)) // a hit, which puts the body in memory
	}
	for path, f := range files {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			want, _, resp := serveBoth(t, m, method, "/"+o.HostPort()+path)
			wantBody := want.Body.Bytes()
			if method == http.MethodHead {
				wantBody = nil
			}
			if !bytes.Equal(resp.Body, wantBody) || (method == http.MethodGet && !bytes.Equal(resp.Body, f.Data)) {
				t.Errorf("%s %s: ServeHit body of %d bytes; want %d", method, path, len(resp.Body), len(wantBody))
			}
		}
	}
	// What is not a plain hit is left to ServeHTTP.
	for name, req := range map[string]*httpmirror.HitRequest{
		"range":       {Method: "GET", Path: "/" + o.HostPort() + "/plain.bin", Header: http.Header{"Range": {"bytes=0-1"}}},
		"conditional": {Method: "GET", Path: "/" + o.HostPort() + "/plain.bin", Header: http.Header{"If-None-Match": {`"x"`}}},
		"miss":        {Method: "GET", Path: "/" + o.HostPort() + "/cold.bin", Header: http.Header{}},
		"POST":        {Method: "POST", Path: "/" + o.HostPort() + "/plain.bin", Header: http.Header{}},
		"traversal":   {Method: "GET", Path: "/" + o.HostPort() + "/../plain.bin", Header: http.Header{}},
	} {
		var resp httpmirror.HitResponse
		if m.h.ServeHit(req, &resp) {
			t.Errorf("%s: ServeHit answered; want it left to ServeHTTP", name)
		}
		// The decision made for it goes to ServeHTTP with the connection;
		// here nobody takes it.
		if h := resp.Handover(); h != nil {
			h.Close()
		}
	}
	// One decision for both paths: a client with a credential gets a
	// stored object fetched without one from the loop, as from ServeHTTP.
	req := &httpmirror.HitRequest{Method: "GET", Path: "/" + o.HostPort() + "/plain.bin", Header: http.Header{"Authorization": {"Bearer t"}}}
	var resp httpmirror.HitResponse
	if !m.h.ServeHit(req, &resp) || !bytes.Equal(resp.Body, files["/plain.bin"].Data) {
		t.Errorf("credential, public object: ServeHit declined, or answered %d bytes", len(resp.Body))
	}
}

// storedFiles returns a mirror that has stored four objects of size
// bytes (seeds from seed) from its origin o, with and without freshness
// headers, Content-Encoding and Content-Type: first (a plain binary),
// /fresh.json, /gz.tar and /untyped.
func storedFiles(t *testing.T, first string, seed uint64, size int) (*testOrigin, *testMirror, map[string]*testutil.File) {
	o := newOrigin(t)
	files := map[string]*testutil.File{}
	add := func(path string, h http.Header, typ string) {
		f := o.Put(path, payload(seed+uint64(len(files)), size))
		f.Header, f.Type = h, typ
		files[path] = f
	}
	add(first, nil, "application/octet-stream")
	add("/fresh.json", http.Header{"Cache-Control": {"max-age=600"}}, "application/json")
	add("/gz.tar", http.Header{"Content-Encoding": {"gzip"}, "Content-Disposition": {"attachment"}}, "application/x-tar")
	add("/untyped", nil, "")
	m := newMirror(t, o)
	for path := range files {
		get(t, m.url(o, path)) // the miss
		waitFills(t, m)
	}
	return o, m, files
}

// serveBoth answers a plain request for target with ServeHTTP and with
// ServeHit, which must take it, and checks that their status and header
// fields are the same (but for Date). It returns both answers and the
// request ServeHit answered.
func serveBoth(t *testing.T, m *testMirror, method, target string) (*httptest.ResponseRecorder, *httpmirror.HitRequest, *httpmirror.HitResponse) {
	t.Helper()
	want := httptest.NewRecorder()
	m.h.ServeHTTP(want, httptest.NewRequest(method, target, nil))
	req := &httpmirror.HitRequest{Method: method, Path: target, Host: "mirror", Header: http.Header{"Accept": {"*/*"}}}
	resp := &httpmirror.HitResponse{}
	if !m.h.ServeHit(req, resp) {
		t.Fatalf("%s %s: ServeHit declined a plain hit", method, target)
	}
	got, err := http.ReadResponse(bufioReader("HTTP/1.1 200 OK\r\n"+string(resp.Header)+"\r\n"), nil)
	if err != nil {
		t.Fatalf("%s %s: ServeHit's header does not parse: %v\n%s", method, target, err, resp.Header)
	}
	wh := want.Result().Header
	for _, h := range []http.Header{wh, got.Header} {
		h.Del("Date")
	}
	if want.Code != 200 || !equalHeaders(wh, got.Header) {
		t.Errorf("%s %s: ServeHit header %v; ServeHTTP %d %v", method, target, got.Header, want.Code, wh)
	}
	return want, req, resp
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

// A plain hit of an object the store keeps in a file (too large for its
// memory) is answered by ServeHit too, with the header ServeHTTP gives
// and the file's bytes; HEAD gets the header alone. HitSent releases the
// object.
func TestServeHitFromFileMatchesServeHTTP(t *testing.T) {
	o, m, files := storedFiles(t, "/big.bin", 300, 200<<10)
	for path, f := range files {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			want, req, resp := serveBoth(t, m, method, "/"+o.HostPort()+path)
			var body []byte
			if resp.File != nil {
				var err error
				if body, err = io.ReadAll(io.LimitReader(resp.File, resp.FileSize)); err != nil {
					t.Fatal(err)
				}
			}
			if resp.Body != nil {
				t.Errorf("%s %s: ServeHit answered %d bytes from memory; want the file", method, path, len(resp.Body))
			}
			switch {
			case method == http.MethodHead && (resp.File != nil || want.Body.Len() != 0):
				t.Errorf("HEAD %s: ServeHit body of %d bytes, ServeHTTP %d; want none", path, resp.FileSize, want.Body.Len())
			case method == http.MethodGet && (!bytes.Equal(body, f.Data) || !bytes.Equal(want.Body.Bytes(), f.Data)):
				t.Errorf("GET %s: ServeHit body of %d bytes, ServeHTTP %d; want the %d stored", path, len(body), want.Body.Len(), len(f.Data))
			}
			m.h.HitSent(req, resp, int64(len(body)), false)
		}
	}
}

// Hits of objects in files are served by the public listener's loop with
// sendfile, on one keep-alive connection that also carries ranges and
// conditional requests (net/http's, after the hand-over): every answer
// has the right status, header and bytes. A purge, an invalidation, and a
// new version stored while a hit's descriptor is kept open for the next
// one are seen by the next request: nothing stale is served.
func TestHitsFromFilesOnOneConnection(t *testing.T) {
	o := newOrigin(t)
	const size = 300 << 10
	v1, v2 := payload(1, size), payload(2, size)
	f := o.Put("/file.bin", v1)
	m := newMirror(t, o)
	get(t, m.url(o, "/file.bin"))
	waitFills(t, m)
	path := "/" + o.HostPort() + "/file.bin"

	// conn is a new raw connection to the public listener; send sends a
	// request on it and reads the answer.
	type conn struct {
		c  net.Conn
		br *bufio.Reader
	}
	dial := func() *conn {
		c, err := net.Dial("tcp", strings.TrimPrefix(m.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return &conn{c, bufio.NewReader(c)}
	}
	send := func(c *conn, method string, extra ...string) (*http.Response, []byte) {
		t.Helper()
		fmt.Fprintf(c.c, "%s %s HTTP/1.1\r\nHost: mirror\r\n%s\r\n", method, path, strings.Join(extra, ""))
		resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %v: %v", method, extra, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %v: body: %v", method, extra, err)
		}
		return resp, body
	}
	// check asks for the whole object three times (the first hit opens
	// the file, the next ones reuse its descriptor), and its header.
	check := func(c *conn, what string, want []byte) {
		t.Helper()
		etag := `"` + testutil.SHA256(want)[:16] + `"`
		for i := range 3 {
			resp, body := send(c, "GET")
			if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.ContentLength != int64(len(want)) || resp.Header.Get("Etag") != etag {
				t.Fatalf("%s, GET %d: %d, %d bytes, Content-Length %d, ETag %s; want 200 and the %d bytes of %s",
					what, i, resp.StatusCode, len(body), resp.ContentLength, resp.Header.Get("Etag"), len(want), etag)
			}
		}
		resp, body := send(c, "HEAD")
		if resp.StatusCode != 200 || len(body) != 0 || resp.ContentLength != int64(len(want)) || resp.Header.Get("Etag") != etag {
			t.Fatalf("%s, HEAD: %d, %d bytes, Content-Length %d, ETag %s", what, resp.StatusCode, len(body), resp.ContentLength, resp.Header.Get("Etag"))
		}
	}
	c := dial()
	check(c, "first version", v1)
	resp, body := send(c, "GET", "Range: bytes=1000-1999\r\n")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, v1[1000:2000]) {
		t.Fatalf("range: %d, %d bytes; want 206 and bytes 1000-1999", resp.StatusCode, len(body))
	}
	resp, body = send(c, "GET", "If-None-Match: "+f.ETag+"\r\n")
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("conditional: %d, %d bytes; want 304", resp.StatusCode, len(body))
	}
	// From here net/http serves the connection; its hits are as right.
	check(c, "after the hand-over", v1)

	// Purged, with a new version at the origin: the next request is a
	// miss that stores it; then hits on the loop again.
	o.Put("/file.bin", v2)
	gets := o.Gets.Load()
	if _, err := m.h.Purge(context.Background(), o.URL+"/file.bin"); err != nil {
		t.Fatal(err)
	}
	check(dial(), "purged", v2)
	waitFills(t, m)
	if n := o.Gets.Load() - gets; n != 1 {
		t.Errorf("origin GETs after the purge: %d; want 1", n)
	}
	check(dial(), "purged, then hits", v2)

	// Invalidated, with another version at the origin: revalidated, and
	// the new version served.
	o.Put("/file.bin", v1)
	if _, err := m.h.Invalidate(context.Background(), o.URL+"/file.bin"); err != nil {
		t.Fatal(err)
	}
	check(dial(), "invalidated", v1)
	waitFills(t, m)
	check(dial(), "invalidated, then hits", v1)
}
