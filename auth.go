package httpmirror

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// DefaultAuthCacheTTL is MirrorHandler.AuthCacheTTL's default: how long an
// origin's answer about a credential is trusted.
const DefaultAuthCacheTTL = 5 * time.Minute

// maxAuthEntries bounds the authorisation cache. Past it, expired entries
// go first, then an arbitrary one: a client sending ever new credentials
// costs the others a check each, never memory.
const maxAuthEntries = 10000

// authCheckTimeout bounds an authorisation check at the origin.
const authCheckTimeout = 30 * time.Second

// authKey names one authorisation decision: a credential (its SHA-256,
// never the credential itself; zero for a request without one) at an
// origin host, for a scope of it (policy.AuthScope).
type authKey struct {
	cred  [sha256.Size]byte
	host  string
	scope string
}

// authKeyOf returns the authorisation key of r for the object of t: its
// scope is a repository where the origin grants access per repository,
// else the object's own key (a variant's included, since the origin
// proves access by giving the variant's representation).
func authKeyOf(r *http.Request, t target) authKey {
	k := authKey{host: t.host, scope: policy.AuthScope(t.host, t.path)}
	if strings.HasPrefix(k.scope, "/") {
		k.scope = t.key
	}
	if v := r.Header["Authorization"]; len(v) > 0 {
		h := sha256.New()
		for _, s := range v {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		h.Sum(k.cred[:0])
	}
	return k
}

func (k authKey) String() string { return string(k.cred[:]) + k.host + "\x00" + k.scope }

// authEntry is an origin's answer about a credential: allowed when status
// is 0, for the object proof identifies (see covers); denied with status
// and the origin's WWW-Authenticate; or unproven (authUnproven) when the
// origin answered, but not with the stored object.
type authEntry struct {
	status  int
	header  http.Header
	proof   storage.Info
	expires time.Time
}

// authUnproven is the status of an answer that neither denies the
// credential nor proves it may read the stored object: a redirect to a
// sign-in page, a page of another length or type, the object of another
// version. The client is proxied to the origin, which decides what it
// gets, and nothing stored is served to it.
const authUnproven = -1

// covers reports whether the allowed answer e stands for the object of t
// whose metadata is info: on an origin whose scope is a repository (the
// Hugging Face Hub grants access per repository), for every object of the
// scope; elsewhere for the object the origin proved it gave, so that a
// page an origin answered a refused credential with (a sign-in page,
// which a fill's own response cannot tell from a file) never allows that
// credential to read the file stored later under the same path.
func (e authEntry) covers(t target, info storage.Info) bool {
	if e.status != 0 {
		return true
	}
	if !strings.HasPrefix(policy.AuthScope(t.host, t.path), "/") {
		return true
	}
	return policy.SameObject(info, e.proof)
}

// authCache remembers the origins' answers about credentials, in memory
// only, by credential hash.
type authCache struct {
	mu     sync.Mutex
	m      map[authKey]authEntry
	flight singleflight.Group // one check at a time per key
}

func (c *authCache) get(k authKey, now time.Time) (authEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.expires) {
		return authEntry{}, false
	}
	return e, true
}

func (c *authCache) put(k authKey, e authEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[authKey]authEntry)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= maxAuthEntries {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		for k := range c.m {
			if len(c.m) < maxAuthEntries {
				break
			}
			delete(c.m, k)
		}
	}
	c.m[k] = e
}

func (m *MirrorHandler) authCacheTTL() time.Duration {
	if m.AuthCacheTTL > 0 {
		return m.AuthCacheTTL
	}
	return DefaultAuthCacheTTL
}

// authorised reports whether r may be served the object of t, whose
// metadata is info and which needs authorisation (policy.AuthHeader): only
// when the origin accepted r's credential (or the absence of one) for the
// object's scope within AuthCacheTTL and proved it by giving that object
// (see checkAuth). A fill learns that from its own response; otherwise,
// with AuthCache, a check asks the origin. Without AuthCache the mirror
// checks nothing: r is proxied, and the origin decides. When r may not be
// served, authorised has answered it, without a byte of the object: with
// the status the origin gave the credential (401 or 403 with the origin's
// WWW-Authenticate, or 404), by proxying r to the origin when the origin's
// answer did not prove access, or as an error when the origin could not
// say.
func (m *MirrorHandler) authorised(w *recorder, r *http.Request, t target, info storage.Info) bool {
	k := authKeyOf(r, t)
	e, ok := m.auths.get(k, m.now())
	if ok && !e.covers(t, info) {
		ok = false // allowed for another object of the path: ask again
	}
	if !ok && !m.AuthCache {
		w.outcome = outcomeDirect
		m.direct(w, r, t)
		return false
	}
	if !ok {
		var err error
		if e, err = m.checkAuth(r, t, k, info); err != nil {
			m.fail(w, r, err)
			return false
		}
	}
	switch {
	case e.status == 0 && e.covers(t, info):
		return true
	case e.status > 0:
		m.fail(w, r, &fill.StatusError{Code: e.status, Header: e.header})
	default:
		w.outcome = outcomeDirect
		m.direct(w, r, t)
	}
	return false
}

// checkAuth asks the origin whether r's credential gives access to the
// object of t, whose metadata is info: a HEAD of the object's URL with r's
// Authorization and the headers that select its variant, so no body moves, following redirects
// by the mirror's rules (the credential goes to the same origin only).
// The credential is allowed only when the answer identifies the stored
// object (policy.SameObject), directly or at the end of its redirects: a
// 2xx that does not (a sign-in page) leaves it unproven. 401, 403, 404 and
// 410 deny. Every answer is remembered for AuthCacheTTL. Anything else (an
// unreachable origin, 5xx, 429, a 405 for HEAD) is an error (errAuthCheck
// for a status), remembered by nobody: the request is refused, never
// served on trust. Concurrent checks of one key share one request.
func (m *MirrorHandler) checkAuth(r *http.Request, t target, k authKey, info storage.Info) (authEntry, error) {
	fwd := forwardedHeaders(r, t)
	v, err, _ := m.auths.flight.Do(k.String(), func() (any, error) {
		// Shared by every request of the key: not bound to the first one.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), authCheckTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, t.url(m.scheme), nil)
		if err != nil {
			return nil, err
		}
		// The credential, and the headers that select the variant.
		copyHeader(req.Header, fwd)
		resp, err := m.client.Do(req)
		if err != nil {
			m.Metrics.authCheck("error")
			return nil, err
		}
		resp.Body.Close()
		now := m.now()
		e, ok := authAnswer(resp, now)
		if !ok {
			m.Metrics.authCheck("error")
			return nil, fmt.Errorf("%w: origin answered %d", errAuthCheck, resp.StatusCode)
		}
		if e.status == 0 && !policy.SameObject(info, e.proof) {
			e = authEntry{status: authUnproven}
		}
		e.expires = now.Add(m.authCacheTTL())
		switch e.status {
		case 0:
			m.Metrics.authCheck("allowed")
		case authUnproven:
			m.Metrics.authCheck("unproven")
		default:
			m.Metrics.authCheck("denied")
		}
		m.auths.put(k, e, now)
		return e, nil
	})
	if err != nil {
		return authEntry{}, err
	}
	return v.(authEntry), nil
}

// authAnswer is what an origin's response to a request with a credential
// says about it, without its expiry: allowed, with the metadata of what
// the origin gave (2xx; the caller checks that it is the object), unproven
// (a redirect the client did not follow, a 304 to a request without
// conditions), or denied (401, 403, 404, 410); ok is false when it says
// none of these.
func authAnswer(resp *http.Response, now time.Time) (e authEntry, ok bool) {
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return authEntry{proof: policy.Info(resp, now)}, true
	case code >= 300 && code < 400:
		return authEntry{status: authUnproven}, true
	case code == http.StatusUnauthorized, code == http.StatusForbidden, code == http.StatusNotFound, code == http.StatusGone:
		e := authEntry{status: code}
		if v := resp.Header.Values("Www-Authenticate"); len(v) > 0 {
			e.header = http.Header{"Www-Authenticate": append([]string(nil), v...)}
		}
		return e, true
	}
	return authEntry{}, false
}

// learnAuth remembers what a fill's upstream response, to a request with
// the credential of k, says about the credential: a whole response the
// mirror will keep for authorised clients only (policy.NeedsAuthorization)
// allows it for that response's object (see covers), so that the client
// that started the fill, and others with the same credential, need no
// check; 401 and 403 deny it. A 404 says nothing: in a repository scope, a
// missing file is no denial of the repository. Ranged answers (resumes,
// segments) and 304s add nothing to what the first response said.
func (m *MirrorHandler) learnAuth(k authKey, resp *http.Response) {
	now := m.now()
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e, _ := authAnswer(resp, now)
		e.expires = now.Add(m.authCacheTTL())
		m.auths.put(k, e, now)
	case code == http.StatusOK && policy.NeedsAuthorization(resp):
		m.auths.put(k, authEntry{proof: policy.Info(resp, now), expires: now.Add(m.authCacheTTL())}, now)
	}
}
