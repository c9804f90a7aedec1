package httpmirror_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// newIdleMirror is newMirror on a disk cache whose clock is clk, as the
// handler's is, with MaxIdle maxIdle.
func newIdleMirror(t *testing.T, o *testOrigin, clk *clock, maxIdle time.Duration, configure ...func(*httpmirror.MirrorHandler)) *testMirror {
	t.Helper()
	b, err := file.New(filepath.Join(t.TempDir(), "idle"), file.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	m := newClockedMirror(t, o, clk, append([]func(*httpmirror.MirrorHandler){func(h *httpmirror.MirrorHandler) {
		h.RemoteCache, h.MaxIdle = b, maxIdle
	}}, configure...)...)
	m.store = b
	return m
}

// listedObjects returns the handler's listing by key.
func listedObjects(t *testing.T, m *testMirror) map[string]httpmirror.ListedObject {
	t.Helper()
	page, err := m.h.List(context.Background(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]httpmirror.ListedObject{}
	for _, o := range page.Objects {
		out[o.Key] = o
	}
	return out
}

// N requests for a stored object, GET, HEAD and ranges, on the hit loop
// and through net/http, are N hits in the listing, with the last one's
// time; the fill that stored it is not a hit.
func TestHitsCountedThroughPipeline(t *testing.T) {
	o := newOrigin(t)
	small, large := payload(80, 3000), payload(81, 300000)
	o.Put("/small", small)
	o.Put("/large", large)
	clk := newClock()
	m := newIdleMirror(t, o, clk, 0)
	for _, p := range []string{"/small", "/large"} {
		if r := get(t, m.url(o, p)); r.StatusCode != 200 {
			t.Fatalf("fill of %s: %d", p, r.StatusCode)
		}
	}
	waitFills(t, m)
	key := func(p string) string { return o.HostPort() + p }
	for k, lo := range listedObjects(t, m) {
		if lo.Hits != 0 {
			t.Errorf("%s: %d hits after its fill; want 0", k, lo.Hits)
		}
	}
	const n = 9
	clk.advance(time.Hour)
	for i := range n {
		for _, p := range []string{"/small", "/large"} {
			var r response
			switch i % 3 {
			case 0:
				r = get(t, m.url(o, p))
			case 1:
				r = do(t, http.MethodHead, m.url(o, p), nil)
			default:
				r = do(t, http.MethodGet, m.url(o, p), http.Header{"Range": {"bytes=10-20"}})
			}
			if r.StatusCode/100 != 2 {
				t.Fatalf("request %d of %s: %d", i, p, r.StatusCode)
			}
		}
	}
	got := listedObjects(t, m)
	for _, p := range []string{"/small", "/large"} {
		lo := got[key(p)]
		if lo.Hits != n || !lo.LastAccess.Equal(clk.Now()) {
			t.Errorf("%s: hits %d, last access %v; want %d, %v", p, lo.Hits, lo.LastAccess, n, clk.Now())
		}
	}
}

// The sweep removes the objects nobody read for MaxIdle, and neither one
// a client is downloading (opened before the cutoff, still being sent),
// nor one read since, nor one a download in progress revalidates (its
// request read it); it counts what it removed, and an object removed is
// fetched again when asked for.
func TestExpireIdle(t *testing.T) {
	o := newOrigin(t)
	clk := newClock()
	paths := []string{"/idle", "/read", "/reading", "/revalidating", "/idle2"}
	size := func(p string) int {
		if p == "/reading" {
			return 16 << 20 // more than the sockets buffer: the response stays open
		}
		return 400000
	}
	for i, p := range paths {
		f := o.Put(p, payload(uint64(90+i), size(p)))
		if p == "/revalidating" {
			f.Header = http.Header{"Cache-Control": {"max-age=60"}}
		}
	}
	reg := prometheus.NewRegistry()
	m := newIdleMirror(t, o, clk, 30*24*time.Hour, func(h *httpmirror.MirrorHandler) { h.Metrics = httpmirror.NewMetrics(reg) })
	for _, p := range paths {
		get(t, m.url(o, p))
	}
	waitFills(t, m)

	// A client that reads /reading slowly, opened now.
	resp, err := noRedirectClient.Get(m.url(o, "/reading"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	clk.advance(20 * 24 * time.Hour)
	get(t, m.url(o, "/read"))

	// A revalidation the origin holds.
	held, release := make(chan struct{}), make(chan struct{})
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path == "/revalidating" && r.Header.Get("If-None-Match")+r.Header.Get("If-Modified-Since") != "" {
			close(held)
			<-release
		}
		return false
	})
	clk.advance(15 * 24 * time.Hour)
	revalidated := make(chan response, 1)
	go func() { revalidated <- get(t, m.url(o, "/revalidating")) }()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("the revalidation did not reach the origin")
	}

	n, err := m.h.ExpireIdle(context.Background())
	if err != nil || n != 2 {
		t.Errorf("ExpireIdle = %d, %v; want 2 (/idle, /idle2)", n, err)
	}
	close(release)
	if r := <-revalidated; r.StatusCode != 200 {
		t.Errorf("revalidated request: %d", r.StatusCode)
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || len(rest) != size("/reading")-100 {
		t.Errorf("the slow client got %d more bytes, %v; want the rest of the file", len(rest), err)
	}
	got := listedObjects(t, m)
	for _, p := range paths {
		_, ok := got[o.HostPort()+p]
		if want := !strings.HasPrefix(p, "/idle"); ok != want {
			t.Errorf("%s stored after the sweep: %v; want %v", p, ok, want)
		}
	}
	if v := gathered(t, reg, "httpmirror_expired_objects_total", nil); v != 2 {
		t.Errorf("httpmirror_expired_objects_total = %v; want 2", v)
	}
	// An idle object fetched again is a miss, stored anew.
	before := len(o.Received())
	if r := get(t, m.url(o, "/idle")); !bytes.Equal(r.body, payload(90, 400000)) {
		t.Error("an expired object was not fetched again")
	}
	if len(o.Received()) == before {
		t.Error("the origin was not asked for an expired object")
	}
}

// A clock set back makes nothing idle and moves no last access back.
func TestExpireIdleClockBackwards(t *testing.T) {
	o := newOrigin(t)
	o.Put("/a", payload(95, 5000))
	clk := newClock()
	m := newIdleMirror(t, o, clk, time.Hour)
	get(t, m.url(o, "/a"))
	waitFills(t, m)
	clk.advance(30 * time.Minute)
	get(t, m.url(o, "/a"))
	read := clk.Now()
	clk.advance(-365 * 24 * time.Hour)
	get(t, m.url(o, "/a"))
	if n, err := m.h.ExpireIdle(context.Background()); err != nil || n != 0 {
		t.Errorf("ExpireIdle with the clock a year back = %d, %v; want 0", n, err)
	}
	lo := listedObjects(t, m)[o.HostPort()+"/a"]
	if !lo.LastAccess.Equal(read) || lo.Hits != 2 {
		t.Errorf("last access %v, hits %d; want %v, 2", lo.LastAccess, lo.Hits, read)
	}
	// Back to the present and 2 hours on: idle now.
	clk.advance(365*24*time.Hour + 2*time.Hour)
	if n, err := m.h.ExpireIdle(context.Background()); err != nil || n != 1 {
		t.Errorf("ExpireIdle two hours after the last read = %d, %v; want 1", n, err)
	}
}

func TestMaxIdleValidation(t *testing.T) {
	for name, h := range map[string]*httpmirror.MirrorHandler{
		"negative":               {RemoteCache: memory.New(), MaxIdle: -time.Hour},
		"no cache":               {MaxIdle: time.Hour},
		"backend without expiry": {RemoteCache: struct{ storage.Backend }{memory.New()}, MaxIdle: time.Hour},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s: Validate accepted MaxIdle %v", name, h.MaxIdle)
		}
	}
	h := &httpmirror.MirrorHandler{RemoteCache: memory.New()}
	if _, err := h.ExpireIdle(context.Background()); !errors.Is(err, httpmirror.ErrNoMaxIdle) {
		t.Errorf("ExpireIdle without MaxIdle: %v; want ErrNoMaxIdle", err)
	}
}
