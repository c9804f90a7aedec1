package httpmirror_test

import (
	"net/http"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// An origin's 429 reaches the client with a Retry-After in seconds: the
// origin's own, or a default when it sent none or garbage; through a fill
// and proxied without a cache alike. Nothing is stored, and the next
// request asks the origin again.
func TestOrigin429HasRetryAfter(t *testing.T) {
	t.Run("cached", func(t *testing.T) { testOrigin429(t, false) })
	t.Run("direct", func(t *testing.T) { testOrigin429(t, true) })
}

func testOrigin429(t *testing.T, direct bool) {
	o := newOrigin(t)
	o.Put("/a.bin", payload(140, 1000))
	m := newMirror(t, o, func(h *httpmirror.MirrorHandler) {
		if direct {
			h.RemoteCache = nil
		}
	})
	for _, c := range []struct{ origin, want string }{
		{"45", "45"},
		{"", "30"},
		{"in a while", "30"},
		{"-1", "30"},
		{"31536000", "86400"},
	} {
		o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			if c.origin != "" {
				w.Header().Set("Retry-After", c.origin)
			}
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return true
		})
		r := get(t, m.url(o, "/a.bin"))
		if r.StatusCode != 429 || r.Header.Get("Retry-After") != c.want {
			t.Errorf("origin 429 with Retry-After %q: %d, Retry-After %q; want 429, %q", c.origin, r.StatusCode, r.Header.Get("Retry-After"), c.want)
		}
	}
	if n := o.Gets.Load(); n != 5 {
		t.Errorf("origin saw %d GETs; want 5 (a 429 is not remembered)", n)
	}
	o.SetHook(nil)
	if r := get(t, m.url(o, "/a.bin")); r.StatusCode != 200 || r.Header.Get("Retry-After") != "" {
		t.Errorf("after the origin recovered: %d, Retry-After %q; want 200 without", r.StatusCode, r.Header.Get("Retry-After"))
	}
}
