package httpmirror_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
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
		{"ipv4 octal", firstPath, "GET", "", "/0177.0.0.1/a", 200, "https://127.0.0.1/a"},
		{"ipv4 hex", firstPath, "GET", "", "/0x7f.0.0.1/a", 200, "https://127.0.0.1/a"},
		{"ipv4 short", firstPath, "GET", "", "/127.1:8443/a", 200, "https://127.0.0.1:8443/a"},
		{"ipv4 three parts", firstPath, "GET", "", "/127.0.1/a", 200, "https://127.0.0.1/a"},
		{"ipv4 hex short upper", firstPath, "GET", "", "/0X7F.1./a", 200, "https://127.0.0.1/a"},
		{"ipv4 one number", firstPath, "GET", "", "/2130706433/a", 200, "https://127.0.0.1/a"},
		{"ipv4 octal metadata", firstPath, "GET", "", "/0251.0376.0251.0376/a", 200, "https://169.254.169.254/a"},
		{"ipv4 leading zeros", firstPath, "GET", "", "/093.184.216.034/a", 404, ""}, // 09 is no octal number
		{"ipv4 out of range", firstPath, "GET", "", "/1.2.3.256/a", 404, ""},
		{"ipv4 five parts", firstPath, "GET", "", "/1.2.3.4.5/a", 404, ""},
		{"ipv4 too big", firstPath, "GET", "", "/4294967296/a", 404, ""},
		{"name ending in a number", firstPath, "GET", "", "/example.123/a", 404, ""},
		{"name ending in hex", firstPath, "GET", "", "/example.0xff/a", 404, ""},
		{"numeric label inside a name", firstPath, "GET", "", "/0x7f.example.com/a", 200, "https://0x7f.example.com/a"},
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
		{"host header numeric", headerMode, "GET", "0x7f.1:8080", "/x", 200, "https://127.0.0.1/x"},
		{"base domain", baseDomain, "GET", "github.com.mirror.test", "/o/r/file", 200, "https://github.com/o/r/file"},
		{"base domain with port", baseDomain, "GET", "github.com.mirror.test:8080", "/f", 200, "https://github.com/f"},
		{"base domain case", baseDomain, "GET", "GitHub.com.Mirror.Test", "/f", 200, "https://github.com/f"},
		{"base domain trailing dot", baseDomain, "GET", "github.com.mirror.test.", "/f", 200, "https://github.com/f"},
		{"base domain trailing dot with port", baseDomain, "GET", "github.com.mirror.test.:8080", "/f", 200, "https://github.com/f"},
		{"base domain two trailing dots", baseDomain, "GET", "github.com.mirror.test..", "/f", 404, ""},
		{"base domain numeric", baseDomain, "GET", "127.1.mirror.test", "/f", 200, "https://127.0.0.1/f"},
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

func TestCacheQuery(t *testing.T) {
	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		w.Header().Set("Content-Length", "5")
		w.Write([]byte("q=" + r.URL.Query().Get("v") + "!!")[:5])
		return true
	})
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.CacheQuery = true })
	for range 2 {
		for _, v := range []string{"1", "2"} {
			if r := get(t, m.url(o, "/f?v="+v)); string(r.body) != "q="+v+"!!" {
				t.Fatalf("v=%s: body %q", v, r.body)
			}
			waitFills(t, m)
		}
	}
	if o.Gets.Load() != 2 {
		t.Fatalf("origin GETs %d; want 2 (one per query)", o.Gets.Load())
	}
}

// A directory URL (PEP 503 page) is fetched with its Content-Type and kept
// apart from a file of the same name.
func TestDirectoryURL(t *testing.T) {
	o := newOrigin(t)
	page := []byte(`<html><body><a href="../../files/pkg-1.0.tar.gz#sha256=00">pkg-1.0.tar.gz</a></body></html>`)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		switch r.URL.Path {
		case "/simple/pkg/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(page)
		case "/simple/pkg":
			w.Write([]byte("file"))
		default:
			return false
		}
		return true
	})
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.RevalidatePatterns = []string{} })
	for range 2 {
		r := get(t, m.url(o, "/simple/pkg/"))
		if r.StatusCode != 200 || !bytes.Equal(r.body, page) || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("directory page: status %d, type %q", r.StatusCode, r.Header.Get("Content-Type"))
		}
		if r := get(t, m.url(o, "/simple/pkg")); string(r.body) != "file" {
			t.Fatalf("file of the same name: %q", r.body)
		}
		waitFills(t, m)
	}
	if o.Gets.Load() != 2 {
		t.Fatalf("origin GETs %d; want 2", o.Gets.Load())
	}
}

func TestHostileRequests(t *testing.T) {
	o := newOrigin(t)
	o.Put("/ok.txt", []byte("ok"))
	m := newMirror(t, o)
	addr := strings.TrimPrefix(m.URL, "http://")
	h := "/" + o.HostPort()
	long := strings.Repeat("a", 64<<10)

	reqs := map[string]string{
		"dot dot":                   "GET " + h + "/../../etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"dot dot first":             "GET /../etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded dot dot":           "GET " + h + "/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"upper encoded dot dot":     "GET " + h + "/%2E%2E/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"mixed encoded dot dot":     "GET " + h + "/.%2e/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded slash traversal":   "GET " + h + "/a%2F..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\nHost: m\r\n\r\n",
		"double encoded dot dot":    "GET " + h + "/%252e%252e/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"servlet dot dot":           "GET " + h + "/..;/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"backslash":                 "GET " + h + "/..\\..\\etc\\passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded backslash":         "GET " + h + "/..%5c..%5cetc%5cpasswd HTTP/1.1\r\nHost: m\r\n\r\n",
		"overlong utf8 dots":        "GET " + h + "/%c0%ae%c0%ae/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded NUL":               "GET " + h + "/file%00.txt HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded CRLF":              "GET " + h + "/a%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: m\r\n\r\n",
		"raw NUL":                   "GET " + h + "/a\x00b HTTP/1.1\r\nHost: m\r\n\r\n",
		"raw CR in target":          "GET " + h + "/a\rb HTTP/1.1\r\nHost: m\r\n\r\n",
		"invalid escape":            "GET " + h + "/%zz HTTP/1.1\r\nHost: m\r\n\r\n",
		"64 KiB segment":            "GET " + h + "/" + long + " HTTP/1.1\r\nHost: m\r\n\r\n",
		"duplicate Host":            "GET " + h + "/ok.txt HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n",
		"bad Host":                  "GET " + h + "/ok.txt HTTP/1.1\r\nHost: exa mple.com\r\n\r\n",
		"missing Host":              "GET " + h + "/ok.txt HTTP/1.1\r\n\r\n",
		"asterisk target":           "GET * HTTP/1.1\r\nHost: m\r\n\r\n",
		"garbage request line":      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
		"POST":                      "POST " + h + "/ok.txt HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n",
		"TRACE":                     "TRACE " + h + "/ok.txt HTTP/1.1\r\nHost: m\r\n\r\n",
		"CONNECT":                   "CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n",
		"absolute-form to metadata": "GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
		"huge header":               "GET " + h + "/ok.txt HTTP/1.1\r\nHost: m\r\nX-Big: " + strings.Repeat("b", 1<<20) + "\r\n\r\n",
		"host is dot dot":           "GET /../ok.txt HTTP/1.1\r\nHost: m\r\n\r\n",
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			code := testutil.RawStatus(t, addr, req)
			if code < 400 || code > 499 {
				t.Errorf("status %d; want a 4xx", code)
			}
			// The server keeps serving.
			if r := get(t, m.url(o, "/ok.txt")); r.StatusCode != 200 || string(r.body) != "ok" {
				t.Fatalf("after the hostile request: status %d body %q", r.StatusCode, r.body)
			}
		})
	}
	if got := o.Gets.Load(); got != 1 {
		t.Errorf("origin saw %d GETs; want 1 (the control file)", got)
	}

	// Nothing but the cache's own layout exists: the parent of the cache
	// root holds only the root, and the root only its fixed entries (the
	// lock, the layout and the index's files) and hash-named object files
	// in the directory of their first byte (once the control file's fill
	// has committed).
	waitFills(t, m)
	parent := filepath.Dir(m.root)
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 || entries[0].Name() != "cache" {
		t.Errorf("cache parent holds %v; want only the cache directory", entries)
	}
	objectName := regexp.MustCompile(`^objects/([0-9a-f]{2})/([0-9a-f]{64})$`)
	fixed := map[string]bool{"lock": true, "layout": true, "index.db": true, "index.journal": true, "index.state": true}
	filepath.WalkDir(m.root, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(m.root, p)
		if err != nil || d.IsDir() || fixed[rel] {
			return nil
		}
		if m := objectName.FindStringSubmatch(filepath.ToSlash(rel)); m == nil || m[2][:2] != m[1] {
			t.Errorf("unexpected file in the cache: %s", rel)
		}
		return nil
	})
}

// FuzzCachePath feeds arbitrary request targets and Host headers through
// target resolution (in the first-path and Host-header modes) and the disk
// backend's key-to-file mapping: whatever the request holds, the file stays
// inside the cache root.
func FuzzCachePath(f *testing.F) {
	for _, s := range []struct{ host, target string }{
		{"example.com", "/example.com/a/b"},
		{"example.com", "/example.com/../../etc/passwd"},
		{"example.com", "/example.com/%2e%2e/%2e%2e/etc/passwd"},
		{"example.com", "/example.com/a%2F..%2F..%2Fx"},
		{"example.com", "/example.com/..%5c..%5cwin.ini"},
		{"example.com", "/example.com/a%00b"},
		{"example.com", "/example.com:443/%252e%252e/x"},
		{"../../etc", "/passwd"},
		{"a.b%2f..%2f..", "/x"},
		{"example.com", "/" + strings.Repeat("a", 300) + ".com/" + strings.Repeat("b/", 200)},
		{"[::1]:80", "/x/y"},
		{"example.com", "/example.com/simple/pkg/"},
	} {
		f.Add(s.host, s.target)
	}
	root := filepath.Join(f.TempDir(), "cache")
	b, err := file.New(root, file.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	handlers := []*httpmirror.MirrorHandler{
		{HostFromFirstPath: true, Client: &http.Client{}},
		{Client: &http.Client{}},
		{BaseDomain: "mirror.test", Client: &http.Client{}},
	}
	f.Fuzz(func(t *testing.T, host, target string) {
		raw := "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http answers 400 before any handler runs
		}
		for _, h := range handlers {
			key, _, err := h.ResolveKey(req)
			if err != nil {
				continue
			}
			if err := storage.ValidateKey(key); err != nil {
				t.Fatalf("resolved key %q is invalid: %v", key, err)
			}
			for _, seg := range strings.Split(strings.TrimSuffix(key, "/"), "/") {
				dec, err := url.PathUnescape(seg)
				if err != nil {
					t.Fatalf("resolved key %q has an invalid escape in %q", key, seg)
				}
				for _, part := range strings.Split(dec, "/") {
					if p, _, _ := strings.Cut(part, ";"); p == ".." || strings.ContainsAny(part, "\\\x00") {
						t.Fatalf("resolved key %q has segment %q", key, seg)
					}
				}
			}
			p, err := b.Path(key)
			if err != nil {
				t.Fatalf("Path(%q): %v", key, err)
			}
			rel, err := filepath.Rel(filepath.Join(root, "objects"), p)
			if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
				t.Fatalf("key %q maps to %q, outside %s", key, p, root)
			}
		}
	})
}
