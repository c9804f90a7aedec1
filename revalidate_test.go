package httpmirror_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// clock is a settable time source for the handler.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newClockedMirror is newMirror with the handler on clk.
func newClockedMirror(t *testing.T, o *testOrigin, clk *clock, configure ...func(*httpmirror.MirrorHandler)) *testMirror {
	return newMirror(t, o, append([]func(*httpmirror.MirrorHandler){func(m *httpmirror.MirrorHandler) { m.SetClock(clk.Now) }}, configure...)...)
}

// conditional returns the requests the origin got with a validator.
func conditional(o *testOrigin) []*http.Request {
	var out []*http.Request
	for _, r := range o.Received() {
		if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" {
			out = append(out, r)
		}
	}
	return out
}

// An object with Cache-Control: max-age=1 is revalidated after a second
// with If-None-Match; a 304 refreshes it without transferring the body
// again; a changed object is fetched anew.
func TestRevalidationMaxAge(t *testing.T) {
	o := newOrigin(t)
	data := payload(70, 200000)
	f := o.Put("/index.json", data)
	f.Header = http.Header{"Cache-Control": {"max-age=1"}}
	clk := newClock()
	m := newClockedMirror(t, o, clk)
	u := m.url(o, "/index.json")

	if r := get(t, u); !bytes.Equal(r.body, data) {
		t.Fatal("cold fetch wrong")
	}
	waitFills(t, m)
	sent := o.BodyBytes.Load()
	// Fresh: served without asking.
	if r := get(t, u); !bytes.Equal(r.body, data) || o.Gets.Load() != 1 {
		t.Fatalf("fresh hit: origin GETs %d", o.Gets.Load())
	}
	clk.advance(time.Second)
	r := get(t, u)
	if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("after revalidation: status %d, %d bytes", r.StatusCode, len(r.body))
	}
	cond := conditional(o)
	if len(cond) != 1 || cond[0].Header.Get("If-None-Match") != f.ETag {
		t.Fatalf("conditional requests %d; want one with If-None-Match %s", len(cond), f.ETag)
	}
	if got := o.BodyBytes.Load(); got != sent {
		t.Fatalf("the origin sent %d more body bytes on revalidation; want 0 (304)", got-sent)
	}
	if r.Header.Get("Age") == "" {
		t.Errorf("no Age header on a hit with Cache-Control")
	}
	// Refreshed: fresh again for a second.
	get(t, u)
	if n := len(conditional(o)); n != 1 {
		t.Fatalf("revalidated again right after a 304 (%d conditional requests)", n)
	}
	// Changed at the origin: the next revalidation brings the new bytes.
	nw := payload(71, 150000)
	o.Put("/index.json", nw).Header = http.Header{"Cache-Control": {"max-age=1"}}
	clk.advance(time.Second)
	if r := get(t, u); !bytes.Equal(r.body, nw) {
		t.Fatalf("changed object: got %d bytes; want the new %d", len(r.body), len(nw))
	}
	waitFills(t, m)
	if r := get(t, u); !bytes.Equal(r.body, nw) {
		t.Fatal("new object not stored")
	}
}

func TestNoCacheRevalidatesEveryUse(t *testing.T) {
	o := newOrigin(t)
	data := payload(73, 5000)
	o.Put("/nc", data).Header = http.Header{"Cache-Control": {"no-cache"}}
	m := newMirror(t, o)
	get(t, m.url(o, "/nc"))
	waitFills(t, m)
	for range 3 {
		if r := get(t, m.url(o, "/nc")); !bytes.Equal(r.body, data) {
			t.Fatal("wrong body")
		}
	}
	if n := len(conditional(o)); n != 3 {
		t.Fatalf("%d conditional requests; want 3", n)
	}
}

func TestExpires(t *testing.T) {
	o := newOrigin(t)
	clk := newClock()
	data := payload(74, 5000)
	o.Put("/exp", data).Header = http.Header{"Expires": {clk.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}}
	m := newClockedMirror(t, o, clk)
	get(t, m.url(o, "/exp"))
	waitFills(t, m)
	clk.advance(30 * time.Minute)
	get(t, m.url(o, "/exp"))
	if n := len(conditional(o)); n != 0 {
		t.Fatalf("revalidated before Expires (%d)", n)
	}
	clk.advance(31 * time.Minute)
	get(t, m.url(o, "/exp"))
	if n := len(conditional(o)); n != 1 {
		t.Fatalf("%d conditional requests after Expires; want 1", n)
	}
}

// Without freshness headers objects are immutable (as in httpmirror 0.11),
// except those matching a revalidate pattern.
func TestRevalidatePatterns(t *testing.T) {
	o := newOrigin(t)
	o.Put("/golang.org/x/mod/@v/list", []byte("v0.1.0\n"))
	o.Put("/golang.org/x/mod/@v/v0.1.0.zip", []byte("zip"))
	m := newMirror(t, o) // default patterns
	for range 3 {
		get(t, m.url(o, "/golang.org/x/mod/@v/list"))
		get(t, m.url(o, "/golang.org/x/mod/@v/v0.1.0.zip"))
		waitFills(t, m)
	}
	var listConds, zipConds int
	for _, r := range conditional(o) {
		switch r.URL.Path {
		case "/golang.org/x/mod/@v/list":
			listConds++
		case "/golang.org/x/mod/@v/v0.1.0.zip":
			zipConds++
		}
	}
	if listConds != 2 || zipConds != 0 {
		t.Fatalf("conditional requests: list %d, zip %d; want 2 and 0", listConds, zipConds)
	}
	// The list changes at the origin: the next request sees it.
	o.Put("/golang.org/x/mod/@v/list", []byte("v0.1.0\nv0.2.0\n"))
	if r := get(t, m.url(o, "/golang.org/x/mod/@v/list")); string(r.body) != "v0.1.0\nv0.2.0\n" {
		t.Fatalf("changed list: got %q", r.body)
	}

	// With patterns switched off, the list is immutable too.
	o2 := newOrigin(t)
	o2.Put("/m/@v/list", []byte("v1\n"))
	m2 := newMirror(t, o2, func(m *httpmirror.MirrorHandler) { m.RevalidatePatterns = []string{} })
	get(t, m2.url(o2, "/m/@v/list"))
	waitFills(t, m2)
	get(t, m2.url(o2, "/m/@v/list"))
	if o2.Gets.Load() != 1 {
		t.Fatalf("origin GETs %d with no patterns; want 1", o2.Gets.Load())
	}
}

func TestStaleIfError(t *testing.T) {
	for _, mustRevalidate := range []bool{false, true} {
		name := "stale served"
		cc := "max-age=60"
		if mustRevalidate {
			name, cc = "must-revalidate", "max-age=60, must-revalidate"
		}
		t.Run(name, func(t *testing.T) {
			o := newOrigin(t)
			data := payload(75, 5000)
			o.Put("/s", data).Header = http.Header{"Cache-Control": {cc}}
			clk := newClock()
			m := newClockedMirror(t, o, clk)
			u := m.url(o, "/s")
			get(t, u)
			waitFills(t, m)
			clk.advance(2 * time.Minute)
			o.Close() // the origin is down
			r := get(t, u)
			switch {
			case mustRevalidate && r.StatusCode != 504:
				t.Fatalf("status %d; want 504 (must-revalidate forbids serving stale)", r.StatusCode)
			case !mustRevalidate && (r.StatusCode != 200 || !bytes.Equal(r.body, data)):
				t.Fatalf("status %d, %d bytes; want the stale object", r.StatusCode, len(r.body))
			}
		})
	}
}

func TestRevalidationFindsFileGone(t *testing.T) {
	o := newOrigin(t)
	o.Put("/gone", []byte("here")).Header = http.Header{"Cache-Control": {"no-cache"}}
	m := newMirror(t, o)
	get(t, m.url(o, "/gone"))
	waitFills(t, m)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		http.Error(w, "gone", http.StatusGone)
		return true
	})
	if r := get(t, m.url(o, "/gone")); r.StatusCode != 410 {
		t.Fatalf("status %d; want 410", r.StatusCode)
	}
	if n := countFiles(t, m.root+"/objects"); n != 0 {
		t.Fatalf("%d objects left after the origin said 410", n)
	}
}

func TestCheckSync(t *testing.T) {
	o := newOrigin(t)
	old := payload(12, 100000)
	o.Put("/sync.bin", old)
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.CheckSyncTimeout = 5 * time.Second })
	u := m.url(o, "/sync.bin")
	if r := get(t, u); !bytes.Equal(r.body, old) {
		t.Fatal("first fetch wrong")
	}
	waitFills(t, m) // the next request must be a hit, not a joiner
	// Same size at the origin: the cache is served.
	if r := get(t, u); !bytes.Equal(r.body, old) || o.Gets.Load() != 1 || o.Heads.Load() != 1 {
		t.Fatalf("unchanged origin: GETs %d HEADs %d; want 1 and 1", o.Gets.Load(), o.Heads.Load())
	}
	// Replaced with another size: refetched and served.
	nw := payload(13, 150000)
	o.Put("/sync.bin", nw)
	if r := get(t, u); r.StatusCode != 200 || !bytes.Equal(r.body, nw) {
		t.Fatalf("changed origin: status %d, %d bytes; want the new object", r.StatusCode, len(r.body))
	}
	waitFills(t, m)
	if o.Gets.Load() != 2 {
		t.Fatalf("origin GETs %d; want 2", o.Gets.Load())
	}
	// Origin down: the cache (now the new object) is served.
	o.Close()
	if r := get(t, u); r.StatusCode != 200 || !bytes.Equal(r.body, nw) {
		t.Fatalf("origin down: status %d, %d bytes; want the cached object", r.StatusCode, len(r.body))
	}
}

func TestCheckSyncReplacementKeepsOldReaders(t *testing.T) {
	o := newOrigin(t)
	old := payload(14, 4<<20)
	o.Put("/big.bin", old)
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.CheckSyncTimeout = 5 * time.Second })
	u := m.url(o, "/big.bin")
	get(t, u)
	waitFills(t, m)
	// A reader starts on the old object ...
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 1000)
	io.ReadFull(resp.Body, head)
	// ... the origin changes and another request replaces the object ...
	nw := payload(15, 3<<20)
	o.Put("/big.bin", nw)
	if r := get(t, u); !bytes.Equal(r.body, nw) {
		t.Fatal("replacement not served")
	}
	// ... and the first reader still finishes the old one.
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(append(head, rest...), old) {
		t.Fatalf("old reader: %d bytes, err %v; want the old object", len(head)+len(rest), err)
	}
}

// no-cache and s-maxage forbid serving a stale copy when revalidation
// fails (RFC 9111 sections 5.2.2.4 and 5.2.2.10): an origin answering 503
// gets the client a 504 that says what the origin did; max-age alone
// allows the stale copy.
func TestStaleIfErrorNotForNoCacheOrSMaxAge(t *testing.T) {
	for _, tc := range []struct {
		cc        string
		wantStale bool
	}{
		{"no-cache", false},
		{"s-maxage=60", false},
		{"max-age=60", true},
	} {
		t.Run(tc.cc, func(t *testing.T) {
			o := newOrigin(t)
			data := payload(76, 5000)
			o.Put("/s", data).Header = http.Header{"Cache-Control": {tc.cc}}
			clk := newClock()
			m := newClockedMirror(t, o, clk)
			u := m.url(o, "/s")
			if r := get(t, u); r.StatusCode != 200 {
				t.Fatalf("first request: status %d", r.StatusCode)
			}
			waitFills(t, m)
			clk.advance(2 * time.Minute)
			o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
				http.Error(w, "overloaded", http.StatusServiceUnavailable)
				return true
			})
			r := get(t, u)
			if tc.wantStale {
				if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
					t.Fatalf("status %d, %d bytes; want the stale copy", r.StatusCode, len(r.body))
				}
				return
			}
			if r.StatusCode != 504 || !strings.Contains(string(r.body), "503") || bytes.Contains(r.body, data[:64]) {
				t.Fatalf("status %d, body %q; want 504 saying the upstream answered 503", r.StatusCode, truncate(r.body))
			}
		})
	}
}

func truncate(b []byte) []byte { return b[:min(len(b), 200)] }
