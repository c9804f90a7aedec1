package pipeline

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/netguard"
	"github.com/httpmirror/httpmirror/storage"
)

// errMethodNotAllowed: a method other than GET and HEAD. 405, with Allow.
var errMethodNotAllowed = errors.New("method not allowed")

// errAuthCheck: the origin answered an authorisation check with a status
// that neither allows nor denies the credential (5xx, 429, 405 ...). 502:
// the client asked for a file, not for the check, so the check's status
// is no answer for it.
var errAuthCheck = errors.New("authorisation check failed")

// StatusClientClosedRequest is logged (never sent) when the client went away
// before the response was complete, as nginx's 499.
const StatusClientClosedRequest = 499

// Failure is what the mirror makes of an error: the status the client
// gets, the request's outcome (OutcomeNone leaves the outcome as it was: a
// hit answered 404 stays a hit), the one-line message sent as the body, and
// the kind counted by httpmirror_upstream_errors_total.
type Failure struct {
	Status  int
	Outcome Outcome
	Message string
	Kind    string
}

// Classify maps an error to its Failure. It is the only place that makes
// this decision; ctx is the request's, to tell a client that left from an
// origin that failed. Messages are short, fixed text that never carries
// internal detail; the one exception is a failed CIDN transfer, whose
// one-line reason (see CIDNError) is the client's only way to learn why
// the download failed.
func Classify(ctx context.Context, err error) Failure {
	var se *fill.StatusError
	var ce *CIDNError
	var stale *staleError
	switch {
	case errors.As(err, &stale):
		return Failure{http.StatusGatewayTimeout, OutcomeError, stale.clientMessage(), Classify(ctx, stale.cause).Kind}
	case errors.Is(err, errMethodNotAllowed):
		return Failure{http.StatusMethodNotAllowed, OutcomeInvalid, "method not allowed", "other"}
	case errors.Is(err, errBadRequest), errors.Is(err, storage.ErrInvalidKey):
		return Failure{http.StatusBadRequest, OutcomeInvalid, "bad request path", "other"}
	case errors.Is(err, errNoTarget):
		return Failure{http.StatusNotFound, OutcomeInvalid, "404 page not found", "other"}
	case errors.Is(err, errPathTooLong):
		return Failure{http.StatusRequestURITooLong, OutcomeInvalid, "request path too long", "other"}
	case errors.Is(err, netguard.ErrRefused):
		return Failure{http.StatusForbidden, OutcomeRefused, "upstream address not allowed", "refused"}
	case errors.Is(err, errBlocked):
		return Failure{http.StatusForbidden, OutcomeBlocked, "blocked file type", "other"}
	case errors.Is(err, errAuthCheck):
		return Failure{http.StatusBadGateway, OutcomeError, "upstream could not check the credential", "other"}
	case errors.Is(err, errHostNotAllowed):
		return Failure{http.StatusForbidden, OutcomeBlocked, "host not allowed", "other"}
	case errors.As(err, &se):
		kind := "status_4xx"
		if se.Code >= 500 {
			kind = "status_5xx"
		}
		if se.Code >= 400 && se.Code < 500 {
			// Client errors pass through: 404, 410, 401, 403, 416, 429 ...
			return Failure{se.Code, OutcomeNone, http.StatusText(se.Code), kind}
		}
		// Server errors and anything unexpected.
		return Failure{http.StatusBadGateway, OutcomeError, "upstream unavailable", kind}
	case errors.As(err, &ce):
		if code := ce.status(); code != http.StatusBadGateway {
			return Failure{code, OutcomeNone, http.StatusText(code), "other"}
		}
		return Failure{http.StatusBadGateway, OutcomeError, ce.clientText(), "other"}
	case errors.Is(err, ErrCIDNDeleted):
		return Failure{http.StatusBadGateway, OutcomeError, "cidn transfer deleted before it ended", "other"}
	case errors.Is(err, fill.ErrCancelled):
		return Failure{http.StatusServiceUnavailable, OutcomeError, "download cancelled by a purge; try again", "other"}
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return Failure{StatusClientClosedRequest, OutcomeNone, "", "other"}
	case errors.Is(err, fill.ErrShutdown):
		return Failure{http.StatusServiceUnavailable, OutcomeError, "shutting down", "other"}
	case isTimeout(err):
		return Failure{http.StatusGatewayTimeout, OutcomeError, "upstream timed out", "timeout"}
	case errors.Is(err, fill.ErrOriginChanged):
		return Failure{http.StatusBadGateway, OutcomeError, "upstream unavailable", "changed"}
	case errors.Is(err, fill.ErrDigestMismatch):
		return Failure{http.StatusBadGateway, OutcomeError, "upstream sent corrupt data", "digest"}
	case errors.Is(err, fill.ErrShortBody):
		return Failure{http.StatusBadGateway, OutcomeError, "upstream unavailable", "short_body"}
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return Failure{http.StatusBadGateway, OutcomeError, "upstream unavailable", "connect"}
	}
	return Failure{http.StatusBadGateway, OutcomeError, "upstream unavailable", "other"}
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, fill.ErrIdleTimeout) || errors.Is(err, fill.ErrTooSlow) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// DefaultRetryAfter is the Retry-After, in seconds, of a 429 whose origin
// said nothing usable about when to come back.
const DefaultRetryAfter = 30

// maxRetryAfter bounds the Retry-After passed on from an origin: a day.
const maxRetryAfter = 24 * 60 * 60

// RetryAfter returns the seconds a 429 tells its client to wait: the
// origin's Retry-After in header (delay-seconds, or an HTTP-date turned
// into seconds from now; RFC 9110 section 10.2.3), within a day, else
// DefaultRetryAfter. A client gets seconds only: they need no clock in
// common with the origin.
func RetryAfter(header http.Header, now time.Time) int {
	v := strings.TrimSpace(header.Get("Retry-After"))
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return min(n, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		return int(min(max(t.Sub(now).Round(time.Second), 0), maxRetryAfter*time.Second) / time.Second)
	}
	return DefaultRetryAfter
}
