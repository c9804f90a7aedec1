package httpmirror_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

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
