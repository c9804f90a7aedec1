package httpmirror_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/server"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/httpmirror/httpmirror/storage/storagetest"
)

// originFile is one file a test origin serves.
type originFile struct {
	data    []byte
	etag    string
	modtime time.Time
	ctype   string
	header  http.Header
}

// testOrigin is an HTTPS origin on 127.0.0.1 that serves files with full
// HTTP semantics (http.ServeContent) and counts what it receives.
type testOrigin struct {
	*httptest.Server
	t *testing.T

	mu       sync.Mutex
	files    map[string]*originFile
	requests []*http.Request // clones of every request received
	// hook, when set, may answer a request itself (returning true).
	hook func(w http.ResponseWriter, r *http.Request, f *originFile) bool

	gets  atomic.Int64
	heads atomic.Int64
}

func newOrigin(t *testing.T) *testOrigin {
	t.Helper()
	o := &testOrigin{t: t, files: map[string]*originFile{}}
	o.Server = httptest.NewTLSServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *testOrigin) serve(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		o.gets.Add(1)
	case http.MethodHead:
		o.heads.Add(1)
	}
	o.mu.Lock()
	o.requests = append(o.requests, r.Clone(context.Background()))
	f := o.files[r.URL.Path]
	hook := o.hook
	o.mu.Unlock()
	if hook != nil && hook(w, r, f) {
		return
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	for k, v := range f.header {
		w.Header()[k] = v
	}
	if f.etag != "" {
		w.Header().Set("ETag", f.etag)
	}
	if f.ctype != "" {
		w.Header().Set("Content-Type", f.ctype)
	}
	http.ServeContent(w, r, "", f.modtime, bytes.NewReader(f.data))
}

// put makes the origin serve data at path, with a strong ETag derived from
// the content and a fixed modification time.
func (o *testOrigin) put(path string, data []byte) *originFile {
	sum := sha256.Sum256(data)
	f := &originFile{
		data:    data,
		etag:    `"` + hex.EncodeToString(sum[:8]) + `"`,
		modtime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		ctype:   "application/octet-stream",
	}
	o.mu.Lock()
	o.files[path] = f
	o.mu.Unlock()
	return f
}

func (o *testOrigin) setHook(h func(w http.ResponseWriter, r *http.Request, f *originFile) bool) {
	o.mu.Lock()
	o.hook = h
	o.mu.Unlock()
}

// received returns clones of the requests the origin got.
func (o *testOrigin) received() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.requests...)
}

// hostport is the origin's address as a mirror path segment.
func (o *testOrigin) hostport() string { return strings.TrimPrefix(o.URL, "https://") }

// certPool trusts the origin's certificate.
func (o *testOrigin) certPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(o.Certificate())
	return p
}

// client is an upstream client for the mirror that trusts the origin and
// may reach loopback.
func (o *testOrigin) client() *http.Client {
	return httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{RootCAs: o.certPool(), AllowPrivate: true})
}

// testMirror is a MirrorHandler on a loopback HTTP server.
type testMirror struct {
	*httptest.Server
	h     *httpmirror.MirrorHandler
	store storage.Backend
	root  string // cache directory, for file storage
}

// newMirror starts a mirror in host-from-first-path mode, caching on local
// disk, streaming while filling; configure may change the handler before it
// serves.
func newMirror(t *testing.T, o *testOrigin, configure ...func(*httpmirror.MirrorHandler)) *testMirror {
	t.Helper()
	root := filepath.Join(t.TempDir(), "cache")
	b, err := file.New(root)
	if err != nil {
		t.Fatal(err)
	}
	m := &testMirror{store: b, root: root}
	m.h = &httpmirror.MirrorHandler{
		RemoteCache:       b,
		HostFromFirstPath: true,
		TeeResponse:       true,
		Logger:            testLogger(t),
	}
	if o != nil {
		m.h.Client = o.client()
	}
	for _, c := range configure {
		c(m.h)
	}
	if err := m.h.Validate(); err != nil {
		t.Fatal(err)
	}
	m.Server = httptest.NewUnstartedServer(m.h)
	server.Configure(m.Server.Config)
	m.Server.Start()
	t.Cleanup(func() {
		m.Server.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.h.Close(ctx); err != nil {
			t.Errorf("closing mirror: %v", err)
		}
		b.Close()
	})
	return m
}

// url returns the mirror URL of path on origin o.
func (m *testMirror) url(o *testOrigin, path string) string {
	return m.URL + "/" + o.hostport() + path
}

// response is a finished response with its body read.
type response struct {
	*http.Response
	body []byte
	err  error // error reading the body
}

// do sends a request and reads the whole body.
func do(t *testing.T, method, u string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := noRedirectClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{Response: resp, body: body, err: err}
}

func get(t *testing.T, u string) response { t.Helper(); return do(t, http.MethodGet, u, nil) }

// noRedirectClient is a client that returns redirects instead of following
// them, with its own connection pool.
var noRedirectClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// payload returns n deterministic pseudo-random bytes.
func payload(seed uint64, n int) []byte { return storagetest.Payload(seed, n) }

// testLogger logs through t.Log.
func testLogger(t *testing.T) *slogLogger { return newSlogTestLogger(t) }

// mustParse parses a URL or fails the test.
func mustParse(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
