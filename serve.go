package httpmirror

import (
	"context"
	"errors"
	"net/http"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/storage"
)

// cached serves t from the cache, fetching it on a miss.
func (m *MirrorHandler) cached(w http.ResponseWriter, r *http.Request, t target) {
	ctx := r.Context()
	obj, err := m.RemoteCache.Open(ctx, t.key)
	switch {
	case err == nil:
		if m.CheckSyncTimeout > 0 && m.changedAtOrigin(ctx, t, obj.Info()) {
			obj.Close()
			m.fetch(w, r, t, true)
			return
		}
		m.serveObject(w, r, t, obj)
		return
	case errors.Is(err, storage.ErrNotFound):
	case ctx.Err() != nil:
		m.fail(w, r, context.Cause(ctx))
		return
	default:
		// A failing store must not fail the request: the fill engine
		// fetches from the origin and serves from its spool.
		m.log.Error("storage open failed; fetching from origin", "key", t.key, "err", err)
	}
	m.fetch(w, r, t, false)
}

// fetch starts or joins the fill of t and serves it. force refetches even
// if the object is stored (its origin changed).
func (m *MirrorHandler) fetch(w http.ResponseWriter, r *http.Request, t target, force bool) {
	ctx := r.Context()
	f, _ := m.fills.Get(t.key, m.source(t), force)
	defer f.Release()
	info, err := f.Header(ctx)
	if errors.Is(err, fill.ErrStored) {
		// Only a fill that checked storage (force unset) finds the object
		// there, so serveStored's refetch cannot lead back here.
		m.serveStored(w, r, t)
		return
	}
	if err != nil {
		m.fail(w, r, err)
		return
	}
	if !m.TeeResponse {
		select {
		case <-f.Done():
		case <-ctx.Done():
			m.fail(w, r, context.Cause(ctx))
			return
		}
		if err := f.Err(); err != nil {
			m.fail(w, r, err)
			return
		}
		if f.Stored() {
			obj, err := m.RemoteCache.Open(ctx, t.key)
			if err == nil {
				m.serveObject(w, r, t, obj)
				return
			}
			m.log.Error("storage open failed after commit; serving the fill's copy", "key", t.key, "err", err)
		}
		// The store failed; the complete spool still serves this client.
	}
	m.serveFill(w, r, f, info)
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
			return m.client.Do(req)
		},
	}
}

// serveStored opens the committed object of t and serves it. When the
// store cannot open it (the store broke, or lost the object, after the fill
// found it there), the object is fetched from the origin again: a failing
// store never fails the request. The refetch is forced, so it does not
// look in storage and cannot come back here.
func (m *MirrorHandler) serveStored(w http.ResponseWriter, r *http.Request, t target) {
	ctx := r.Context()
	obj, err := m.RemoteCache.Open(ctx, t.key)
	if err != nil {
		if ctx.Err() != nil {
			m.fail(w, r, context.Cause(ctx))
			return
		}
		m.log.Error("storage open failed; fetching from origin", "key", t.key, "err", err)
		m.fetch(w, r, t, true)
		return
	}
	m.serveObject(w, r, t, obj)
}

// serveObject answers r from a committed object: a redirect to a signed URL
// when the backend has one (GET only), else the bytes, with Range, HEAD and
// conditional requests handled by http.ServeContent. It closes obj.
func (m *MirrorHandler) serveObject(w http.ResponseWriter, r *http.Request, t target, obj storage.Object) {
	defer obj.Close()
	info := obj.Info()
	if m.redirect != nil && !m.NoRedirect && r.Method == http.MethodGet {
		u, err := m.redirect.SignedURL(r.Context(), t.key, http.MethodGet, m.linkExpires())
		if err == nil && u != "" {
			http.Redirect(w, r, u, http.StatusFound)
			return
		}
		if err != nil {
			m.log.Warn("signing URL failed; serving bytes", "key", t.key, "err", err)
		}
	}
	setObjectHeaders(w.Header(), info)
	http.ServeContent(w, r, "", info.LastModified, obj)
}

// serveFill answers r from a fill in progress. Bytes not yet arrived are
// waited for; if the fill fails after the response started, the connection
// is aborted so the client cannot mistake a partial body for a whole one.
func (m *MirrorHandler) serveFill(w http.ResponseWriter, r *http.Request, f *fill.Fill, info storage.Info) {
	ctx := r.Context()
	if info.Size < 0 && r.Header.Get("Range") != "" {
		// A range of a body of unknown length can only be answered once
		// the length is known.
		select {
		case <-f.Done():
		case <-ctx.Done():
			m.fail(w, r, context.Cause(ctx))
			return
		}
		if err := f.Err(); err != nil {
			m.fail(w, r, err)
			return
		}
	}
	rd := f.NewReader(ctx)
	setObjectHeaders(w.Header(), info)
	if rd.Size() < 0 {
		m.stream(w, r, rd)
		return
	}
	http.ServeContent(w, r, "", info.LastModified, rd)
	if err := rd.Err(); err != nil {
		m.abort(r, f.Key(), err)
	}
}

// stream copies a body of unknown length, flushing as bytes arrive.
func (m *MirrorHandler) stream(w http.ResponseWriter, r *http.Request, rd *fill.Reader) {
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if err := copyFlushing(w, rd); err != nil {
		m.abort(r, r.URL.Path, err)
	}
}

// abort ends a response whose body cannot be completed. Panicking with
// http.ErrAbortHandler makes net/http close the connection without the
// final chunk, so the client sees a broken transfer, never a short success.
func (m *MirrorHandler) abort(r *http.Request, what string, err error) {
	if r.Context().Err() == nil {
		m.log.Warn("response aborted", "key", what, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// setObjectHeaders sets the stored response headers of an object. A missing
// Content-Type stays missing (net/http would otherwise sniff one), so the
// client sees what the origin sent.
func setObjectHeaders(h http.Header, info storage.Info) {
	for k, v := range info.Header {
		h[k] = v
	}
	if info.ETag != "" {
		h["Etag"] = []string{info.ETag}
	}
	if info.ContentType != "" {
		h["Content-Type"] = []string{info.ContentType}
	} else {
		h["Content-Type"] = nil
	}
}

// changedAtOrigin reports whether the origin now has a file of another size
// than info. It asks at most once at a time per key, within
// CheckSyncTimeout; when the origin cannot say, the cache is trusted.
func (m *MirrorHandler) changedAtOrigin(ctx context.Context, t target, info storage.Info) bool {
	v, err, _ := m.syncs.Do(t.key, func() (any, error) {
		// Shared by every request of the key: not bound to the first one.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.CheckSyncTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(cctx, http.MethodHead, t.url(m.scheme), nil)
		if err != nil {
			return int64(-1), err
		}
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
