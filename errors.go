package httpmirror

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/netguard"
	"github.com/httpmirror/httpmirror/storage"
)

// ErrNotOK is returned when an upstream response status is not 200 OK. Every
// upstream status error matches it with errors.Is.
var ErrNotOK = fill.ErrNotOK

// errMustRevalidate: a stale object that must not be served stale could
// not be revalidated. 504, as RFC 9111 section 4.2.4 asks.
var errMustRevalidate = errors.New("stale object could not be revalidated")

// StatusClientClosedRequest is logged (never sent) when the client went away
// before the response was complete, as nginx's 499.
const StatusClientClosedRequest = 499

// statusFor maps an error to the status the client gets. It is the only
// place that makes this decision.
func statusFor(ctx context.Context, err error) int {
	var se *fill.StatusError
	var ce *CIDNError
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, storage.ErrInvalidKey):
		return http.StatusBadRequest
	case errors.Is(err, errNoTarget):
		return http.StatusNotFound
	case errors.Is(err, errPathTooLong):
		return http.StatusRequestURITooLong
	case errors.Is(err, errBlocked), errors.Is(err, netguard.ErrRefused):
		return http.StatusForbidden
	case errors.As(err, &se):
		return upstreamStatus(se.Code)
	case errors.As(err, &ce):
		return ce.status()
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return StatusClientClosedRequest
	case errors.Is(err, fill.ErrShutdown):
		return http.StatusServiceUnavailable
	case isTimeout(err), errors.Is(err, errMustRevalidate):
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// upstreamStatus maps an origin's non-200 status to the mirror's answer:
// client errors pass through (404, 410, 401, 403, 416, 429 ...), server
// errors and anything unexpected become 502.
func upstreamStatus(code int) int {
	if code >= 400 && code < 500 {
		return code
	}
	return http.StatusBadGateway
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, fill.ErrIdleTimeout) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// clientMessage is the body sent with an error status: short, fixed text
// that never carries internal detail. The one exception is a failed CIDN
// transfer, whose one-line reason (see CIDNError) is the client's only way
// to learn why the download failed.
func clientMessage(code int, err error) string {
	var ce *CIDNError
	switch {
	case code == http.StatusBadGateway && errors.As(err, &ce):
		return ce.clientText()
	case errors.Is(err, ErrCIDNDeleted):
		return "cidn transfer deleted before it ended"
	case errors.Is(err, netguard.ErrRefused):
		return "upstream address not allowed"
	case errors.Is(err, errBlocked):
		return "blocked file type"
	case errors.Is(err, errBadRequest):
		return "bad request path"
	case code == http.StatusBadGateway:
		return "upstream unavailable"
	case code == http.StatusGatewayTimeout:
		return "upstream timed out"
	}
	return http.StatusText(code)
}

// fail answers r with the status for err, unless the client is gone. The
// error's detail goes to the log only.
func (m *MirrorHandler) fail(w http.ResponseWriter, r *http.Request, err error) {
	code := statusFor(r.Context(), err)
	switch {
	case errors.Is(err, errBlocked):
		mark(w, outcomeBlocked)
	case errors.Is(err, netguard.ErrRefused):
		mark(w, outcomeRefused)
	case errors.Is(err, errBadRequest), errors.Is(err, errNoTarget), errors.Is(err, errPathTooLong):
		mark(w, outcomeInvalid)
	case code >= 500:
		mark(w, outcomeError)
	}
	if code == http.StatusNotFound && errors.Is(err, errNoTarget) {
		m.notFound(w, r)
		return
	}
	lvl := m.log.Warn
	if code < 500 {
		lvl = m.log.Debug
	}
	lvl("request failed", "method", r.Method, "path", logPath(r.URL.Path), "status", code, "err", err)
	if code == StatusClientClosedRequest {
		return
	}
	h := w.Header()
	for _, k := range []string{"Etag", "Last-Modified", "Content-Type", "Content-Encoding", "Cache-Control"} {
		h.Del(k)
	}
	http.Error(w, clientMessage(code, err), code)
}

func (m *MirrorHandler) notFound(w http.ResponseWriter, r *http.Request) {
	if m.NotFound != nil {
		m.NotFound.ServeHTTP(w, r)
		return
	}
	http.NotFound(w, r)
}

// logPath shortens a request path for the log: a hostile client must not be
// able to write 64 KiB lines into it.
func logPath(p string) string {
	const max = 256
	if len(p) <= max {
		return p
	}
	return p[:max] + "...(truncated)"
}
