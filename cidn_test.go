package httpmirror_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// These tests drive the handler's CIDN path with a stand-in for CIDN that
// copies files into the store itself. The cidn package's own tests, in the
// tests/cidn module, run the real client against a Kubernetes API server.

// fakeCIDN is a CIDN stand-in: one transfer per key, which copies the
// source into the store.
type fakeCIDN struct {
	store  storage.Backend
	client *http.Client

	// unavailable, when set, is Ensure's error.
	unavailable error
	// hold, when set, holds every transfer until it opens.
	hold *testutil.Gate
	// result, when set, ends a transfer with its error instead of copying;
	// errSkipCopy ends it successfully without storing anything.
	result func(key string) error

	ensures  atomic.Int64
	released atomic.Int64
	// ensured and releases, when set, receive a value at every Ensure and
	// Release.
	ensured, releases chan struct{}

	mu        sync.Mutex
	transfers map[string]*fakeTransfer
}

var errSkipCopy = errors.New("succeed without copying")

type fakeTransfer struct {
	done chan struct{}
	err  error
}

type fakeHandle struct {
	*fakeTransfer
	f    *fakeCIDN
	once sync.Once
}

func (h *fakeHandle) Done() <-chan struct{} { return h.done }
func (h *fakeHandle) Err() error            { return h.err }
func (h *fakeHandle) Release() {
	h.once.Do(func() {
		h.f.released.Add(1)
		if h.f.releases != nil {
			h.f.releases <- struct{}{}
		}
	})
}

func newFakeCIDN(store storage.Backend, o *testOrigin) *fakeCIDN {
	return &fakeCIDN{store: store, client: o.client(), transfers: map[string]*fakeTransfer{}}
}

func (f *fakeCIDN) Ensure(ctx context.Context, key, src string) (httpmirror.CIDNTransfer, error) {
	f.ensures.Add(1)
	if f.ensured != nil {
		f.ensured <- struct{}{}
	}
	if f.unavailable != nil {
		return nil, f.unavailable
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	tr := f.transfers[key]
	if tr == nil {
		tr = &fakeTransfer{done: make(chan struct{})}
		f.transfers[key] = tr
		go func() {
			defer close(tr.done)
			tr.err = f.run(key, src)
		}()
	}
	return &fakeHandle{fakeTransfer: tr, f: f}, nil
}

func (f *fakeCIDN) run(key, src string) error {
	if f.hold != nil {
		f.hold.Wait()
	}
	if f.result != nil {
		if err := f.result(key); errors.Is(err, errSkipCopy) {
			return nil
		} else if err != nil {
			return err
		}
	}
	resp, err := f.client.Get(src)
	if err != nil {
		return &httpmirror.CIDNError{Message: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &httpmirror.CIDNError{Message: fmt.Sprintf("unexpected status code: got %d, want 200", resp.StatusCode), SourceStatus: resp.StatusCode}
	}
	ctx := context.Background()
	w, err := f.store.Create(ctx, key, storage.Info{Size: resp.ContentLength})
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return err
	}
	return w.Commit(ctx)
}

// wait waits for the transfer of key to end.
func (f *fakeCIDN) wait(t *testing.T, key string) {
	t.Helper()
	f.mu.Lock()
	tr := f.transfers[key]
	f.mu.Unlock()
	if tr == nil {
		t.Fatalf("no transfer of %s", key)
	}
	select {
	case <-tr.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("transfer of %s did not end", key)
	}
}

// newCIDNMirror starts a mirror on a memory store whose misses go to a
// fake CIDN.
func newCIDNMirror(t *testing.T, o *testOrigin, configure ...func(*httpmirror.MirrorHandler, *fakeCIDN)) (*testMirror, *fakeCIDN) {
	t.Helper()
	store := memory.New()
	f := newFakeCIDN(store, o)
	m := newMirror(t, o, withStore(store), func(h *httpmirror.MirrorHandler) {
		h.CIDN = f
		for _, c := range configure {
			c(h, f)
		}
	})
	return m, f
}

func TestCIDNMissServedFromStore(t *testing.T) {
	o := newOrigin(t)
	data := payload(60, 300000)
	o.Put("/dist/a.tgz", data)
	m, f := newCIDNMirror(t, o)
	for i := range 2 {
		r := get(t, m.url(o, "/dist/a.tgz"))
		if r.StatusCode != 200 || sha(r.body) != sha(data) {
			t.Fatalf("request %d: status %d, %d bytes; want 200 with the file", i, r.StatusCode, len(r.body))
		}
	}
	if n := f.ensures.Load(); n != 1 {
		t.Errorf("CIDN asked %d times; want 1 (the second request is a hit)", n)
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1 (CIDN's)", n)
	}
	if n := f.released.Load(); n != 1 {
		t.Errorf("%d transfers released; want 1", n)
	}
	if n := m.h.FillsInProgress(); n != 0 {
		t.Errorf("%d fills; want none: CIDN stored the file", n)
	}
}

func TestCIDNUnavailableFallsBackToFillEngine(t *testing.T) {
	o := newOrigin(t)
	data := payload(61, 200000)
	o.Put("/b.bin", data)
	reg := prometheus.NewRegistry()
	m, f := newCIDNMirror(t, o, func(h *httpmirror.MirrorHandler, f *fakeCIDN) {
		h.Metrics = httpmirror.NewMetrics(reg)
		f.unavailable = fmt.Errorf("%w: connection refused", httpmirror.ErrCIDNUnavailable)
	})
	r := get(t, m.url(o, "/b.bin"))
	if r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("status %d, %d bytes; want 200 with the file from the fill engine", r.StatusCode, len(r.body))
	}
	waitFills(t, m)
	if r := get(t, m.url(o, "/b.bin")); r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("second request: status %d; want a hit", r.StatusCode)
	}
	if n := f.ensures.Load(); n != 1 {
		t.Errorf("CIDN asked %d times; want 1", n)
	}
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	if got := value(scrape(t, ms.URL), "httpmirror_cidn_fallbacks_total", nil); got != 1 {
		t.Errorf("httpmirror_cidn_fallbacks_total = %v; want 1", got)
	}
}

func TestCIDNFailures(t *testing.T) {
	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, _ *testutil.File) bool {
		if r.URL.Path == "/broken" {
			http.Error(w, "oops", http.StatusInternalServerError)
			return true
		}
		return false
	})
	m, f := newCIDNMirror(t, o, func(_ *httpmirror.MirrorHandler, f *fakeCIDN) {
		f.result = func(key string) error {
			if strings.HasSuffix(key, "/deleted") {
				return httpmirror.ErrCIDNDeleted
			}
			if strings.HasSuffix(key, "/odd") {
				return &httpmirror.CIDNError{Message: "size\nmismatch \x00" + strings.Repeat("x", 500)}
			}
			return nil
		}
	})
	for _, c := range []struct {
		path     string
		status   int
		body     string
		requests int
	}{
		{"/broken", 502, "cidn transfer failed: unexpected status code: got 500, want 200", 1},
		{"/missing", 404, "Not Found", 2}, // the second is answered from the negative cache
		{"/deleted", 502, "cidn transfer deleted before it ended", 1},
		{"/odd", 502, "cidn transfer failed: size mismatch  xxx", 1},
	} {
		t.Run(c.path, func(t *testing.T) {
			before := f.ensures.Load()
			for range c.requests {
				r := get(t, m.url(o, c.path))
				body := strings.TrimSpace(string(r.body))
				if r.StatusCode != c.status || !strings.HasPrefix(body, c.body) || strings.ContainsAny(body, "\n\x00") || len(body) > 200 {
					t.Fatalf("status %d, body %q; want %d, %q…", r.StatusCode, body, c.status, c.body)
				}
			}
			if n := f.ensures.Load() - before; n != 1 {
				t.Errorf("CIDN asked %d times; want 1", n)
			}
		})
	}
}

func TestCIDNNoWaitProxiesWhileRunning(t *testing.T) {
	o := newOrigin(t)
	data := payload(62, 100000)
	o.Put("/c.iso", data)
	hold := testutil.NewGate(t)
	m, f := newCIDNMirror(t, o, func(h *httpmirror.MirrorHandler, f *fakeCIDN) {
		h.CIDNNoWait = true
		f.hold = hold
	})
	u := m.url(o, "/c.iso")
	r := get(t, u)
	if r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("while the transfer runs: status %d; want 200 with the file from the origin", r.StatusCode)
	}
	r = do(t, http.MethodHead, u, nil)
	if r.StatusCode != 200 || r.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD while the transfer runs: status %d, length %d", r.StatusCode, r.ContentLength)
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1 (the proxied request)", n)
	}
	hold.Open()
	f.wait(t, o.HostPort()+"/c.iso")
	r = get(t, u)
	if r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("after the transfer: status %d; want 200 with the file", r.StatusCode)
	}
	if n := o.Gets.Load(); n != 2 {
		t.Errorf("origin saw %d GETs; want 2 (one proxied, one by CIDN)", n)
	}
	if n := m.h.FillsInProgress(); n != 0 {
		t.Errorf("%d fills; want none", n)
	}
}

// A HEAD never waits for a transfer, even without CIDNNoWait.
func TestCIDNHeadDoesNotWait(t *testing.T) {
	o := newOrigin(t)
	data := payload(63, 5000)
	o.Put("/d.bin", data)
	hold := testutil.NewGate(t)
	m, f := newCIDNMirror(t, o, func(_ *httpmirror.MirrorHandler, f *fakeCIDN) { f.hold = hold })
	r := do(t, http.MethodHead, m.url(o, "/d.bin"), nil)
	if r.StatusCode != 200 || r.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD: status %d, length %d; want 200, %d", r.StatusCode, r.ContentLength, len(data))
	}
	if n := f.ensures.Load(); n != 1 {
		t.Errorf("CIDN asked %d times; want 1: a HEAD starts the transfer", n)
	}
}

// A client that leaves stops waiting; the transfer goes on and the next
// request is a hit.
func TestCIDNClientLeaves(t *testing.T) {
	o := newOrigin(t)
	data := payload(64, 70000)
	o.Put("/e.bin", data)
	hold := testutil.NewGate(t)
	m, f := newCIDNMirror(t, o, func(_ *httpmirror.MirrorHandler, f *fakeCIDN) {
		f.hold = hold
		f.ensured = make(chan struct{}, 1)
		f.releases = make(chan struct{}, 1)
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.url(o, "/e.bin"), nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := noRedirectClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-f.ensured
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("the request that was cancelled got a response")
	}
	select {
	case <-f.releases:
	case <-time.After(10 * time.Second):
		t.Fatal("the leaving client did not release the transfer")
	}
	hold.Open()
	f.wait(t, o.HostPort()+"/e.bin")
	if r := get(t, m.url(o, "/e.bin")); r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("after the transfer: status %d; want 200 with the file", r.StatusCode)
	}
	if n := f.ensures.Load(); n != 1 {
		t.Errorf("CIDN asked %d times; want 1", n)
	}
}

// A transfer that succeeded without the object appearing in the store is
// not the client's problem: the fill engine fetches the file.
func TestCIDNSucceededWithoutObject(t *testing.T) {
	o := newOrigin(t)
	data := payload(65, 4000)
	o.Put("/f.bin", data)
	m, _ := newCIDNMirror(t, o, func(_ *httpmirror.MirrorHandler, f *fakeCIDN) {
		f.result = func(string) error { return errSkipCopy }
	})
	if r := get(t, m.url(o, "/f.bin")); r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("status %d; want 200 with the file from the fill engine", r.StatusCode)
	}
}

func TestCIDNNeedsCache(t *testing.T) {
	h := &httpmirror.MirrorHandler{HostFromFirstPath: true, CIDN: &fakeCIDN{}}
	if err := h.Validate(); err == nil {
		t.Error("Validate accepted CIDN without RemoteCache")
	}
}

// A transfer that does not end within CIDNWaitTimeout (CIDN without
// runners, say) does not hold the client: it is served from the origin.
func TestCIDNWaitTimeout(t *testing.T) {
	o := newOrigin(t)
	data := payload(63, 50000)
	o.Put("/slow.iso", data)
	hold := testutil.NewGate(t)
	m, _ := newCIDNMirror(t, o, func(h *httpmirror.MirrorHandler, f *fakeCIDN) {
		h.CIDNWaitTimeout = 50 * time.Millisecond
		f.hold = hold
	})
	r := get(t, m.url(o, "/slow.iso"))
	if r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("status %d, %d bytes; want the file from the origin", r.StatusCode, len(r.body))
	}
	if hold.IsOpen() {
		t.Fatal("the transfer was released before the request was answered")
	}
}
