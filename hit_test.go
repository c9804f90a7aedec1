package httpmirror_test

import (
	"bufio"
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// A plain hit answered by ServeHit (the public listener's loop) carries
// exactly the status, header fields and body ServeHTTP gives the same
// request, for GET and HEAD, with and without freshness headers,
// Content-Encoding or Content-Type; and it is counted and logged.
func TestServeHitMatchesServeHTTP(t *testing.T) {
	o := newOrigin(t)
	files := map[string]*testutil.File{}
	add := func(path string, h http.Header, typ string) {
		f := o.Put(path, payload(uint64(len(files)+200), 3000))
		f.Header, f.Type = h, typ
		files[path] = f
	}
	add("/plain.bin", nil, "application/octet-stream")
	add("/fresh.json", http.Header{"Cache-Control": {"max-age=600"}}, "application/json")
	add("/gz.tar", http.Header{"Content-Encoding": {"gzip"}, "Content-Disposition": {"attachment"}}, "application/x-tar")
	add("/untyped", nil, "")
	m := newMirror(t, o)
	for path := range files {
		get(t, m.url(o, path)) // the miss
		waitFills(t, m)
		get(t, m.url(o, path)) // a hit, which puts the body in memory
	}
	for path, f := range files {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			target := "/" + o.HostPort() + path
			want := httptest.NewRecorder()
			m.h.ServeHTTP(want, httptest.NewRequest(method, target, nil))

			req := &httpmirror.HitRequest{Method: method, Path: target, Host: "mirror", Header: http.Header{"Accept": {"*/*"}}}
			var resp httpmirror.HitResponse
			if !m.h.ServeHit(req, &resp) {
				t.Fatalf("%s %s: ServeHit declined a plain hit", method, path)
			}
			got, err := http.ReadResponse(bufioReader("HTTP/1.1 200 OK\r\n"+string(resp.Header)+"\r\n"), nil)
			if err != nil {
				t.Fatalf("%s %s: ServeHit's header does not parse: %v\n%s", method, path, err, resp.Header)
			}
			wh := want.Result().Header
			for _, h := range []http.Header{wh, got.Header} {
				h.Del("Date")
			}
			if want.Code != 200 || !equalHeaders(wh, got.Header) {
				t.Errorf("%s %s: ServeHit header %v; ServeHTTP %d %v", method, path, got.Header, want.Code, wh)
			}
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
