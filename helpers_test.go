package httpmirror_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/server"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
)

// testOrigin is the shared test origin with the mirror client added.
type testOrigin struct{ *testutil.Origin }

func newOrigin(t testing.TB) *testOrigin { return &testOrigin{testutil.NewOrigin(t)} }

// client is an upstream client for the mirror that trusts the origin and
// may reach loopback.
func (o *testOrigin) client() *http.Client {
	return httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{RootCAs: o.CertPool(), AllowPrivate: true})
}

// testMirror is a MirrorHandler on a loopback HTTP server.
type testMirror struct {
	*httptest.Server
	pub   *server.Server
	h     *httpmirror.MirrorHandler
	store storage.Backend
	root  string // cache directory, for file storage
}

// newMirror starts a mirror in host-from-first-path mode, caching on local
// disk, streaming while filling; configure may change the handler before it
// serves.
func newMirror(t testing.TB, o *testOrigin, configure ...func(*httpmirror.MirrorHandler)) *testMirror {
	t.Helper()
	root := filepath.Join(t.TempDir(), "cache")
	b, err := file.New(root, file.Options{})
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
	// The public listener as the command runs it: plain hits on the fast
	// loop, everything else through net/http.
	pub, u, err := server.StartPublic(m.h)
	if err != nil {
		t.Fatal(err)
	}
	m.pub = pub
	m.Server = &httptest.Server{URL: u, Config: pub.HTTP}
	t.Cleanup(func() {
		pub.Close()
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
	return m.URL + "/" + o.HostPort() + path
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
	return doWith(t, noRedirectClient, method, u, header)
}

// doWith is do with client c.
func doWith(t *testing.T, c *http.Client, method, u string, header http.Header) response {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	body, err := readBody(resp)
	return response{Response: resp, body: body, err: err}
}

// readBody reads resp's body whole: into one allocation when its length
// is known, since io.ReadAll's growing copies of a large body cost seconds
// under the race detector when many clients read at once.
func readBody(resp *http.Response) ([]byte, error) {
	var buf bytes.Buffer
	if resp.ContentLength > 0 {
		// MinRead spare bytes, so that reading the EOF does not grow it.
		buf.Grow(int(resp.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(resp.Body)
	return buf.Bytes(), err
}

func get(t *testing.T, u string) response { t.Helper(); return do(t, http.MethodGet, u, nil) }

// noRedirectClient is a client that returns redirects instead of following
// them, with its own connection pool.
var noRedirectClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
}

func sha(b []byte) string { return testutil.SHA256(b) }

// payload returns n deterministic pseudo-random bytes.
func payload(seed uint64, n int) []byte { return testutil.Payload(seed, n) }

// testLogger logs through t.Log.
func testLogger(t testing.TB) *slogLogger { return newSlogTestLogger(t) }

// countFiles counts the regular files under dir.
func countFiles(t testing.TB, dir string) int { return testutil.CountFiles(t, dir) }
