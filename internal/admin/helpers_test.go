package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/admin"
	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/httpmirror/httpmirror/storage/memory"
)

func TestMain(m *testing.M) {
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// env is a mirror (host from the first path) in front of a test origin,
// with its public and admin listeners on loopback.
type env struct {
	origin *testutil.Origin
	h      *httpmirror.MirrorHandler
	store  storage.Backend
	public *httptest.Server
	admin  *httptest.Server
	reg    *prometheus.Registry
}

// backends runs f once per storage backend: local disk and S3
// (versitygw).
func backends(t *testing.T, f func(t *testing.T, backend string)) {
	for _, b := range []string{"file", "s3"} {
		t.Run(b, func(t *testing.T) { f(t, b) })
	}
}

func newStore(t *testing.T, backend string) storage.Backend {
	t.Helper()
	switch backend {
	case "file":
		b, err := file.New(t.TempDir(), file.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	case "memory":
		return memory.New()
	case "s3":
		srv := s3test.Shared(t)
		return srv.Backend(t, srv.Bucket(t), "mirror")
	}
	t.Fatalf("unknown backend %q", backend)
	return nil
}

// newEnv starts a mirror caching in backend; hits are served as bytes, not
// redirects. configure may change the handler before it serves.
func newEnv(t *testing.T, backend string, configure ...func(*httpmirror.MirrorHandler)) *env {
	t.Helper()
	o := testutil.NewOrigin(t)
	e := &env{origin: o, store: newStore(t, backend), reg: prometheus.NewRegistry()}
	e.h = &httpmirror.MirrorHandler{
		RemoteCache:       e.store,
		HostFromFirstPath: true,
		TeeResponse:       true,
		NoRedirect:        true,
		Metrics:           httpmirror.NewMetrics(e.reg),
		Client:            httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{RootCAs: o.CertPool(), AllowPrivate: true}),
	}
	for _, c := range configure {
		c(e.h)
	}
	e.public = httptest.NewServer(e.h)
	srv := &admin.Server{Gatherer: e.reg, Mirror: e.h}
	e.admin = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		e.public.Close()
		e.admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.h.Close(ctx); err != nil {
			t.Errorf("closing the mirror: %v", err)
		}
	})
	return e
}

// key is the cache key of path on the origin; ref its upstream URL.
func (e *env) key(path string) string { return e.origin.HostPort() + path }
func (e *env) ref(path string) string { return "https://" + e.origin.HostPort() + path }

// get fetches path through the public listener and returns the status
// and body.
func (e *env) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(e.public.URL + "/" + e.key(path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", path, err)
	}
	return resp.StatusCode, body
}

// waitFills waits until no download is in progress.
func (e *env) waitFills(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.h.WaitFills(ctx); err != nil {
		t.Fatal(err)
	}
}

// api sends a request to the admin listener and decodes its JSON answer
// into out (when non-nil); it returns the status.
func (e *env) api(t *testing.T, method, path string, body []byte, out any) int {
	t.Helper()
	return call(t, e.admin.URL, method, path, body, out)
}

func call(t *testing.T, base, method, path string, body []byte, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); method != http.MethodHead && ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %q; want JSON", method, path, ct, raw)
	}
	if out != nil && method != http.MethodHead {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, raw)
		}
	}
	return resp.StatusCode
}

// apiErr is the error body of the admin API.
type apiErr struct {
	Error   string `json:"error"`
	Invalid []struct {
		Index  int    `json:"index"`
		Reason string `json:"reason"`
	} `json:"invalid"`
	Count int `json:"count"`
}

func itoa(n int) string { return strconv.Itoa(n) }

// metric returns the line of the admin listener's /metrics that starts
// with series (name and labels), or "".
func (e *env) metric(t *testing.T, series string) string {
	t.Helper()
	resp, err := http.Get(e.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, series+" ") {
			return line
		}
	}
	return ""
}
