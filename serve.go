package httpmirror

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/storage"
)

// cached serves t from the cache, fetching it on a miss.
func (m *MirrorHandler) cached(w http.ResponseWriter, r *http.Request, t target) {
	ctx := r.Context()
	if code, ok := m.negatives.get(t.key, m.now()); ok {
		// The origin said recently that this file does not exist.
		mark(w, outcomeHit)
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
	m.fetch(w, r, t, nil, false)
}

// serveHit serves a stored object, revalidating it first when it is stale
// and checking its size at the origin when CheckSyncTimeout asks for it.
func (m *MirrorHandler) serveHit(w http.ResponseWriter, r *http.Request, t target, obj storage.Object) {
	info := obj.Info()
	fr := m.freshnessOf(t.key, info)
	if fr.stale(info, m.now()) {
		m.fetch(w, r, t, obj, true)
		return
	}
	if m.CheckSyncTimeout > 0 && m.changedAtOrigin(r.Context(), t, info) {
		obj.Close()
		m.fetch(w, r, t, nil, true)
		return
	}
	m.serveObject(w, r, t, obj, info, fr)
}

// fetch starts or joins the fill of t and serves it. force refetches even
// if the object is stored. stale, when not nil, is the stored object being
// revalidated: the fill asks the origin conditionally, and stale is served
// if the origin confirms it (304) or cannot be reached (unless the object
// must not be served stale). fetch closes stale.
func (m *MirrorHandler) fetch(w http.ResponseWriter, r *http.Request, t target, stale storage.Object, force bool) {
	ctx := r.Context()
	src := m.source(t)
	if stale != nil {
		src.Validators = validators(stale.Info())
		defer func() {
			if stale != nil {
				stale.Close()
			}
		}()
	}
	f, joined := m.fills.Get(t.key, src, force)
	defer f.Release()
	if joined {
		mark(w, outcomeJoined)
	} else {
		mark(w, outcomeMiss)
	}
	info, err := f.Header(ctx)
	if stale != nil && err != nil && ctx.Err() == nil {
		if m.serveStale(w, r, t, stale, err, joined) {
			stale = nil // served and closed
			return
		}
	}
	var se *fill.StatusError
	switch {
	case errors.Is(err, fill.ErrStored):
		// Only a fill that checked storage (force unset) finds the object
		// there, so serveStored's refetch cannot lead back here.
		m.serveStored(w, r, t)
		return
	case errors.As(err, &se) && (se.Code == http.StatusNotFound || se.Code == http.StatusGone):
		if ttl := m.negativeTTL(); ttl > 0 {
			m.negatives.put(t.key, se.Code, m.now(), ttl)
		}
		if stale != nil {
			// The origin no longer has the file: neither does the mirror.
			m.store.Delete(context.WithoutCancel(ctx), t.key)
		}
		m.fail(w, r, err)
		return
	case err != nil:
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
			obj, err := m.store.Open(ctx, t.key)
			if err == nil {
				info := obj.Info()
				m.serveObject(w, r, t, obj, info, m.freshnessOf(t.key, info))
				return
			}
			m.log.Error("storage open failed after commit; serving the fill's copy", "key", t.key, "err", err)
		}
		// The store failed; the complete spool still serves this client.
	}
	m.serveFill(w, r, f, info)
}

// serveStale answers a revalidation that did not produce a new object:
// with the stored object when the origin confirmed it (304), or when the
// origin failed and the object may be served stale (RFC 9111 section 4.2.4;
// stale-if-error). It reports whether it answered; it closes obj if so.
func (m *MirrorHandler) serveStale(w http.ResponseWriter, r *http.Request, t target, obj storage.Object, err error, joined bool) bool {
	info := obj.Info()
	fr := m.freshnessOf(t.key, info)
	var nm *fill.NotModifiedError
	var se *fill.StatusError
	switch {
	case errors.As(err, &nm):
		info = refreshed(info, nm.Header, m.now())
		if rf, ok := m.RemoteCache.(storage.Refresher); ok && !joined {
			// One refresh per revalidation: the request that started it.
			if err := rf.Refresh(context.WithoutCancel(r.Context()), t.key, info); err != nil {
				m.log.Warn("refreshing revalidated object failed", "key", t.key, "err", err)
			}
		}
	case errors.As(err, &se) && se.Code < 500:
		return false // the origin answered: 404 and others go to the client
	case errors.Is(err, fill.ErrShutdown):
		return false
	case fr.mustRevalidate:
		m.log.Warn("revalidation failed; object may not be served stale", "key", t.key, "err", err)
		obj.Close()
		m.fail(w, r, errMustRevalidate)
		return true
	default:
		m.log.Warn("revalidation failed; serving stale object", "key", t.key, "err", err)
	}
	m.serveObject(w, r, t, obj, info, m.freshnessOf(t.key, info))
	return true
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

// serveStored opens the committed object of t and serves it. When the
// store cannot open it (the store broke, or lost the object, after the fill
// found it there), the object is fetched from the origin again: a failing
// store never fails the request. The refetch is forced, so it does not
// look in storage and cannot come back here.
func (m *MirrorHandler) serveStored(w http.ResponseWriter, r *http.Request, t target) {
	ctx := r.Context()
	obj, err := m.store.Open(ctx, t.key)
	if err != nil {
		if ctx.Err() != nil {
			m.fail(w, r, context.Cause(ctx))
			return
		}
		m.log.Error("storage open failed; fetching from origin", "key", t.key, "err", err)
		m.fetch(w, r, t, nil, true)
		return
	}
	info := obj.Info()
	m.serveObject(w, r, t, obj, info, m.freshnessOf(t.key, info))
}

// serveObject answers r from a committed object whose metadata is info: a
// redirect to a signed URL when the backend has one (GET only), else the
// bytes, with Range, HEAD and conditional requests handled by
// http.ServeContent. It closes obj.
func (m *MirrorHandler) serveObject(w http.ResponseWriter, r *http.Request, t target, obj storage.Object, info storage.Info, fr freshness) {
	defer obj.Close()
	mark(w, outcomeHit)
	if fr.explicit {
		// Downstream caches count the time the object spent here
		// (RFC 9111 section 5.1).
		age := max(m.now().Sub(info.StoredAt), 0)
		w.Header().Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
	}
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
	if b, ok := obj.(bodyHolder); ok && plainRequest(r) {
		m.serveMemory(w, r, t.key, info, b.Bytes())
		return
	}
	setObjectHeaders(w, info)
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
	if size := f.Size(); size >= 0 && plainRequest(r) {
		if spool, err := f.OpenSpool(); err == nil {
			defer spool.Close()
			m.sendSpool(w, r, f, info, size, spool)
			return
		}
	}
	rd := f.NewReader(ctx)
	setObjectHeaders(w, info)
	if rd.Size() < 0 {
		m.stream(w, r, rd)
		return
	}
	http.ServeContent(w, r, "", info.LastModified, rd)
	if err := rd.Err(); err != nil {
		m.abort(r, f.Key(), err)
	}
}

// Slices of a spool sent to one client at a time (see sendSpool).
const (
	firstSend = 64 << 10
	maxSend   = 4 << 20
)

// sendSpool answers a plain GET or HEAD of a fill of known size by sending
// the bytes from spool, the client's own handle on the fill's spool file, as
// they arrive: the kernel copies them to the socket (sendfile), which makes
// serving many clients of one download cheap.
func (m *MirrorHandler) sendSpool(w http.ResponseWriter, r *http.Request, f *fill.Fill, info storage.Info, size int64, spool *os.File) {
	dst := w.Header()
	for k, v := range wholeBodyHeader(info, size) {
		dst[k] = v
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead || size == 0 {
		return
	}
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		m.abort(r, f.Key(), errors.New("response writer cannot send files"))
	}
	ctx := r.Context()
	var off int64
	for off < size {
		n, err := f.Available(ctx, off)
		if err != nil {
			m.abort(r, f.Key(), err)
		}
		// Send at most a slice at a time, a small one first: when many
		// clients share a download, each gets its first bytes (and then its
		// turns) without waiting behind another's multi-megabyte send.
		chunk := min(n, size) - off
		if off == 0 {
			chunk = min(chunk, firstSend)
		}
		chunk = min(chunk, maxSend)
		// The handle's offset is off: it moves only with what was sent.
		sent, err := rf.ReadFrom(&io.LimitedReader{R: spool, N: chunk})
		off += sent
		if err != nil {
			m.abort(r, f.Key(), err)
		}
		if sent == 0 {
			m.abort(r, f.Key(), io.ErrUnexpectedEOF)
		}
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
//
// Content-Encoding is held back until the status is written: given it,
// http.ServeContent would leave out Content-Length on a whole-body answer,
// and the bytes served are exactly the stored ones, whatever their
// encoding.
func setObjectHeaders(w http.ResponseWriter, info storage.Info) {
	h := w.Header()
	for k, v := range info.Header {
		if k == "Content-Encoding" {
			if rec, ok := w.(*recorder); ok {
				rec.encoding = v
				continue
			}
		}
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
