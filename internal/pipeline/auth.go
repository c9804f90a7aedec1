package pipeline

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

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
func authKeyOf(r *Request, t Target) authKey {
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
func (e authEntry) covers(t Target, info storage.Info) bool {
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
	entries bounded[authKey, authEntry]
	flight  singleflight.Group // one check at a time per key
}

func newAuthCache() authCache {
	return authCache{entries: bounded[authKey, authEntry]{limit: maxAuthEntries, expired: func(e authEntry, now time.Time) bool { return !now.Before(e.expires) }}}
}

func (c *authCache) get(k authKey, now time.Time) (authEntry, bool) {
	e, ok := c.entries.get(k)
	if !ok || !now.Before(e.expires) {
		return authEntry{}, false
	}
	return e, true
}

func (c *authCache) put(k authKey, e authEntry, now time.Time) { c.entries.put(k, e, now) }

// authorise decides whether the request of d may be served the object of
// d.Target, whose metadata is d.Info and which needs authorisation
// (policy.AuthHeader): only when the origin accepted the request's
// credential (or the absence of one) for the object's scope within
// AuthCacheTTL and proved it by giving that object (see checkAuth). A fill
// learns that from its own response; otherwise, with AuthCache, a check
// asks the origin. Without AuthCache the mirror checks nothing: the request
// is proxied, and the origin decides. It returns Hit when the client may
// be served; Fail (d.Err the status the origin gave the credential: 401 or
// 403 with the origin's WWW-Authenticate, or 404; or the error when the
// origin could not say); or Direct, when the origin's answer did not prove
// access and the origin is to give the client what it gives its
// credential.
func (p *Pipeline) authorise(ctx context.Context, d *Decision) Action {
	t, info := d.Target, d.Info
	k := authKeyOf(d.Req, t)
	e, ok := p.auths.get(k, p.now())
	if ok && !e.covers(t, info) {
		ok = false // allowed for another object of the path: ask again
	}
	if !ok && !p.cfg.AuthCache {
		return Direct
	}
	if !ok {
		var err error
		if e, err = p.checkAuth(ctx, d.Req, t, k, info); err != nil {
			d.Err = err
			return Fail
		}
	}
	switch {
	case e.status == 0 && e.covers(t, info):
		return Hit
	case e.status > 0:
		d.Err = &fill.StatusError{Code: e.status, Header: e.header}
		return Fail
	}
	return Direct
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
func (p *Pipeline) checkAuth(ctx context.Context, r *Request, t Target, k authKey, info storage.Info) (authEntry, error) {
	fwd := forwardedHeaders(r, t)
	v, err, _ := p.auths.flight.Do(k.String(), func() (any, error) {
		// Shared by every request of the key: not bound to the first one.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), authCheckTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, t.url(p.cfg.Scheme), nil)
		if err != nil {
			return nil, err
		}
		// The credential, and the headers that select the variant.
		copyHeader(req.Header, fwd)
		resp, err := p.client.Do(req)
		if err != nil {
			p.obs.AuthCheck("error")
			return nil, err
		}
		resp.Body.Close()
		now := p.now()
		e, ok := authAnswer(resp, now)
		if !ok {
			p.obs.AuthCheck("error")
			return nil, fmt.Errorf("%w: origin answered %d", errAuthCheck, resp.StatusCode)
		}
		if e.status == 0 && !policy.SameObject(info, e.proof) {
			e = authEntry{status: authUnproven}
		}
		e.expires = now.Add(p.cfg.AuthCacheTTL)
		switch e.status {
		case 0:
			p.obs.AuthCheck("allowed")
		case authUnproven:
			p.obs.AuthCheck("unproven")
		default:
			p.obs.AuthCheck("denied")
		}
		p.auths.put(k, e, now)
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
// missing file is no denial of the repository. The first response may be
// the object's first part (a 206 from byte 0, asked for without If-Range:
// see fill.Options.Connections), which counts as the whole; other ranged
// answers (resumes, segments) and 304s add nothing to what the first
// response said.
func (p *Pipeline) learnAuth(k authKey, resp *http.Response) {
	now := p.now()
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		e, _ := authAnswer(resp, now)
		e.expires = now.Add(p.cfg.AuthCacheTTL)
		p.auths.put(k, e, now)
	case code == http.StatusOK && policy.NeedsAuthorization(resp):
		p.auths.put(k, authEntry{proof: policy.Info(resp, now), expires: now.Add(p.cfg.AuthCacheTTL)}, now)
	case code == http.StatusPartialContent && policy.NeedsAuthorization(resp):
		total, ok := firstPartTotal(resp)
		if !ok {
			return
		}
		proof := policy.Info(resp, now)
		proof.Size = total
		p.auths.put(k, authEntry{proof: proof, expires: now.Add(p.cfg.AuthCacheTTL)}, now)
	}
}

// firstPartTotal returns the object's length when resp is a fill's first
// response that brings the object's first part: a 206 from byte 0 to a
// request without If-Range.
func firstPartTotal(resp *http.Response) (int64, bool) {
	if resp.Request != nil && resp.Request.Header.Get("If-Range") != "" {
		return 0, false
	}
	rest, ok := strings.CutPrefix(resp.Header.Get("Content-Range"), "bytes 0-")
	if !ok {
		return 0, false
	}
	_, total, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n > 0
}
