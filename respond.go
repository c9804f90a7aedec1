package httpmirror

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// serveObject answers r from the committed object obj of t (see
// serveFresh), when r may have it: an object that needs authorisation goes
// to authorised clients only. It closes obj.
func (m *MirrorHandler) serveObject(w *recorder, r *http.Request, t target, obj storage.Object) {
	info := obj.Info()
	if info.Header[policy.AuthHeader] != nil && !m.authorised(w, r, t, info) {
		obj.Close()
		return
	}
	m.serveFresh(w, r, t, obj, info, m.freshness(t, info))
}

// serveFresh answers r from a committed object whose metadata is info and
// whose freshness is fr: a redirect to a signed URL when the backend has
// one (GET only), else the bytes, with Range (checked, merged and capped
// first: see rangeRequest), HEAD and conditional requests handled by
// http.ServeContent. The caller has checked that r may have the object
// (see serveObject). It closes obj.
func (m *MirrorHandler) serveFresh(w *recorder, r *http.Request, t target, obj storage.Object, info storage.Info, fr policy.Freshness) {
	defer obj.Close()
	w.outcome = outcomeHit
	if fr.Explicit {
		// Downstream caches count the time the object spent here
		// (RFC 9111 section 5.1).
		age := max(m.now().Sub(info.StoredAt), 0)
		w.Header().Set("Age", strconv.FormatInt(int64(age/time.Second), 10))
	}
	if !m.NoRedirect && r.Method == http.MethodGet {
		u, err := m.store.(storage.Redirector).SignedURL(r.Context(), t.key, http.MethodGet, m.linkExpires())
		if err == nil && u != "" {
			http.Redirect(w, r, u, http.StatusFound)
			return
		}
		if err != nil {
			m.log.Warn("signing URL failed; serving bytes", "key", t.key, "err", err)
		}
	}
	if b, ok := obj.(storage.InMemory); ok && plainRequest(r) {
		m.serveMemory(w, r, t.key, info, fr, b.Bytes())
		return
	}
	m.serveBytes(w, r, obj, info)
}

// serveBytes answers r with the bytes of obj, whose metadata is info:
// Range (checked, merged and capped first: see rangeRequest), HEAD and
// conditional requests handled by http.ServeContent.
func (m *MirrorHandler) serveBytes(w *recorder, r *http.Request, obj storage.Object, info storage.Info) {
	setObjectHeaders(w, info)
	if len(r.Header["Range"]) != 0 {
		r = m.rangeRequest(r, info.Size)
	}
	http.ServeContent(w, r, "", info.LastModified, obj)
}

// serveFill answers r from a fill in progress, with the same Range rules as
// a stored object. Bytes not yet arrived are waited for; if the fill fails
// after the response started, the connection is aborted so the client
// cannot mistake a partial body for a whole one. A fill of an object that
// needs authorisation goes to authorised clients only (the one whose
// credential fetched it is).
func (m *MirrorHandler) serveFill(w *recorder, r *http.Request, t target, f *fill.Fill, info storage.Info) {
	ctx := r.Context()
	if info.Header[policy.AuthHeader] != nil && !m.authorised(w, r, t, info) {
		return
	}
	if info.Size < 0 && r.Header.Get("Range") != "" {
		// A range of a body of unknown length can only be answered once
		// the length is known.
		if err := f.Wait(ctx); err != nil {
			m.fail(w, r, err)
			return
		}
	}
	// While the origin is slow, what has arrived goes out at once instead
	// of waiting in the server's buffer (net/http holds the first 2 KiB).
	rc := http.NewResponseController(w)
	flush := func() { rc.Flush() }
	if size := f.Size(); size >= 0 && plainRequest(r) {
		if s, err := f.NewSender(); err == nil {
			defer s.Close()
			copyHeader(w.Header(), wholeBodyHeader(info, size))
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodHead || size == 0 {
				return
			}
			if err := s.Send(ctx, w, size, flush); err != nil {
				m.continueFromOrigin(w, r, t, info, w.bytes, size, err)
			}
			return
		}
	}
	rd := f.NewReader(ctx)
	rd.OnWait(flush)
	setObjectHeaders(w, info)
	if rd.Size() < 0 {
		m.stream(w, r, rd)
		return
	}
	if len(r.Header["Range"]) != 0 {
		r = m.rangeRequest(r, rd.Size())
	}
	http.ServeContent(w, r, "", info.LastModified, rd)
	if err := rd.Err(); err != nil {
		m.abort(r, f.Key(), err)
	}
}

// rangeRequest returns the request that http.ServeContent answers in place
// of r, which has a Range header, for an object of size bytes: r itself when
// its header already names the normalised set of ranges (see parseRange),
// else a shallow copy of r whose header does. An ignored header is left
// out, so the whole body is sent; an unsatisfiable one becomes a range
// starting at the end, which http.ServeContent answers with 416 and
// Content-Range "bytes */size". Either way http.ServeContent still decides
// first on the conditions (If-Match, If-None-Match, If-Modified-Since,
// If-Range), in RFC 9110's order. A Range field given more than once is
// invalid.
func (m *MirrorHandler) rangeRequest(r *http.Request, size int64) *http.Request {
	vals := r.Header["Range"]
	if len(vals) != 1 {
		return withRange(r, "")
	}
	var buf [4]byteRange
	ranges, answer := parseRange(vals[0], size, m.maxRanges(), buf[:0])
	switch answer {
	case rangeWhole:
		return withRange(r, "")
	case rangeUnsatisfiable:
		return withRange(r, "bytes="+strconv.FormatInt(size, 10)+"-")
	}
	var text [64]byte
	b := appendRangeHeader(text[:0], ranges, size)
	if string(b) == vals[0] {
		return r
	}
	return withRange(r, string(b))
}

// withRange returns a shallow copy of r whose Range header is v, or has none
// when v is empty. r and its header, which net/http and the caller share,
// are left as they are.
func withRange(r *http.Request, v string) *http.Request {
	h := make(http.Header, len(r.Header))
	for k, vv := range r.Header {
		if k != "Range" {
			h[k] = vv
		}
	}
	if v != "" {
		h["Range"] = []string{v}
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = h
	return r2
}

// stream copies a body of unknown length, flushing as bytes arrive.
func (m *MirrorHandler) stream(w *recorder, r *http.Request, rd *fill.Reader) {
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
// encoding. The mirror's own stored headers (policy.Internal) stay inside.
func setObjectHeaders(w *recorder, info storage.Info) {
	h := w.Header()
	for k, v := range info.Header {
		switch {
		case k == "Content-Encoding":
			w.encoding = v
		case !policy.Internal(k):
			h[k] = v
		}
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

// copyHeader sets every field of src in dst, sharing the value slices:
// src must not change afterwards.
func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// The recorder keeps the connection's ReaderFrom: fills and local objects
// are sent with sendfile.
var _ io.ReaderFrom = (*recorder)(nil)

// continueFromOrigin completes a whole-body response of size bytes whose
// fill stopped after the client got sent bytes, when the fill stopped only
// because the mirror could not keep the bytes on disk (fill.ErrSpool): the
// rest comes straight from the origin, with a Range request guarded by
// If-Range and checked like a resume. Any other failure, or an origin
// that cannot continue the same object, aborts the response.
func (m *MirrorHandler) continueFromOrigin(w *recorder, r *http.Request, t target, info storage.Info, sent, size int64, err error) {
	ctx := r.Context()
	validator := policy.IfRange(info)
	if !errors.Is(err, fill.ErrSpool) || ctx.Err() != nil || validator == "" {
		m.abort(r, t.key, err)
	}
	m.log.Warn("no disk to spool on; continuing from the origin", "key", t.key, "offset", sent, "err", err)
	req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, t.url(m.scheme), nil)
	if rerr != nil {
		m.abort(r, t.key, rerr)
	}
	// The same representation, for the same credential.
	copyHeader(req.Header, forwardedHeaders(r, t))
	req.Header.Set("Range", "bytes="+strconv.FormatInt(sent, 10)+"-")
	req.Header.Set("If-Range", validator)
	resp, rerr := m.client.Do(req)
	if rerr != nil {
		m.abort(r, t.key, rerr)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		m.abort(r, t.key, &fill.StatusError{Code: resp.StatusCode})
	}
	if rerr := fill.Continues(resp, sent, info); rerr != nil {
		m.abort(r, t.key, rerr)
	}
	n, rerr := io.Copy(w, io.LimitReader(resp.Body, size-sent))
	if rerr == nil && n != size-sent {
		rerr = io.ErrUnexpectedEOF
	}
	if rerr != nil {
		m.abort(r, t.key, rerr)
	}
}

func (m *MirrorHandler) linkExpires() time.Duration {
	if m.LinkExpires > 0 {
		return m.LinkExpires
	}
	return 24 * time.Hour
}
