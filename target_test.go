package httpmirror_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror"
)

// recordingTransport answers every upstream request with 200 "upstream"
// and records the URLs asked for.
type recordingTransport struct {
	mu   sync.Mutex
	urls []string
	reqs []*http.Request
}

func (rt *recordingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.urls = append(rt.urls, r.URL.String())
	rt.reqs = append(rt.reqs, r)
	rt.mu.Unlock()
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"text/plain"}, "Connection": {"X-Secret"}, "X-Secret": {"hop"}, "Keep-Alive": {"timeout=5"}, "X-Origin": {"yes"}},
		Body:       io.NopCloser(strings.NewReader("upstream")),
		Request:    r,
	}, nil
}

func TestRouting(t *testing.T) {
	firstPath := func(m *httpmirror.MirrorHandler) { m.HostFromFirstPath = true }
	fixedHost := func(m *httpmirror.MirrorHandler) { m.Host = "files.example.org" }
	baseDomain := func(m *httpmirror.MirrorHandler) { m.BaseDomain = "mirror.test" }
	headerMode := func(m *httpmirror.MirrorHandler) {}
	blockExe := func(m *httpmirror.MirrorHandler) {
		m.HostFromFirstPath = true
		m.BlockSuffix = []string{".exe", ".msi"}
	}
	plainHTTP := func(m *httpmirror.MirrorHandler) { m.HostFromFirstPath = true; m.UpstreamScheme = "http" }

	tests := []struct {
		name     string
		mode     func(*httpmirror.MirrorHandler)
		method   string
		host     string // Host header; default "mirror.local"
		target   string // request target
		status   int
		upstream string // expected upstream URL when status is 200
	}{
		{"first path", firstPath, "GET", "", "/example.com/a/b.tar.gz", 200, "https://example.com/a/b.tar.gz"},
		{"first path HEAD", firstPath, "HEAD", "", "/example.com/a/b.tar.gz", 200, "https://example.com/a/b.tar.gz"},
		{"first path with port", firstPath, "GET", "", "/example.com:8443/a", 200, "https://example.com:8443/a"},
		{"first path encoded port", firstPath, "GET", "", "/example.com%3A8443/a", 200, "https://example.com:8443/a"},
		{"first path upper case host", firstPath, "GET", "", "/Example.COM/A", 200, "https://example.com/A"},
		{"first path trailing dot", firstPath, "GET", "", "/example.com./a", 200, "https://example.com/a"},
		{"query dropped", firstPath, "GET", "", "/example.com/a?x=1&y=2", 200, "https://example.com/a"},
		{"double slashes cleaned", firstPath, "GET", "", "/example.com//a///b", 200, "https://example.com/a/b"},
		{"dot segments cleaned", firstPath, "GET", "", "/example.com/./a/./b", 200, "https://example.com/a/b"},
		{"directory url kept", firstPath, "GET", "", "/example.com/simple/pkg/", 200, "https://example.com/simple/pkg/"},
		{"encoded slash kept", firstPath, "GET", "", "/example.com/@scope%2Fname", 200, "https://example.com/@scope%2Fname"},
		{"ipv4 literal", firstPath, "GET", "", "/93.184.216.34/a", 200, "https://93.184.216.34/a"},
		{"http scheme", plainHTTP, "GET", "", "/example.com/a", 200, "http://example.com/a"},
		{"no dot in host", firstPath, "GET", "", "/localhost/a", 404, ""},
		{"host only", firstPath, "GET", "", "/example.com", 404, ""},
		{"host and slash only", firstPath, "GET", "", "/example.com/", 404, ""},
		{"root", firstPath, "GET", "", "/", 404, ""},
		{"bad port", firstPath, "GET", "", "/example.com:99999/a", 404, ""},
		{"bad host chars", firstPath, "GET", "", "/exa$mple.com/a", 404, ""},
		{"dot dot", firstPath, "GET", "", "/example.com/a/../b", 400, ""},
		{"encoded dot dot", firstPath, "GET", "", "/example.com/a/%2e%2e/b", 400, ""},
		{"POST", firstPath, "POST", "", "/example.com/a", 405, ""},
		{"PUT", firstPath, "PUT", "", "/example.com/a", 405, ""},
		{"DELETE", firstPath, "DELETE", "", "/example.com/a", 405, ""},
		{"OPTIONS", firstPath, "OPTIONS", "", "/example.com/a", 405, ""},
		{"blocked suffix", blockExe, "GET", "", "/example.com/setup.exe", 403, ""},
		{"blocked suffix case", blockExe, "GET", "", "/example.com/SETUP.EXE", 403, ""},
		{"blocked suffix encoded", blockExe, "GET", "", "/example.com/setup%2Emsi", 403, ""},
		{"not blocked", blockExe, "GET", "", "/example.com/setup.exe.sig", 200, "https://example.com/setup.exe.sig"},
		{"fixed host", fixedHost, "GET", "", "/a/b", 200, "https://files.example.org/a/b"},
		{"fixed host ignores Host", fixedHost, "GET", "other.example.com", "/x", 200, "https://files.example.org/x"},
		{"fixed host root", fixedHost, "GET", "", "/", 404, ""},
		{"host header", headerMode, "GET", "files.example.com", "/x/y", 200, "https://files.example.com/x/y"},
		{"host header port stripped", headerMode, "GET", "files.example.com:8080", "/x", 200, "https://files.example.com/x"},
		{"host header no dot", headerMode, "GET", "localhost:8080", "/x", 404, ""},
		{"base domain", baseDomain, "GET", "github.com.mirror.test", "/o/r/file", 200, "https://github.com/o/r/file"},
		{"base domain with port", baseDomain, "GET", "github.com.mirror.test:8080", "/f", 200, "https://github.com/f"},
		{"base domain case", baseDomain, "GET", "GitHub.com.Mirror.Test", "/f", 200, "https://github.com/f"},
		{"base domain missing", baseDomain, "GET", "github.com", "/f", 404, ""},
		{"base domain not on label boundary", baseDomain, "GET", "evilmirror.test", "/f", 404, ""},
		{"base domain alone", baseDomain, "GET", "mirror.test", "/f", 404, ""},
		{"base domain leaves no dot", baseDomain, "GET", "intranet.mirror.test", "/f", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &recordingTransport{}
			m := &httpmirror.MirrorHandler{Client: &http.Client{Transport: rt}}
			tc.mode(m)
			if err := m.Validate(); err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(tc.method, "http://mirror.local"+tc.target, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			w := httptest.NewRecorder()
			m.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status = %d; want %d (body %q)", w.Code, tc.status, w.Body.String())
			}
			switch {
			case tc.status == 200:
				if len(rt.urls) != 1 || rt.urls[0] != tc.upstream {
					t.Errorf("upstream = %q; want [%s]", rt.urls, tc.upstream)
				}
			case len(rt.urls) != 0:
				t.Errorf("upstream contacted (%q) for a refused request", rt.urls)
			}
			if tc.status == 405 && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q; want %q", w.Header().Get("Allow"), "GET, HEAD")
			}
		})
	}
}

func TestNotFoundHandler(t *testing.T) {
	m := &httpmirror.MirrorHandler{
		HostFromFirstPath: true,
		Client:            &http.Client{Transport: &recordingTransport{}},
		NotFound: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "custom", http.StatusTeapot)
		}),
	}
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest("GET", "/nodot/file", nil))
	if w.Code != http.StatusTeapot {
		t.Fatalf("status = %d; want the NotFound handler's %d", w.Code, http.StatusTeapot)
	}
}

func TestValidateRejectsAmbiguousModes(t *testing.T) {
	for name, m := range map[string]*httpmirror.MirrorHandler{
		"host and first path": {Host: "a.example.com", HostFromFirstPath: true},
		"host and base":       {Host: "a.example.com", BaseDomain: "b.test"},
		"first path and base": {HostFromFirstPath: true, BaseDomain: "b.test"},
		"bad host":            {Host: "no_dot"},
		"bad scheme":          {UpstreamScheme: "ftp"},
	} {
		if err := m.Validate(); err == nil {
			t.Errorf("%s: Validate succeeded; want an error", name)
		}
	}
}

func TestDirectModeHeaders(t *testing.T) {
	rt := &recordingTransport{}
	m := &httpmirror.MirrorHandler{HostFromFirstPath: true, Client: &http.Client{Transport: rt}}
	req := httptest.NewRequest("GET", "/example.com/f", nil)
	req.Header.Set("Range", "bytes=0-1")
	req.Header.Set("X-Forwarded-For", "10.1.2.3")
	req.Header.Set("Connection", "X-Private")
	req.Header.Set("X-Private", "1")
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	w := httptest.NewRecorder()
	m.ServeHTTP(w, req)
	if w.Code != 200 || w.Body.String() != "upstream" {
		t.Fatalf("got %d %q; want 200 %q", w.Code, w.Body.String(), "upstream")
	}
	up := rt.reqs[0].Header
	if up.Get("Range") != "bytes=0-1" {
		t.Errorf("Range not forwarded: %q", up.Get("Range"))
	}
	for _, k := range []string{"X-Forwarded-For", "X-Private", "Proxy-Authorization", "Connection"} {
		if up.Get(k) != "" {
			t.Errorf("request header %s forwarded upstream: %q", k, up.Get(k))
		}
	}
	for _, k := range []string{"X-Secret", "Keep-Alive", "Connection"} {
		if w.Header().Get(k) != "" {
			t.Errorf("response header %s passed to the client: %q", k, w.Header().Get(k))
		}
	}
	if w.Header().Get("X-Origin") != "yes" {
		t.Errorf("end-to-end response header X-Origin lost")
	}
}
