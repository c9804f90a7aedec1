package httpmirror

import (
	"context"
	"errors"
	"net/http"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// revalidate asks the origin whether the stale object obj is still
// current, with its validators, and serves what follows: obj itself when
// the origin confirms it (304) or cannot be reached and obj may be served
// stale, else the new object as it arrives. It closes obj.
func (m *MirrorHandler) revalidate(w *recorder, r *http.Request, t target, obj storage.Object) {
	ctx := r.Context()
	f, joined := m.fills.Revalidate(t.key, m.source(t, r), policy.Validators(obj.Info()))
	defer f.Release()
	if _, err := f.Header(ctx); err != nil && ctx.Err() == nil {
		if m.serveStale(w, r, t, obj, err, joined) {
			return
		}
	}
	obj.Close()
	m.serveFetch(w, r, t, f, joined, true)
}

// serveStale answers a revalidation that did not produce a new object:
// with the stored object when the origin confirmed it (304), or when the
// origin failed and the object may be served stale (RFC 9111 section 4.2.4;
// stale-if-error). It reports whether it answered; it closes obj if so.
func (m *MirrorHandler) serveStale(w *recorder, r *http.Request, t target, obj storage.Object, err error, joined bool) bool {
	var nm *fill.NotModifiedError
	var se *fill.StatusError
	switch {
	case errors.As(err, &nm):
		info := policy.Refreshed(obj.Info(), nm.Header, m.now())
		if !joined {
			// One refresh per revalidation: the request that started it.
			err := m.store.(storage.Refresher).Refresh(context.WithoutCancel(r.Context()), t.key, info)
			if err != nil && !errors.Is(err, storage.ErrNotSupported) {
				m.log.Warn("refreshing revalidated object failed", "key", t.key, "err", err)
			}
		}
		obj = withInfo{obj, info}
	case errors.As(err, &se) && se.Code < 500:
		return false // the origin answered: 404 and others go to the client
	case errors.Is(err, fill.ErrShutdown), errors.Is(err, fill.ErrCancelled):
		return false // the mirror stops, or a purge removes the object
	case m.rules.Freshness(t.ruleKey(), obj.Info()).MustRevalidate:
		m.log.Warn("revalidation failed; object may not be served stale", "key", t.key, "err", err)
		obj.Close()
		m.fail(w, r, &staleError{cause: err})
		return true
	default:
		m.log.Warn("revalidation failed; serving stale object", "key", t.key, "err", err)
	}
	m.serveObject(w, r, t, obj)
	return true
}

// withInfo is a stored object served with updated metadata: a revalidated
// object's, before (or without) the store's refresh.
type withInfo struct {
	storage.Object
	info storage.Info
}

func (o withInfo) Info() storage.Info { return o.info }

// changedAtOrigin reports whether the origin now has a file of another size
// than info. It asks at most once at a time per key, within
// CheckSyncTimeout; when the origin cannot say, the cache is trusted.
func (m *MirrorHandler) changedAtOrigin(r *http.Request, t target, info storage.Info) bool {
	ctx := r.Context()
	// The variant's representation, with the client's credential: the
	// size of another variant, or a 401, says nothing about this one.
	fwd := forwardedHeaders(r, t)
	v, err, _ := m.syncs.Do(t.key, func() (any, error) {
		// Shared by every request of the key: not bound to the first one.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.CheckSyncTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(cctx, http.MethodHead, t.url(m.scheme), nil)
		if err != nil {
			return int64(-1), err
		}
		copyHeader(req.Header, fwd)
		resp, err := m.client.Do(req)
		if err != nil {
			return int64(-1), err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return int64(-1), &fill.StatusError{Code: resp.StatusCode}
		}
		return resp.ContentLength, nil
	})
	if err != nil {
		m.log.Info("origin check failed; serving cache", "key", t.key, "err", err)
		return false
	}
	size := v.(int64)
	if size >= 0 && size != info.Size {
		m.log.Info("origin size changed; refetching", "key", t.key, "cached", info.Size, "origin", size)
		return true
	}
	return false
}
