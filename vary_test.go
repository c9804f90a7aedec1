package httpmirror_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// negotiating answers /doc with JSON or text depending on Accept, with
// Vary: Accept, and counts the GETs per representation.
func negotiating(gets map[string]*atomic.Int64) testutil.Hook {
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path != "/doc" {
			return false
		}
		body, ctype := "plain text document\n", "text/plain"
		if strings.Contains(strings.ToLower(r.Header.Get("Accept")), "application/json") {
			body, ctype = `{"document":true}`, "application/json"
		}
		gets[ctype].Add(1)
		w.Header().Set("Vary", "Accept")
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("ETag", `"`+ctype+`"`)
		w.Write([]byte(body))
		return true
	}
}

// Acceptance 4: two clients with different Accept get their own variant,
// each from the cache on its second request, with Vary relayed;
// spellings of Accept that mean the same share a variant.
func TestVaryAccept(t *testing.T) {
	o := newOrigin(t)
	gets := map[string]*atomic.Int64{"application/json": {}, "text/plain": {}}
	o.SetHook(negotiating(gets))
	m := newMirror(t, o)
	u := m.url(o, "/doc")
	for round := range 2 {
		for _, c := range []struct{ accept, ctype, body string }{
			{"application/json", "application/json", `{"document":true}`},
			{"text/plain, */*;q=0.1", "text/plain", "plain text document\n"},
		} {
			r := do(t, "GET", u, http.Header{"Accept": {c.accept}})
			if r.StatusCode != 200 || string(r.body) != c.body || r.Header.Get("Content-Type") != c.ctype {
				t.Fatalf("round %d, Accept %q: status %d, %s %q", round, c.accept, r.StatusCode, r.Header.Get("Content-Type"), r.body)
			}
			if r.Header.Get("Vary") != "Accept" {
				t.Errorf("round %d, Accept %q: Vary %q; want Accept", round, c.accept, r.Header.Get("Vary"))
			}
			for k := range r.Header {
				if strings.HasPrefix(k, "X-Httpmirror") {
					t.Errorf("internal header %s sent to the client", k)
				}
			}
			waitFills(t, m)
		}
	}
	// Same media types, other spelling: the stored variants.
	for accept, want := range map[string]string{"Application/JSON": `{"document":true}`, " text/plain ,*/*; q=0.1": "plain text document\n"} {
		if r := do(t, "GET", u, http.Header{"Accept": {accept}}); string(r.body) != want {
			t.Errorf("Accept %q: body %q; want %q", accept, r.body, want)
		}
	}
	for ctype, n := range gets {
		if n.Load() != 1 {
			t.Errorf("origin sent %s %d times; want once", ctype, n.Load())
		}
	}
	if n := countFiles(t, m.root+"/objects"); n != 2 {
		t.Errorf("%d objects stored; want 2 variants", n)
	}
	// The fills asked for the clients' representations, never for
	// compression.
	for _, r := range o.Received() {
		if r.Header.Get("Accept") == "" || r.Header.Get("Accept-Encoding") != "" {
			t.Errorf("upstream request with Accept %q, Accept-Encoding %q", r.Header.Get("Accept"), r.Header.Get("Accept-Encoding"))
		}
	}
}

// The headers a stored Vary names go upstream with the fills of other
// variants; Accept-Encoding selects no variant, and is not sent.
func TestVaryForwardsNamedHeaders(t *testing.T) {
	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		w.Header().Set("Vary", "Accept-Language, Accept-Encoding")
		w.Write([]byte("lang=" + r.Header.Get("Accept-Language")))
		return true
	})
	m := newMirror(t, o)
	u := m.url(o, "/page")
	for i, c := range []struct{ lang, want string }{
		{"", "lang="}, {"de", "lang=de"}, {"fr-FR", "lang=fr-FR"}, {"DE", "lang=de"}, {"", "lang="}, {"fr-fr", "lang=fr-FR"},
	} {
		h := http.Header{"Accept-Encoding": {"gzip"}}
		if c.lang != "" {
			h.Set("Accept-Language", c.lang)
		}
		if r := do(t, "GET", u, h); string(r.body) != c.want {
			t.Fatalf("request %d, Accept-Language %q: body %q; want %q", i, c.lang, r.body, c.want)
		}
		waitFills(t, m)
	}
	if n := o.Gets.Load(); n != 3 {
		t.Errorf("origin GETs %d; want 3 (one per language)", n)
	}
}

// Vary: * is never stored: every request goes to the origin.
func TestVaryStarNeverStored(t *testing.T) {
	o := newOrigin(t)
	data := payload(140, 40000)
	f := o.Put("/any", data)
	f.Header = http.Header{"Vary": {"*"}}
	m := newMirror(t, o)
	for i := range 3 {
		r := get(t, m.url(o, "/any"))
		if r.StatusCode != 200 || sha(r.body) != sha(data) || r.Header.Get("Vary") != "*" {
			t.Fatalf("request %d: status %d, Vary %q", i, r.StatusCode, r.Header.Get("Vary"))
		}
		waitFills(t, m)
	}
	if n := o.Gets.Load(); n != 3 {
		t.Errorf("origin GETs %d; want 3", n)
	}
	if n := countFiles(t, m.root+"/objects"); n != 0 {
		t.Errorf("%d objects stored", n)
	}
}

// A variant of a gated object is authorised like the object: the token
// gets each variant, the anonymous neither.
func TestVaryGated(t *testing.T) {
	o := newOrigin(t)
	gets := map[string]*atomic.Int64{"application/json": {}, "text/plain": {}}
	neg := negotiating(gets)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.Header.Get("Authorization") != goodToken {
			return gate(w, r, f)
		}
		return neg(w, r, f)
	})
	m := newMirror(t, o, withAuthCache)
	u := m.url(o, "/doc")
	for range 2 {
		for _, accept := range []string{"application/json", "text/plain"} {
			h := bearer(goodToken)
			h.Set("Accept", accept)
			if r := do(t, "GET", u, h); r.StatusCode != 200 || r.Header.Get("Content-Type") != accept {
				t.Fatalf("token, Accept %s: status %d, type %q", accept, r.StatusCode, r.Header.Get("Content-Type"))
			}
			waitFills(t, m)
			if r := do(t, "GET", u, http.Header{"Accept": {accept}}); r.StatusCode != 401 || len(r.body) > 64 {
				t.Fatalf("anonymous, Accept %s: status %d, %d bytes", accept, r.StatusCode, len(r.body))
			}
		}
	}
	if a, b := gets["application/json"].Load(), gets["text/plain"].Load(); a != 1 || b != 1 {
		t.Errorf("origin sent the variants %d and %d times; want once each", a, b)
	}
}
