package httpmirror

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/storage"
)

// cached serves t from the cache: a hit from storage (revalidated first
// when stale), a miss through the fill engine or CIDN.
func (m *MirrorHandler) cached(w *recorder, r *http.Request, t target) {
	ctx := r.Context()
	if code, ok := m.negatives.get(t.key, m.now()); ok {
		// The origin said recently that this file does not exist.
		w.outcome = outcomeHit
		m.fail(w, r, &fill.StatusError{Code: code})
		return
	}
	obj, err := m.store.Open(ctx, t.key)
	switch {
	case err == nil:
		m.serveHit(w, r, t, obj)
		return
	case errors.Is(err, storage.ErrNotFound):
		if m.CIDN != nil {
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
func (m *MirrorHandler) serveHit(w *recorder, r *http.Request, t target, obj storage.Object) {
	info := obj.Info()
	fr := m.rules.Freshness(t.key, info)
	if fr.Stale(info.StoredAt, m.now()) {
		m.revalidate(w, r, t, obj)
		return
	}
	if m.CheckSyncTimeout > 0 && m.changedAtOrigin(r.Context(), t, info) {
		obj.Close()
		m.refetch(w, r, t)
		return
	}
	m.serveFresh(w, r, t, obj, info, fr)
}

// miss fetches an object storage does not have (or could not open).
func (m *MirrorHandler) miss(w *recorder, r *http.Request, t target) {
	src, started := m.coordinatedSource(t)
	f, joined := m.fills.Miss(t.key, src)
	if !joined {
		started(f)
	}
	defer f.Release()
	m.serveFetch(w, r, t, f, joined, false)
}

// refetch fetches an object again whatever storage holds.
func (m *MirrorHandler) refetch(w *recorder, r *http.Request, t target) {
	f, joined := m.fills.Refetch(t.key, m.source(t))
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
		m.fetchFailed(w, r, t, err, replaces)
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
	if errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusGone) {
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

// source returns the upstream of t for the fill engine.
func (m *MirrorHandler) source(t target) fill.Source {
	u := t.url(m.scheme)
	return fill.Source{
		URL: u,
		Get: func(ctx context.Context, h http.Header) (*http.Response, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
			if err != nil {
				return nil, err
			}
			for k, v := range h {
				req.Header[k] = v
			}
			start := time.Now()
			resp, err := m.client.Do(req)
			if err == nil {
				m.Metrics.upstreamResponse(time.Since(start))
			}
			return resp, err
		},
	}
}
