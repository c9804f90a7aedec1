package httpmirror_test

import (
	"bytes"
	"net/http"
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

func TestNoStoreIsNeverStored(t *testing.T) {
	o := newOrigin(t)
	data := payload(72, 5000)
	o.Put("/secret", data).Header = http.Header{"Cache-Control": {"private, no-store"}}
	m := newMirror(t, o)
	for i := range 3 {
		if r := get(t, m.url(o, "/secret")); !bytes.Equal(r.body, data) {
			t.Fatalf("request %d: wrong body", i)
		}
		waitFills(t, m)
	}
	if o.Gets.Load() != 3 || countFiles(t, m.root+"/objects") != 0 {
		t.Fatalf("origin GETs %d, objects %d; want 3 and none stored", o.Gets.Load(), countFiles(t, m.root+"/objects"))
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

// Without freshness headers objects are immutable (the seed's semantics),
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

// A 404 is remembered for the negative TTL: ten requests reach the origin
// once; after the TTL it is asked again. A 500 is never remembered.
func TestNegativeCache(t *testing.T) {
	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path == "/broken" {
			http.Error(w, "oops", 500)
			return true
		}
		return false
	})
	clk := newClock()
	m := newClockedMirror(t, o, clk, func(m *httpmirror.MirrorHandler) { m.NegativeTTL = 30 * time.Second })
	for i := range 10 {
		if r := get(t, m.url(o, "/missing")); r.StatusCode != 404 {
			t.Fatalf("request %d: status %d; want 404", i, r.StatusCode)
		}
	}
	if o.Gets.Load() != 1 {
		t.Fatalf("origin GETs for 10 requests of a missing file: %d; want 1", o.Gets.Load())
	}
	clk.advance(30 * time.Second)
	get(t, m.url(o, "/missing"))
	if o.Gets.Load() != 2 {
		t.Fatalf("after the TTL: origin GETs %d; want 2", o.Gets.Load())
	}
	for i := range 3 {
		if r := get(t, m.url(o, "/broken")); r.StatusCode != 502 {
			t.Fatalf("500 request %d: status %d; want 502", i, r.StatusCode)
		}
	}
	if o.Gets.Load() != 5 {
		t.Fatalf("origin GETs %d; want 5 (500s are never cached)", o.Gets.Load())
	}
}

func TestRedirectPolicy(t *testing.T) {
	o := newOrigin(t)
	o.Put("/real.bin", []byte("real"))
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		switch r.URL.Path {
		case "/to-real":
			http.Redirect(w, r, "/real.bin", http.StatusFound)
		case "/to-nodot":
			http.Redirect(w, r, "https://intranet:8443/x", http.StatusFound)
		case "/to-blocked":
			http.Redirect(w, r, "/payload.exe", http.StatusFound)
		case "/to-ftp":
			http.Redirect(w, r, "ftp://example.com/x", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			return false
		}
		return true
	})
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.BlockSuffix = []string{".exe"} })
	for path, want := range map[string]int{"/to-real": 200, "/to-nodot": 502, "/to-blocked": 403, "/to-ftp": 502, "/loop": 502} {
		if r := get(t, m.url(o, path)); r.StatusCode != want {
			t.Errorf("%s: status %d; want %d", path, r.StatusCode, want)
		}
	}
	// The redirect loop was followed 10 times, then given up.
	loops := 0
	for _, r := range o.Received() {
		if r.URL.Path == "/loop" {
			loops++
		}
	}
	if loops != 11 {
		t.Errorf("origin saw %d requests of the redirect loop; want 11 (the first and 10 redirects)", loops)
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
