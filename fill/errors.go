package fill

import (
	"errors"
	"fmt"
	"net/http"
)

var (
	// ErrNotOK is matched by every *StatusError.
	ErrNotOK = errors.New("http status not ok")

	// ErrOriginChanged is returned when a resumed download shows that the
	// origin's object changed since the fill began.
	ErrOriginChanged = errors.New("fill: origin object changed during download")

	// ErrShortBody is returned when the origin's body ended before its
	// Content-Length.
	ErrShortBody = errors.New("fill: upstream body shorter than Content-Length")

	// ErrIdleTimeout is returned when the origin sent no bytes for longer
	// than the Group's IdleTimeout.
	ErrIdleTimeout = errors.New("fill: upstream body idle timeout")

	// ErrShutdown is returned for fills aborted by Group.Shutdown.
	ErrShutdown = errors.New("fill: server shutting down")

	// ErrNotModified is matched by *NotModifiedError.
	ErrNotModified = errors.New("fill: not modified")

	// ErrTooSlow is returned when the origin's body arrived below the
	// Group's MinRate.
	ErrTooSlow = errors.New("fill: upstream body below the minimum rate")

	// ErrTooLarge is returned when the object is larger than the Group's
	// MaxObjectSize.
	ErrTooLarge = errors.New("fill: object larger than the size limit")

	// ErrSpool is matched by the error of a fill that could not keep the
	// bytes on local disk (neither in storage nor in a spool file):
	// readers get every byte that arrived before it, and must get the rest
	// elsewhere (from the origin).
	ErrSpool = errors.New("fill: cannot spool the body")

	// errNotStorable: the response may not be cached; its fill streams it
	// from a temporary spool.
	errNotStorable = errors.New("response not storable")
)

// NotModifiedError ends a revalidating fill whose origin answered 304 Not
// Modified: the stored object is still current. Header holds the 304's
// headers, which may update the stored ones (RFC 9111 section 4.3.4).
type NotModifiedError struct {
	Header http.Header
}

func (e *NotModifiedError) Error() string { return "upstream 304 not modified" }

// Is makes errors.Is(err, ErrNotModified) true.
func (e *NotModifiedError) Is(target error) bool { return target == ErrNotModified }

// StatusError is the result of a fill whose origin answered with a status
// other than 200 OK. Header holds the origin's response headers.
type StatusError struct {
	Code   int
	Header http.Header
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream status %d %s", e.Code, http.StatusText(e.Code))
}

// Is makes errors.Is(err, ErrNotOK) true.
func (e *StatusError) Is(target error) bool { return target == ErrNotOK }
