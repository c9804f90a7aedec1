package httpmirror

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// cached serves t from the cache: a hit from storage (revalidated first
// when stale), a miss through the fill engine or CIDN. A stored object
// that varies leads to the variant r selects (see variant).
func (m *MirrorHandler) cached(w *recorder, r *http.Request, t target) {
	ctx := r.Context()
	anonymous := len(r.Header["Authorization"]) == 0
	// What the origin told anyone is no answer for a credential: a
	// private file is 404 to the anonymous.
	if code, ok := m.negatives.get(t.key, m.now); ok && anonymous {
		// The origin said recently that this file does not exist.
		w.outcome = outcomeHit
		m.fail(w, r, &fill.StatusError{Code: code})
		return
	}
	obj, err := m.store.Open(ctx, t.key)
	switch {
	case err == nil:
		vt, other := m.variant(r, t, obj.Info())
		if other {
			obj.Close()
			m.cached(w, r, vt)
			return
		}
		m.serveHit(w, r, vt, obj)
		return
	case errors.Is(err, storage.ErrNotFound):
		// CIDN's runners fetch without the client's credential.
		if m.CIDN != nil && anonymous && t.base == "" {
			m.viaCIDN(w, r, t)
			return
		}
	case ctx.Err() != nil:
		m.fail(w, r, context.Cause(ctx))
		return
	default:
		// A failing store must not fail the request: the fill engine
		// fetches from the origin and serves from its spool.
		m.log.Error("storage open failed; fetching from origin", "key", t.key, "err", err)
	}
	m.miss(w, r, t)
}

// serveHit serves a stored object, revalidating it first when it is stale
// and checking its size at the origin when CheckSyncTimeout asks for it.
// An object that needs authorisation is served to authorised clients only,
// and only they may revalidate it: an origin's 404 to another credential
// must not remove it.
func (m *MirrorHandler) serveHit(w *recorder, r *http.Request, t target, obj storage.Object) {
	info := obj.Info()
	if info.Header[policy.AuthHeader] != nil && !m.authorised(w, r, t, info) {
		obj.Close()
		return
	}
	fr := m.freshness(t, info)
	if fr.Mutable && fr.Stale(info.StoredAt, m.now()) {
		m.revalidate(w, r, t, obj)
		return
	}
	if m.CheckSyncTimeout > 0 && m.changedAtOrigin(r, t, info) {
		obj.Close()
		m.refetch(w, r, t)
		return
	}
	m.serveFresh(w, r, t, obj, info, fr)
}

// miss fetches an object storage does not have (or could not open).
func (m *MirrorHandler) miss(w *recorder, r *http.Request, t target) {
	src, started := m.coordinatedSource(t, r)
	src.Want = rangeStart(r)
	f, joined := m.fills.Miss(t.key, src)
	if !joined {
		started(f)
	}
	defer f.Release()
	m.serveFetch(w, r, t, f, joined, false)
}

// refetch fetches an object again whatever storage holds.
func (m *MirrorHandler) refetch(w *recorder, r *http.Request, t target) {
	f, joined := m.fills.Refetch(t.key, m.source(t, r))
	defer f.Release()
	m.serveFetch(w, r, t, f, joined, false)
}

// serveFetch serves the fill f of t: the object as it arrives, or, without
// TeeResponse, the stored object once the fill is done. replaces says
// whether a stored object is being replaced: an origin that no longer has
// the file makes the mirror drop its copy too.
func (m *MirrorHandler) serveFetch(w *recorder, r *http.Request, t target, f *fill.Fill, joined, replaces bool) {
	ctx := r.Context()
	if joined {
		w.outcome = outcomeJoined
	} else {
		w.outcome = outcomeMiss
	}
	info, err := f.Header(ctx)
	if errors.Is(err, fill.ErrTooLarge) || errors.Is(err, fill.ErrSpool) {
		// Over --max-object-size, or no local disk to spool on: the client
		// is served straight from the origin, nothing is kept.
		w.outcome = outcomeDirect
		m.direct(w, r, t)
		return
	}
	if err != nil {
		if joined && !w.retried && deniedToOthers(r, err) {
			// The fill was another client's, and the origin refused
			// that client: this one asks with its own credential (or
			// without the other's), once.
			w.retried = true
			if replaces {
				m.refetch(w, r, t)
			} else {
				m.miss(w, r, t)
			}
			return
		}
		m.fetchFailed(w, r, t, err, replaces)
		return
	}
	if vt, other := m.variant(r, t, info); other {
		// The origin negotiated, and r asked for another variant than
		// the one this fill brings.
		m.cached(w, r, vt)
		return
	}
	if !m.TeeResponse {
		if err := f.Wait(ctx); err != nil {
			m.fail(w, r, err)
			return
		}
		if f.Stored() {
			obj, err := m.store.Open(ctx, t.key)
			if err == nil {
				m.serveObject(w, r, t, obj)
				return
			}
			m.log.Error("storage open failed after commit; serving the fill's copy", "key", t.key, "err", err)
		}
		// The store failed; the complete spool still serves this client.
	}
	m.serveFill(w, r, t, f, info)
}

// fetchFailed answers a fill that produced no object. An origin's 404 or
// 410 is remembered (the negative cache) and, when replaces is set, the
// stored object is removed.
func (m *MirrorHandler) fetchFailed(w *recorder, r *http.Request, t target, err error, replaces bool) {
	var se *fill.StatusError
	anonymous := len(r.Header["Authorization"]) == 0
	if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusGone) && anonymous {
		if ttl := m.negativeTTL(); ttl > 0 {
			m.negatives.put(t.key, se.Code, m.now(), ttl)
		}
		if replaces {
			// The origin no longer has the file: neither does the mirror.
			m.store.Delete(context.WithoutCancel(r.Context()), t.key)
		}
	}
	m.fail(w, r, err)
}

// deniedToOthers reports whether err, the failure of a fill that r
// joined, may not be r's answer: the origin refused the credential of the
// client that started the fill (or its lack of one), which says nothing
// about r's; and a 404 or 410 says nothing to a request with a credential,
// since origins hide private files that way.
func deniedToOthers(r *http.Request, err error) bool {
	var se *fill.StatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusProxyAuthRequired:
		return true
	case http.StatusNotFound, http.StatusGone:
		return len(r.Header["Authorization"]) > 0
	}
	return false
}

// source returns the upstream of t for the fill engine, with the request
// headers of r that a fill forwards (see forwardedHeaders). The origin's
// answers to r's credential are remembered for authorisation (learnAuth).
func (m *MirrorHandler) source(t target, r *http.Request) fill.Source {
	u := t.url(m.scheme)
	fwd := forwardedHeaders(r, t)
	var k authKey
	_, authenticated := fwd["Authorization"]
	if authenticated {
		k = authKeyOf(r, t)
	}
	return fill.Source{
		URL: u,
		Get: func(ctx context.Context, h http.Header) (*http.Response, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return nil, err
			}
			for k, v := range fwd {
				req.Header[k] = v
			}
			for k, v := range h {
				req.Header[k] = v
			}
			start := time.Now()
			resp, err := m.client.Do(req)
			if err == nil {
				m.Metrics.upstreamResponse(time.Since(start))
				if authenticated {
					m.learnAuth(k, resp)
				}
			}
			return resp, err
		},
	}
}
