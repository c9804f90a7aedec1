package httpmirror

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/netguard"
	"github.com/httpmirror/httpmirror/storage"
)

// ErrNotOK is returned when an upstream response status is not 200 OK. Every
// upstream status error matches it with errors.Is. It keeps the name and
// meaning of the original httpmirror package's ErrNotOK, so code written
// against that API keeps compiling and matching.
var ErrNotOK = fill.ErrNotOK

// errMustRevalidate: a stale object that must not be served stale could
// not be revalidated. 504, as RFC 9111 section 4.2.4 asks; the client
// message says what the origin did (see staleError).
var errMustRevalidate = errors.New("stale object could not be revalidated")

// errAuthCheck: the origin answered an authorisation check with a status
// that neither allows nor denies the credential (5xx, 429, 405 ...). 502:
// the client asked for a file, not for the check, so the check's status
// is no answer for it.
var errAuthCheck = errors.New("authorisation check failed")

// staleError is errMustRevalidate with the revalidation's failure.
type staleError struct{ cause error }

func (e *staleError) Error() string   { return errMustRevalidate.Error() + ": " + e.cause.Error() }
func (e *staleError) Unwrap() []error { return []error{errMustRevalidate, e.cause} }
func (e *staleError) clientMessage() string {
	var se *fill.StatusError
	switch {
	case errors.As(e.cause, &se):
		return "stored copy needs revalidation; upstream answered " + strconv.Itoa(se.Code)
	case isTimeout(e.cause):
		return "stored copy needs revalidation; upstream timed out"
	}
	return "stored copy needs revalidation; upstream unreachable"
}

// StatusClientClosedRequest is logged (never sent) when the client went away
// before the response was complete, as nginx's 499.
const StatusClientClosedRequest = 499

// failure is what the mirror makes of an error: the status the client
// gets, the request's outcome (outcomeNone leaves the outcome as it was: a
// hit answered 404 stays a hit), the one-line message sent as the body, and
// the kind counted by httpmirror_upstream_errors_total.
type failure struct {
	status  int
	outcome outcome
	message string
	kind    string
}

// classify maps an error to its failure. It is the only place that makes
// this decision; ctx is the request's, to tell a client that left from an
// origin that failed. Messages are short, fixed text that never carries
// internal detail; the one exception is a failed CIDN transfer, whose
// one-line reason (see CIDNError) is the client's only way to learn why
// the download failed.
func classify(ctx context.Context, err error) failure {
	var se *fill.StatusError
	var ce *CIDNError
	var stale *staleError
	switch {
	case errors.As(err, &stale):
		return failure{http.StatusGatewayTimeout, outcomeError, stale.clientMessage(), classify(ctx, stale.cause).kind}
	case errors.Is(err, errBadRequest), errors.Is(err, storage.ErrInvalidKey):
		return failure{http.StatusBadRequest, outcomeInvalid, "bad request path", "other"}
	case errors.Is(err, errNoTarget):
		return failure{http.StatusNotFound, outcomeInvalid, "404 page not found", "other"}
	case errors.Is(err, errPathTooLong):
		return failure{http.StatusRequestURITooLong, outcomeInvalid, "request path too long", "other"}
	case errors.Is(err, netguard.ErrRefused):
		return failure{http.StatusForbidden, outcomeRefused, "upstream address not allowed", "refused"}
	case errors.Is(err, errBlocked):
		return failure{http.StatusForbidden, outcomeBlocked, "blocked file type", "other"}
	case errors.Is(err, errAuthCheck):
		return failure{http.StatusBadGateway, outcomeError, "upstream could not check the credential", "other"}
	case errors.Is(err, errHostNotAllowed):
		return failure{http.StatusForbidden, outcomeBlocked, "host not allowed", "other"}
	case errors.As(err, &se):
		kind := "status_4xx"
		if se.Code >= 500 {
			kind = "status_5xx"
		}
		if se.Code >= 400 && se.Code < 500 {
			// Client errors pass through: 404, 410, 401, 403, 416, 429 ...
			return failure{se.Code, outcomeNone, http.StatusText(se.Code), kind}
		}
		// Server errors and anything unexpected.
		return failure{http.StatusBadGateway, outcomeError, "upstream unavailable", kind}
	case errors.As(err, &ce):
		if code := ce.status(); code != http.StatusBadGateway {
			return failure{code, outcomeNone, http.StatusText(code), "other"}
		}
		return failure{http.StatusBadGateway, outcomeError, ce.clientText(), "other"}
	case errors.Is(err, ErrCIDNDeleted):
		return failure{http.StatusBadGateway, outcomeError, "cidn transfer deleted before it ended", "other"}
	case errors.Is(err, fill.ErrCancelled):
		return failure{http.StatusServiceUnavailable, outcomeError, "download cancelled by a purge; try again", "other"}
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return failure{StatusClientClosedRequest, outcomeNone, "", "other"}
	case errors.Is(err, fill.ErrShutdown):
		return failure{http.StatusServiceUnavailable, outcomeError, "shutting down", "other"}
	case isTimeout(err):
		return failure{http.StatusGatewayTimeout, outcomeError, "upstream timed out", "timeout"}
	case errors.Is(err, fill.ErrOriginChanged):
		return failure{http.StatusBadGateway, outcomeError, "upstream unavailable", "changed"}
	case errors.Is(err, fill.ErrShortBody):
		return failure{http.StatusBadGateway, outcomeError, "upstream unavailable", "short_body"}
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return failure{http.StatusBadGateway, outcomeError, "upstream unavailable", "connect"}
	}
	return failure{http.StatusBadGateway, outcomeError, "upstream unavailable", "other"}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, fill.ErrIdleTimeout) || errors.Is(err, fill.ErrTooSlow) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fail answers r with the failure err maps to, unless the client is gone.
// The error's detail goes to the log only.
func (m *MirrorHandler) fail(w *recorder, r *http.Request, err error) {
	f := classify(r.Context(), err)
	if f.outcome != outcomeNone {
		w.outcome = f.outcome
	}
	if errors.Is(err, errNoTarget) {
		m.notFound(w, r)
		return
	}
	lvl := m.log.Warn
	if f.status < 500 {
		lvl = m.log.Debug
	}
	lvl("request failed", "method", r.Method, "path", logPath(r.URL.Path), "status", f.status, "err", err)
	if f.status == StatusClientClosedRequest {
		return
	}
	m.admin.errors.add(m.now(), r, w.host, f.status, f.message)
	h := w.Header()
	for _, k := range []string{"Etag", "Last-Modified", "Content-Type", "Content-Encoding", "Cache-Control"} {
		h.Del(k)
	}
	var se *fill.StatusError
	if (f.status == http.StatusUnauthorized || f.status == http.StatusProxyAuthRequired) && errors.As(err, &se) {
		// The client needs the origin's challenge to know how to
		// authenticate (RFC 9110 section 11.6.1).
		if v := se.Header.Values("Www-Authenticate"); len(v) > 0 {
			h["Www-Authenticate"] = v
		}
	}
	http.Error(w, f.message, f.status)
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
