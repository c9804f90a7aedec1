package cidn_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/cidn"
	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/s3"
)

// fixture is one test's origin, bucket and S3 backend.
type fixture struct {
	e      *env
	r      *runner
	o      *testutil.Origin
	srv    *s3test.Server
	bucket string
	store  *s3.Backend
}

func newFixture(t *testing.T, e *env, r *runner) *fixture {
	t.Helper()
	srv := s3test.Shared(t)
	f := &fixture{e: e, r: r, o: testutil.NewOrigin(t), srv: srv, bucket: srv.Bucket(t)}
	f.store = f.newStore(t)
	// The CIDN destination of this test's bucket is named after it.
	r.addDestination(f.bucket, f.bucket)
	return f
}

// newStore returns an S3 backend on the fixture's bucket, under a root
// directory, so that object keys differ from cache keys.
func (f *fixture) newStore(t *testing.T) *s3.Backend {
	t.Helper()
	return f.srv.Backend(t, f.bucket, "mirror")
}

// mirror is a MirrorHandler with its own CIDN client (and informer) on a
// loopback server.
type mirror struct {
	*httptest.Server
	h   *httpmirror.MirrorHandler
	c   *cidn.Client
	reg *prometheus.Registry
}

// mirror starts a mirror on store (the fixture's own when nil) whose
// misses go to CIDN through the kubeconfig of the API server.
func (f *fixture) mirror(t *testing.T, store *s3.Backend, configure ...func(*httpmirror.MirrorHandler)) *mirror {
	t.Helper()
	if store == nil {
		store = f.store
	}
	rc, err := cidn.RESTConfig(f.e.kubeconfig, "", false)
	if err != nil {
		t.Fatal(err)
	}
	m := &mirror{reg: prometheus.NewRegistry()}
	m.c, err = cidn.NewForConfig(rc, cidn.Config{
		Destination:      f.bucket,
		ObjectKey:        store.ObjectKey,
		MaximumRunning:   10,
		MinimumChunkSize: 128 << 20,
		Logger:           testLogger(t),
		Metrics:          cidn.NewMetrics(m.reg),
	})
	if err != nil {
		t.Fatal(err)
	}
	m.c.Start()
	m.h = &httpmirror.MirrorHandler{
		RemoteCache:       store,
		HostFromFirstPath: true,
		TeeResponse:       true,
		Client:            httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{RootCAs: f.o.CertPool(), AllowPrivate: true}),
		Logger:            testLogger(t),
		Metrics:           httpmirror.NewMetrics(m.reg),
		CIDN:              m.c,
	}
	for _, c := range configure {
		c(m.h)
	}
	if err := m.h.Validate(); err != nil {
		t.Fatal(err)
	}
	m.Server = httptest.NewServer(m.h)
	t.Cleanup(func() {
		m.Server.Close()
		m.c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		m.h.Close(ctx)
	})
	return m
}

// url returns the mirror URL of path on the fixture's origin.
func (m *mirror) url(f *fixture, path string) string { return m.URL + "/" + f.o.HostPort() + path }

// metric returns the value of a counter or gauge of the mirror's registry,
// summed over the series whose labels include want.
func (m *mirror) metric(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
	next:
		for _, s := range fam.Metric {
			for k, v := range want {
				if !hasLabel(s, k, v) {
					continue next
				}
			}
			sum += s.GetCounter().GetValue() + s.GetGauge().GetValue()
		}
	}
	return sum
}

func hasLabel(s *dto.Metric, k, v string) bool {
	for _, l := range s.Label {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

// key returns the cache key of path on the fixture's origin.
func (f *fixture) key(path string) string { return f.o.HostPort() + path }

// upstream returns the origin URL of path.
func (f *fixture) upstream(path string) string { return "https://" + f.o.HostPort() + path }

// blob returns the Blob of path, or nil.
func (f *fixture) blob(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := f.e.dyn.Resource(cidn.BlobResource).Get(ctx, cidn.BlobName(f.key(path)), metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return u
}

// response is a finished response with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// clientTimeout bounds every request: a request that hangs fails the test.
const clientTimeout = 60 * time.Second

var noRedirect = &http.Client{
	Timeout:       clientTimeout,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// following follows redirects, as download clients do.
var following = &http.Client{Timeout: clientTimeout}

func do(t *testing.T, c *http.Client, method, u string) response {
	t.Helper()
	r, err := fetch(c, method, u)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fetch is do for goroutines other than the test's.
func fetch(c *http.Client, method, u string) (response, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return response{}, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("%s %s: reading the body: %w", method, u, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// getVia302 expects a redirect to a presigned URL of the store and returns
// what following it gives.
func getVia302(t *testing.T, f *fixture, u string) response {
	t.Helper()
	r := do(t, noRedirect, http.MethodGet, u)
	loc := r.header.Get("Location")
	if r.status != http.StatusFound || !strings.HasPrefix(loc, f.srv.Endpoint+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("GET %s: status %d, Location %q, body %q; want 302 to a presigned URL of the store", u, r.status, loc, r.body)
	}
	return do(t, noRedirect, http.MethodGet, loc)
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// eventually waits, up to timeout, until cond holds.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runnerClient is the runner's HTTP client: it trusts the test origins,
// which all use net/http/httptest's certificate.
func runnerClient(t *testing.T) *http.Client {
	t.Helper()
	o := testutil.NewOrigin(t)
	return httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{RootCAs: o.CertPool(), AllowPrivate: true})
}

// testLogger logs through t.Log until the test ends: informers and
// handlers may log after it returned.
func testLogger(t *testing.T) *slog.Logger {
	l := &tLog{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return slog.New(httpmirror.NewPrintlnHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (l *tLog) Println(v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(v...)
	}
}
