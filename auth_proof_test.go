package httpmirror_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// signinPage is what a web interface (GitLab, Nexus, Artifactory) answers
// a request it refuses: a login form, 200, not to be cached by anyone.
var signinPage = []byte("<!DOCTYPE html><html><body><form action=/users/sign_in>login</form></body></html>\n")

func serveSignin(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=0, private, must-revalidate")
	w.Header().Set("Content-Length", strconv.Itoa(len(signinPage)))
	w.Write(signinPage)
}

// gatedBehaviour is one way an origin gates a file behind goodToken.
type gatedBehaviour struct {
	name string
	// install serves data at path on o (cdn is a second origin, for
	// redirects to another host) and gates it.
	install func(o, cdn *testOrigin, path string, data []byte)
	// provable: the file has a validator, so --auth-cache stores it and
	// the good token's second request is a hit.
	provable bool
	// challenge: refused clients get the origin's 401 with challenge.
	challenge bool
}

var gatedBehaviours = []gatedBehaviour{{
	// The Hugging Face Hub: 401 to a refused credential; an accepted one
	// gets a redirect to the CDN carrying the file's X-Linked-Etag, and
	// the CDN serves it to anyone holding the signed URL.
	name: "hub", provable: true, challenge: true,
	install: func(o, cdn *testOrigin, path string, data []byte) {
		f := cdn.Put("/cdn/blob", data)
		o.SetHook(func(w http.ResponseWriter, r *http.Request, _ *testutil.File) bool {
			if r.Header.Get("Authorization") != goodToken {
				return gate(w, r, nil)
			}
			w.Header().Set("X-Linked-Etag", f.ETag)
			w.Header().Set("X-Linked-Size", strconv.Itoa(len(data)))
			http.Redirect(w, r, cdn.URL+"/cdn/blob", http.StatusFound)
			return true
		})
	},
}, {
	// A web interface: a refused request is redirected to the sign-in
	// page, which answers 200.
	name: "signin-redirect", provable: true,
	install: func(o, _ *testOrigin, path string, data []byte) {
		o.Put(path, data)
		o.SetHook(func(w http.ResponseWriter, r *http.Request, _ *testutil.File) bool {
			switch {
			case r.URL.Path == "/users/sign_in":
				serveSignin(w)
			case r.Header.Get("Authorization") != goodToken:
				http.Redirect(w, r, "/users/sign_in", http.StatusFound)
			default:
				return false
			}
			return true
		})
	},
}, {
	// The sign-in page itself, answered at the file's URL.
	name: "signin-page", provable: true,
	install: func(o, _ *testOrigin, path string, data []byte) {
		o.Put(path, data)
		o.SetHook(func(w http.ResponseWriter, r *http.Request, _ *testutil.File) bool {
			if r.Header.Get("Authorization") == goodToken {
				return false
			}
			serveSignin(w)
			return true
		})
	},
}, {
	// An origin whose HEAD answers 200 with the file's length to anyone
	// (a front end that does not gate HEAD), while GET is gated.
	name: "head-lies", provable: true, challenge: true,
	install: func(o, _ *testOrigin, path string, data []byte) {
		o.Put(path, data)
		o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			switch {
			case r.Header.Get("Authorization") == goodToken:
				return false
			case r.Method == http.MethodHead:
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.Header().Set("Last-Modified", f.ModTime.Format(http.TimeFormat))
				w.Header().Set("ETag", `"front-end"`)
				return true
			}
			return gate(w, r, f)
		})
	},
}, {
	// A gated file without ETag or Last-Modified: no check could prove
	// who may read a stored copy, so none is kept.
	name: "no-validator", challenge: true,
	install: func(o, _ *testOrigin, path string, data []byte) {
		f := o.Put(path, data)
		f.ETag, f.ModTime = "", f.ModTime.AddDate(-100, 0, 0)
		o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			if r.Header.Get("Authorization") != goodToken {
				return gate(w, r, f)
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
			w.Write(f.Data[:0])
			if r.Method == http.MethodGet {
				w.Write(f.Data)
			}
			return true
		})
	},
}}

// The authorisation rule: a client is served a stored gated object only
// when the origin's answer to its credential identifies that object. A
// refused client, anonymous or with a wrong token, never gets a byte of
// it, whether the origin refuses with 401, a redirect to a sign-in page,
// the sign-in page itself, or a HEAD that answers 200 to anyone; a client
// with the right token gets it, from the cache when a validator lets the
// origin prove it.
func TestAuthorisationNeedsProof(t *testing.T) {
	const path = "/group/project/-/package/files/tool.bin"
	for _, b := range gatedBehaviours {
		for _, authCache := range []bool{false, true} {
			name := b.name + map[bool]string{false: "/streamed", true: "/auth-cache"}[authCache]
			t.Run(name, func(t *testing.T) {
				o, cdn := newOrigin(t), newOrigin(t)
				data := payload(140, 150000)
				b.install(o, cdn, path, data)
				m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.AuthCache = authCache })
				u := m.url(o, path)
				fileGets := func() int64 {
					if b.name == "hub" {
						return cdn.Gets.Load()
					}
					n := int64(0)
					for _, r := range o.Received() {
						if r.Method == http.MethodGet && r.URL.Path == path && r.Header.Get("Authorization") == goodToken {
							n++
						}
					}
					return n
				}
				etag := ""
				good := func(what string) {
					t.Helper()
					for _, method := range []string{"GET", "HEAD"} {
						r := do(t, method, u, bearer(goodToken))
						if r.StatusCode != 200 || r.ContentLength != int64(len(data)) {
							t.Fatalf("%s %s: status %d, length %d; want 200, %d", what, method, r.StatusCode, r.ContentLength, len(data))
						}
						etag = r.Header.Get("Etag")
						if method == "GET" && sha(r.body) != sha(data) {
							t.Fatalf("%s: sha256 %s; want %s", what, sha(r.body), sha(data))
						}
					}
					waitFills(t, m)
				}
				refused := func(what string, h http.Header) {
					t.Helper()
					for _, hdr := range []http.Header{h, withRange(h, "bytes=100-199")} {
						for _, method := range []string{"GET", "HEAD"} {
							r := do(t, method, u, hdr)
							// What the origin itself answers this client is
							// no leak (a HEAD of head-lies is its front
							// end's 200); the stored object's bytes,
							// length, range or validator would be.
							originHead := method == "HEAD" && b.name == "head-lies"
							if bytes.Contains(r.body, data[100:164]) || r.StatusCode == http.StatusPartialContent ||
								(!originHead && r.ContentLength == int64(len(data))) || (etag != "" && r.Header.Get("Etag") == etag) {
								t.Errorf("%s %s (range %q): status %d, length %d, ETag %q: the file leaked", what, method, hdr.Get("Range"), r.StatusCode, r.ContentLength, r.Header.Get("Etag"))
							}
							if b.challenge && !originHead && r.StatusCode != http.StatusUnauthorized {
								t.Errorf("%s %s: status %d; want the origin's 401", what, method, r.StatusCode)
							}
						}
					}
					waitFills(t, m)
				}
				good("right token")
				refused("anonymous", nil)
				refused("wrong token", bearer("Bearer wrong"))
				before := fileGets()
				good("right token again")
				refused("wrong token again", bearer("Bearer wrong"))
				refused("anonymous again", nil)
				if got := fileGets() - before; authCache && b.provable && got != 0 {
					t.Errorf("the right token's second download cost %d origin GETs; want 0 (a hit)", got)
				}
				stored := countFiles(t, m.root+"/objects")
				if want := authCache && b.provable; (stored > 0) != want {
					t.Errorf("%d objects stored; want stored: %v", stored, want)
				}
			})
		}
	}
}

// withRange returns a copy of h with a Range field.
func withRange(h http.Header, v string) http.Header {
	c := h.Clone()
	if c == nil {
		c = http.Header{}
	}
	c.Set("Range", v)
	return c
}

// A refused credential whose own download brought the sign-in page (a
// fill cannot tell that page from a file) is not thereby allowed to read
// the file a right credential stores under the same path afterwards.
func TestSigninPageDownloadAllowsNothing(t *testing.T) {
	const path = "/group/project/-/package/files/tool.bin"
	o := newOrigin(t)
	data := payload(141, 90000)
	gatedBehaviours[2].install(o, nil, path, data) // signin-page
	m := newMirror(t, o, withAuthCache)
	u := m.url(o, path)
	wrong := bearer("Bearer wrong")
	if r := do(t, "GET", u, wrong); !bytes.Equal(r.body, signinPage) {
		t.Fatalf("wrong token first: status %d, %d bytes; want the sign-in page", r.StatusCode, len(r.body))
	}
	waitFills(t, m)
	if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("right token: status %d, sha256 %s", r.StatusCode, sha(r.body))
	}
	waitFills(t, m)
	for _, h := range []http.Header{wrong, withRange(wrong, "bytes=0-99")} {
		if r := do(t, "GET", u, h); bytes.Contains(r.body, data[:64]) || r.StatusCode == http.StatusPartialContent {
			t.Errorf("wrong token after the file was stored (range %q): status %d, %d bytes: the file leaked", h.Get("Range"), r.StatusCode, len(r.body))
		}
	}
}
