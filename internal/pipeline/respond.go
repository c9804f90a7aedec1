package pipeline

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// serveBytes answers r with the bytes of obj, whose metadata is info:
// Range (checked, merged and capped first: see rangeRequest), HEAD and
// conditional requests handled by http.ServeContent.
func (p *Pipeline) serveBytes(w *responseWriter, r *http.Request, obj storage.Object, info storage.Info) {
	ew := setObjectHeaders(w, info)
	if len(r.Header["Range"]) != 0 {
		r = p.rangeRequest(r, info.Size)
	}
	http.ServeContent(ew, r, "", info.LastModified, obj)
}

// serveFill answers r from a fill in progress of t, with the same Range
// rules as a stored object. Bytes not yet arrived are waited for; if the
// fill fails after the response started, the response is aborted (an
// *abortError) so the client cannot mistake a partial body for a whole
// one. Another error means nothing was sent, and the request fails with
// it.
func (p *Pipeline) serveFill(w *responseWriter, r *http.Request, t Target, f *fill.Fill, info storage.Info) error {
	ctx := r.Context()
	if (info.Size < 0 && r.Header.Get("Range") != "") || info.Size == 0 {
		// A range of a body of unknown length can only be answered once
		// the length is known; an empty body, whose answer has no last
		// byte to hold back, once the fill's verdict is in.
		if err := f.Wait(ctx); err != nil {
			return err
		}
	}
	// While the origin is slow, what has arrived goes out at once instead
	// of waiting in the server's buffer (net/http holds the first 2 KiB).
	rc := http.NewResponseController(w)
	flush := func() { rc.Flush() }
	if size := f.Size(); size >= 0 && plainHeader(r.Header) {
		if s, err := f.NewSender(); err == nil {
			defer s.Close()
			copyHeader(w.Header(), wholeBodyHeader(info, size))
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodHead || size == 0 {
				return nil
			}
			if err := s.Send(ctx, w, size, flush); err != nil {
				if f.Checked() {
					// Bytes checked against a published digest are
					// not completed with bytes nobody checks.
					return &abortError{t.key, err}
				}
				return p.continueFromOrigin(w, r, t, info, w.bytes, size, err)
			}
			return nil
		}
	}
	rd := f.NewReader(ctx)
	rd.OnWait(flush)
	ew := setObjectHeaders(w, info)
	if rd.Size() < 0 {
		return stream(ew, r, rd, f.Key())
	}
	if len(r.Header["Range"]) != 0 {
		r = p.rangeRequest(r, rd.Size())
	}
	http.ServeContent(ew, r, "", info.LastModified, rd)
	if err := rd.Err(); err != nil {
		return &abortError{f.Key(), err}
	}
	return nil
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
func (p *Pipeline) rangeRequest(r *http.Request, size int64) *http.Request {
	vals := r.Header["Range"]
	if len(vals) != 1 {
		return withRange(r, "")
	}
	var buf [4]byteRange
	ranges, answer := parseRange(vals[0], size, p.cfg.MaxRanges, buf[:0])
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
func stream(w http.ResponseWriter, r *http.Request, body io.Reader, what string) error {
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if err := copyFlushing(w, body); err != nil {
		return &abortError{what, err}
	}
	return nil
}

// abortError is the error of a response that cannot be completed once
// its header is sent. The dispatcher records the request, then makes
// net/http close the connection without the end of the body, so the
// client sees a broken transfer, never a short success.
type abortError struct {
	what string // the key or path, for the log
	err  error
}

func (e *abortError) Error() string { return "response aborted: " + e.err.Error() }
func (e *abortError) Unwrap() error { return e.err }

// setObjectHeaders sets the stored response headers of an object, and
// returns the writer to send the object's answer through. A missing
// Content-Type stays missing (net/http would otherwise sniff one), so the
// client sees what the origin sent. The mirror's own stored headers
// (policy.Internal) stay inside.
//
// Content-Encoding is held back until the status is written (see
// encodingWriter): given it, http.ServeContent would leave out
// Content-Length on a whole-body answer, and the bytes served are exactly
// the stored ones, whatever their encoding.
func setObjectHeaders(w *responseWriter, info storage.Info) http.ResponseWriter {
	h := w.Header()
	var enc []string
	for k, v := range info.Header {
		switch {
		case k == "Content-Encoding":
			enc = v
		default:
			if name, ok := clientField(k); ok {
				h[name] = v
			}
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
	if enc == nil {
		return w
	}
	return &encodingWriter{responseWriter: w, enc: enc}
}

// encodingWriter adds the stored Content-Encoding to a successful answer
// when its status is written (an error answer's body is the mirror's own
// text).
type encodingWriter struct {
	*responseWriter
	enc   []string
	wrote bool
}

func (e *encodingWriter) WriteHeader(code int) {
	if !e.wrote && code >= 200 {
		e.wrote = true
		if code < 300 || code == http.StatusNotModified {
			e.Header()["Content-Encoding"] = e.enc
		}
	}
	e.responseWriter.WriteHeader(code)
}

func (e *encodingWriter) Write(b []byte) (int, error) {
	if !e.wrote {
		e.WriteHeader(http.StatusOK)
	}
	return e.responseWriter.Write(b)
}

func (e *encodingWriter) ReadFrom(src io.Reader) (int64, error) {
	if !e.wrote {
		e.WriteHeader(http.StatusOK)
	}
	return e.responseWriter.ReadFrom(src)
}

// copyHeader sets every field of src in dst, sharing the value slices:
// src must not change afterwards.
func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = v
	}
}

// The writers keep the connection's ReaderFrom: fills and local objects
// are sent with sendfile.
var (
	_ io.ReaderFrom = (*responseWriter)(nil)
	_ io.ReaderFrom = (*encodingWriter)(nil)
)

// continueFromOrigin completes a whole-body response of size bytes whose
// fill stopped after the client got sent bytes, when the fill stopped only
// because the mirror could not keep the bytes on disk (fill.ErrSpool): the
// rest comes straight from the origin, with a Range request guarded by
// If-Range and checked like a resume. Any other failure, or an origin
// that cannot continue the same object, aborts the response (the error
// returned).
func (p *Pipeline) continueFromOrigin(w *responseWriter, r *http.Request, t Target, info storage.Info, sent, size int64, err error) error {
	ctx := r.Context()
	validator := policy.IfRange(info)
	if !errors.Is(err, fill.ErrSpool) || ctx.Err() != nil || validator == "" {
		return &abortError{t.key, err}
	}
	p.log.Warn("no disk to spool on; continuing from the origin", "key", t.key, "offset", sent, "err", err)
	// The same representation, for the same credential.
	h := forwardedHeaders(FromHTTP(r), t)
	h.Set("Range", "bytes="+strconv.FormatInt(sent, 10)+"-")
	h.Set("If-Range", validator)
	resp, err := p.upstream(ctx, http.MethodGet, t.url(p.cfg.Scheme), h)
	if err != nil {
		return &abortError{t.key, err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return &abortError{t.key, &fill.StatusError{Code: resp.StatusCode}}
	}
	if err := fill.Continues(resp, sent, info); err != nil {
		return &abortError{t.key, err}
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, size-sent))
	if err == nil && n != size-sent {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return &abortError{t.key, err}
	}
	return nil
}

// clientField names the header field under which a stored field k reaches
// clients: the kept SHA-256 of the stored bytes as Repr-Digest (RFC 9530);
// the mirror's own fields (policy.Internal) not at all.
func clientField(k string) (string, bool) {
	switch {
	case k == policy.DigestHeader:
		return "Repr-Digest", true
	case policy.Internal(k):
		return "", false
	}
	return k, true
}
