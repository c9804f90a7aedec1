package httpmirror_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

const (
	goodToken = "Bearer good-6f1c2a9e"
	challenge = `Bearer realm="gated", error="invalid_token"`
)

// gatedOrigin is an origin that serves its files only to requests with
// goodToken (GET and HEAD alike); the others get 401 with challenge.
func gatedOrigin(t *testing.T) *testOrigin {
	o := newOrigin(t)
	o.SetHook(gate)
	return o
}

func gate(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
	if r.Header.Get("Authorization") == goodToken {
		return false
	}
	w.Header().Set("WWW-Authenticate", challenge)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
	return true
}

func bearer(token string) http.Header { return http.Header{"Authorization": {token}} }

// withAuthCache turns --auth-cache on.
func withAuthCache(m *httpmirror.MirrorHandler) { m.AuthCache = true }

// checkDenied checks that r is the origin's 401, with its challenge and
// none of data.
func checkDenied(t *testing.T, what string, r response, data []byte) {
	t.Helper()
	if r.StatusCode != http.StatusUnauthorized || r.Header.Get("Www-Authenticate") != challenge {
		t.Errorf("%s: status %d, WWW-Authenticate %q; want 401 with %q", what, r.StatusCode, r.Header.Get("Www-Authenticate"), challenge)
	}
	if bytes.Contains(r.body, data[:64]) || len(r.body) > 64 {
		t.Errorf("%s: %d body bytes; want none of the object", what, len(r.body))
	}
}

// Acceptance 1: with the token the gated file comes through; without one
// the origin's 401 and its challenge reach the client; a wrong token after
// a good one gets 401 and no byte of the file, with or without
// --auth-cache.
func TestGatedOrigin(t *testing.T) {
	for _, authCache := range []bool{false, true} {
		t.Run(map[bool]string{false: "streamed", true: "auth-cache"}[authCache], func(t *testing.T) {
			o := gatedOrigin(t)
			data := payload(130, 300000)
			o.Put("/org/model/resolve/main/model.bin", data)
			m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.AuthCache = authCache })
			u := m.url(o, "/org/model/resolve/main/model.bin")

			r := do(t, "GET", u, bearer(goodToken))
			if r.StatusCode != 200 || sha(r.body) != sha(data) {
				t.Fatalf("good token: status %d, sha256 %s; want 200 and %s", r.StatusCode, sha(r.body), sha(data))
			}
			waitFills(t, m)
			checkDenied(t, "no token", get(t, u), data)
			checkDenied(t, "wrong token", do(t, "GET", u, bearer("Bearer wrong")), data)
			checkDenied(t, "wrong token, HEAD", do(t, "HEAD", u, bearer("Bearer wrong")), data)
			if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 || sha(r.body) != sha(data) {
				t.Fatalf("good token again: status %d", r.StatusCode)
			}
		})
	}
}

// Acceptance 2, without --auth-cache: the gated body is streamed, never
// stored; each client is one origin download.
func TestGatedNotStoredWithoutAuthCache(t *testing.T) {
	o := gatedOrigin(t)
	data := payload(131, 200000)
	o.Put("/private/file.bin", data)
	m := newMirror(t, o)
	u := m.url(o, "/private/file.bin")
	for i := range 2 {
		if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("request %d: status %d", i, r.StatusCode)
		}
		waitFills(t, m)
	}
	if n := o.Gets.Load(); n != 2 {
		t.Errorf("origin GETs %d; want 2 (nothing stored)", n)
	}
	if n := countFiles(t, m.root+"/objects"); n != 0 {
		t.Errorf("%d objects stored", n)
	}
	scanDir(t, m.root, data[:4096], []byte(goodToken))
	checkDenied(t, "anonymous", get(t, u), data)
}

// Acceptance 2, with --auth-cache: ten clients with the good token cause
// one origin GET and no more than one authorisation check; an anonymous
// client gets 401.
func TestAuthCacheStoresOnce(t *testing.T) {
	o := gatedOrigin(t)
	data := payload(132, 2<<20)
	o.Put("/org/model/resolve/main/weights.bin", data)
	const clients = 10
	allIn := newGate(t)
	m := newMirror(t, o, withAuthCache)
	openWhenEntered(m, clients, allIn)
	// The origin answers once every client is in the mirror.
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		allIn.Wait()
		return gate(w, r, f)
	})
	u := m.url(o, "/org/model/resolve/main/weights.bin")
	var wg sync.WaitGroup
	results := make([]response, clients)
	for i := range clients {
		wg.Go(func() { results[i] = do(t, "GET", u, bearer(goodToken)) })
	}
	wg.Wait()
	for i, r := range results {
		if r.StatusCode != 200 || r.err != nil || sha(r.body) != sha(data) {
			t.Fatalf("client %d: status %d, %d bytes, err %v", i, r.StatusCode, len(r.body), r.err)
		}
	}
	waitFills(t, m)
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin GETs %d; want 1", n)
	}
	if n := o.Heads.Load(); n > 1 {
		t.Errorf("authorisation checks %d; want at most 1", n)
	}
	// Stored: later clients with the token are hits.
	if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 || sha(r.body) != sha(data) || o.Gets.Load() != 1 {
		t.Fatalf("hit: status %d, origin GETs %d", r.StatusCode, o.Gets.Load())
	}
	checkDenied(t, "anonymous", get(t, u), data)
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin GETs %d after the anonymous request; want 1", n)
	}
	scanDir(t, m.root, nil, []byte(goodToken))
}

// A stored object that needs authorisation is never served to an
// anonymous client, whatever it asks: a whole GET, a range, HEAD, a
// conditional request.
func TestStoredNonPublicNeverServedAnonymously(t *testing.T) {
	o := gatedOrigin(t)
	data := payload(133, 100000)
	f := o.Put("/secret.bin", data)
	m := newMirror(t, o, withAuthCache)
	u := m.url(o, "/secret.bin")
	if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 {
		t.Fatalf("good token: status %d", r.StatusCode)
	}
	waitFills(t, m)
	for name, h := range map[string]http.Header{
		"whole":       nil,
		"range":       {"Range": {"bytes=0-99"}},
		"conditional": {"If-None-Match": {f.ETag}},
		"wrong token": {"Authorization": {"Bearer wrong"}, "Range": {"bytes=0-99"}},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			r := do(t, method, u, h)
			checkDenied(t, method+" "+name, r, data)
			if r.Header.Get("Etag") != "" || r.Header.Get("Content-Range") != "" {
				t.Errorf("%s %s: object headers %v leaked", method, name, r.Header)
			}
		}
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin GETs %d; want 1", n)
	}
}

// A public object's hits ask the origin nothing, with or without a
// credential, with or without --auth-cache; a response to an
// authenticated request that says public is stored as any other.
func TestPublicHitsUnchanged(t *testing.T) {
	for _, authCache := range []bool{false, true} {
		o := newOrigin(t)
		data := payload(134, 50000)
		f := o.Put("/pub.bin", data)
		f.Header = http.Header{"Cache-Control": {"public, max-age=3600"}}
		o.Put("/plain.bin", data)
		m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.AuthCache = authCache })
		if r := do(t, "GET", m.url(o, "/pub.bin"), bearer(goodToken)); r.StatusCode != 200 {
			t.Fatalf("public with token: status %d", r.StatusCode)
		}
		if r := get(t, m.url(o, "/plain.bin")); r.StatusCode != 200 {
			t.Fatalf("plain: status %d", r.StatusCode)
		}
		waitFills(t, m)
		for i, h := range []http.Header{nil, bearer(goodToken), bearer("Bearer other"), nil} {
			for _, p := range []string{"/pub.bin", "/plain.bin"} {
				if r := do(t, "GET", m.url(o, p), h); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
					t.Fatalf("auth-cache %v, hit %d of %s: status %d", authCache, i, p, r.StatusCode)
				}
			}
		}
		if g, h := o.Gets.Load(), o.Heads.Load(); g != 2 || h != 0 {
			t.Errorf("auth-cache %v: origin GETs %d, HEADs %d; want 2 and 0", authCache, g, h)
		}
		if n := countFiles(t, m.root+"/objects"); n != 2 {
			t.Errorf("auth-cache %v: %d objects stored; want 2", authCache, n)
		}
	}
}

// An origin's answer about a credential is trusted for --auth-cache-ttl:
// past it, exactly one new check; a denial is remembered too, and another
// credential is checked on its own.
func TestAuthorisationCacheTTL(t *testing.T) {
	o := gatedOrigin(t)
	data := payload(135, 70000)
	o.Put("/gated.bin", data)
	clk := newClock()
	m := newClockedMirror(t, o, clk, withAuthCache, func(m *httpmirror.MirrorHandler) { m.AuthCacheTTL = time.Minute })
	u := m.url(o, "/gated.bin")
	good := func(i int) {
		t.Helper()
		if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("good request %d: status %d", i, r.StatusCode)
		}
	}
	heads := func(want int64) {
		t.Helper()
		if n := o.Heads.Load(); n != want {
			t.Fatalf("authorisation checks %d; want %d", n, want)
		}
	}
	good(0)
	waitFills(t, m)
	good(1) // the fill's own answer stands for the token
	heads(0)
	clk.advance(time.Minute)
	for i := range 3 {
		good(2 + i)
	}
	heads(1)
	for i := range 3 {
		checkDenied(t, "wrong token", do(t, "GET", u, bearer("Bearer wrong")), data)
		_ = i
	}
	heads(2)
	checkDenied(t, "other wrong token", do(t, "GET", u, bearer("Bearer other")), data)
	heads(3)
	clk.advance(time.Minute)
	checkDenied(t, "wrong token after the TTL", do(t, "GET", u, bearer("Bearer wrong")), data)
	good(5)
	heads(5)
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin GETs %d; want 1", n)
	}
}

// An origin that cannot answer a check denies: the object is not served
// on trust, and the failure is not remembered.
func TestAuthorisationCheckErrorDenies(t *testing.T) {
	o := gatedOrigin(t)
	data := payload(136, 30000)
	o.Put("/gated.bin", data)
	m := newMirror(t, o, withAuthCache)
	u := m.url(o, "/gated.bin")
	if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 {
		t.Fatalf("good token: status %d", r.StatusCode)
	}
	waitFills(t, m)
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusMethodNotAllowed} {
		o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			http.Error(w, "no", code)
			return true
		})
		r := do(t, "GET", u, bearer("Bearer someone-else"))
		if r.StatusCode != http.StatusBadGateway || bytes.Contains(r.body, data[:64]) {
			t.Errorf("check answered %d: status %d, %d bytes; want 502 without the object", code, r.StatusCode, len(r.body))
		}
	}
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.Header.Get("Authorization") == "Bearer someone-else" {
			return false
		}
		return gate(w, r, f)
	})
	if r := do(t, "GET", u, bearer("Bearer someone-else")); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
		t.Errorf("after the origin recovered: status %d; want 200", r.StatusCode)
	}
	if n := o.Heads.Load(); n != 4 {
		t.Errorf("checks %d; want 4 (failures are not remembered)", n)
	}
}

// Acceptance 3: a redirect to another origin (here the same address on
// another port) drops Authorization; a redirect within the origin keeps
// it. With and without a cache.
func TestRedirectDropsAuthorization(t *testing.T) {
	for _, cached := range []bool{true, false} {
		a, b := newOrigin(t), newOrigin(t)
		data := payload(137, 20000)
		b.Put("/signed/file.bin", data)
		a.Put("/same/file.bin", data)
		a.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			switch {
			case r.Header.Get("Authorization") != goodToken:
				return gate(w, r, f)
			case r.URL.Path == "/cross":
				http.Redirect(w, r, b.URL+"/signed/file.bin", http.StatusFound)
			case r.URL.Path == "/same":
				http.Redirect(w, r, "/same/file.bin", http.StatusFound)
			default:
				return false
			}
			return true
		})
		m := newMirror(t, a, func(m *httpmirror.MirrorHandler) {
			if !cached {
				m.RemoteCache = nil
			}
		})
		for _, p := range []string{"/cross", "/same"} {
			if r := do(t, "GET", m.url(a, p), bearer(goodToken)); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
				t.Fatalf("cached %v, %s: status %d", cached, p, r.StatusCode)
			}
		}
		for _, r := range b.Received() {
			if v := r.Header.Get("Authorization"); v != "" {
				t.Errorf("cached %v: the other origin got Authorization %q", cached, v)
			}
		}
		if n := len(b.Received()); n != 1 {
			t.Errorf("cached %v: other origin got %d requests; want 1", cached, n)
		}
		for _, r := range a.Received() {
			if r.URL.Path == "/same/file.bin" && r.Header.Get("Authorization") != goodToken {
				t.Errorf("cached %v: a redirect within the origin lost Authorization", cached)
			}
		}
	}
}

// scanDir fails if any file under dir contains one of needles (nil ones
// are skipped).
func scanDir(t *testing.T, dir string, needles ...[]byte) {
	t.Helper()
	for path, b := range testutil.ReadFiles(t, dir) {
		for _, n := range needles {
			if n != nil && bytes.Contains(b, n) {
				t.Errorf("%s contains %q", path, strings.ToValidUTF8(string(n[:min(len(n), 16)]), "?"))
			}
		}
	}
}

// A segmented fill asks the origin for the object's digests with a HEAD,
// which an origin may refuse where it serves a GET (a URL signed for GET
// only): that refusal is not taken for the client's credential's. With
// the fill's own answer standing for the token (--auth-cache), the next
// request with it is a hit, without a check.
func TestSegmentedFillsHeadSaysNothingOfTheCredential(t *testing.T) {
	o := newOrigin(t)
	data := payload(136, 300<<10+3)
	o.Put("/gated.bin", data)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.Method == http.MethodHead && r.Header.Get("Authorization") == goodToken {
			http.Error(w, "signed for GET", http.StatusForbidden)
			return true
		}
		return gate(w, r, f)
	})
	m := newMirror(t, o, withAuthCache, segmented)
	u := m.url(o, "/gated.bin")
	for i := range 2 {
		if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("request %d with the token: status %d, %d bytes", i, r.StatusCode, len(r.body))
		}
		waitFills(t, m)
	}
	if n := o.Heads.Load(); n != 1 {
		t.Errorf("origin HEADs %d; want 1, the fill's", n)
	}
	if n := o.Gets.Load(); n < 2 {
		t.Errorf("origin GETs %d; want a segmented fill", n)
	}
	checkDenied(t, "no token", do(t, "GET", u, nil), data)
}
