package httpmirror

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// CIDN hands cache misses to a CIDN deployment (Content Intelligent
// Distribution Network, OpenCIDN/cidn): a fleet of runners that copies files
// from their origins into the S3 bucket the mirror serves from, in parallel
// chunks. Package cidn implements it with a Kubernetes client; the handler
// depends on this interface only, so that serving files does not pull in
// Kubernetes.
type CIDN interface {
	// Ensure makes sure that a CIDN transfer of sourceURL into the object
	// the storage backend keeps under key is under way, starting one unless
	// another request or another mirror replica did, and returns it once
	// CIDN has accepted or confirmed it. An error matching
	// ErrCIDNUnavailable means CIDN could not be asked; the caller then
	// fetches the file itself. Ensure is safe for concurrent use.
	Ensure(ctx context.Context, key, sourceURL string) (CIDNTransfer, error)
}

// CIDNTransfer is a CIDN transfer that a request follows.
type CIDNTransfer interface {
	// Done is closed when the transfer has ended.
	Done() <-chan struct{}
	// Err reports, once Done is closed, how the transfer ended: nil when
	// the object is stored; a *CIDNError when CIDN gave up on it; an error
	// matching ErrCIDNDeleted when the transfer was deleted before it
	// ended; one matching ErrCIDNUnavailable when CIDN could no longer be
	// followed (the client was closed).
	Err() error
	// Release tells that the caller stops following the transfer, which
	// goes on regardless. It is called once, after Ensure returned the
	// transfer.
	Release()
}

var (
	// ErrCIDNUnavailable is matched by the errors of CIDN transfers that
	// could not be started or followed (the API server is unreachable or
	// refuses the request). The mirror then fetches the file itself.
	ErrCIDNUnavailable = errors.New("cidn unavailable")

	// ErrCIDNDeleted is matched by the error of a CIDN transfer whose Blob
	// was deleted before it succeeded or failed. 502.
	ErrCIDNDeleted = errors.New("cidn transfer deleted before it ended")
)

// CIDNError is how a CIDN transfer that failed ends: 502 Bad Gateway with
// the failure's message, or the origin's 404 or 410 when the failure says
// the file does not exist there.
type CIDNError struct {
	// Message is the failure as CIDN reported it.
	Message string
	// SourceStatus is the status the origin answered when the failure
	// names one, else 0.
	SourceStatus int
}

func (e *CIDNError) Error() string {
	if e.Message == "" {
		return "cidn transfer failed"
	}
	return "cidn transfer failed: " + e.Message
}

// status returns the status a client gets for the failure.
func (e *CIDNError) status() int {
	if e.SourceStatus == http.StatusNotFound || e.SourceStatus == http.StatusGone {
		return e.SourceStatus
	}
	return http.StatusBadGateway
}

// clientText is the failure as a client sees it: one line of printable
// ASCII, at most 200 bytes. The message comes from CIDN's runners and
// describes the download (an origin status, a size mismatch); it is the
// one error detail the mirror passes on, because without it a client of a
// mirror that delegates downloads cannot tell why a file failed.
func (e *CIDNError) clientText() string {
	const max = 200
	var b strings.Builder
	b.WriteString("cidn transfer failed")
	if e.Message != "" {
		b.WriteString(": ")
		for i := 0; i < len(e.Message) && b.Len() < max; i++ {
			c := e.Message[i]
			if c < ' ' || c >= 0x7f {
				c = ' '
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

// viaCIDN serves a miss by having CIDN store the file, then serving the
// stored object like any hit: a redirect to a signed URL, or the bytes with
// NoRedirect.
//
// GET requests wait for the transfer unless CIDNNoWait is set, in which
// case a transfer still running is bypassed: the request is proxied to the
// origin while CIDN goes on storing the file. HEAD requests never wait (a
// HEAD should not take as long as the whole download); they start the
// transfer and are proxied. A client that leaves stops waiting; the
// transfer goes on. When CIDN cannot be asked, the built-in fill engine
// fetches the file, as without CIDN.
func (m *MirrorHandler) viaCIDN(w *recorder, r *http.Request, t target) {
	ctx := r.Context()
	// A miss until the stored object is served, which counts as a hit.
	w.outcome = outcomeMiss
	tr, err := m.CIDN.Ensure(ctx, t.key, t.url(m.scheme))
	if err != nil {
		if ctx.Err() != nil {
			m.fail(w, r, context.Cause(ctx))
			return
		}
		m.cidnFallback(w, r, t, err)
		return
	}
	defer tr.Release()
	if m.CIDNNoWait || r.Method == http.MethodHead {
		select {
		case <-tr.Done():
		default:
			w.outcome = outcomeDirect
			m.direct(w, r, t)
			return
		}
	}
	var timeout <-chan time.Time
	if m.CIDNWaitTimeout > 0 {
		tm := time.NewTimer(m.CIDNWaitTimeout)
		defer tm.Stop()
		timeout = tm.C
	}
	select {
	case <-tr.Done():
	case <-timeout:
		m.log.Warn("cidn transfer still running after the wait timeout; proxying from origin", "key", t.key, "timeout", m.CIDNWaitTimeout)
		w.outcome = outcomeDirect
		m.direct(w, r, t)
		return
	case <-ctx.Done():
		m.fail(w, r, context.Cause(ctx))
		return
	}
	var ce *CIDNError
	switch err := tr.Err(); {
	case err == nil:
	case errors.Is(err, ErrCIDNUnavailable):
		m.cidnFallback(w, r, t, err)
		return
	case errors.As(err, &ce) && ce.status() != http.StatusBadGateway:
		if ttl := m.negativeTTL(); ttl > 0 {
			m.negatives.put(t.key, ce.status(), m.now(), ttl)
		}
		m.fail(w, r, err)
		return
	default:
		m.fail(w, r, err)
		return
	}
	obj, err := m.store.Open(ctx, t.key)
	if err != nil {
		if ctx.Err() != nil {
			m.fail(w, r, context.Cause(ctx))
			return
		}
		// CIDN reported success but the object is not there (a bucket
		// lifecycle rule removed it while the finished Blob lived on, or
		// CIDN wrote to another destination): never fail the request for
		// it.
		if errors.Is(err, storage.ErrNotFound) {
			m.log.Warn("cidn transfer succeeded but the object is not in storage; fetching from origin", "key", t.key)
		} else {
			m.log.Error("storage open failed after cidn transfer; fetching from origin", "key", t.key, "err", err)
		}
		m.miss(w, r, t)
		return
	}
	m.serveObject(w, r, t, obj)
}

// cidnFallback fetches t with the fill engine because CIDN could not be
// asked.
func (m *MirrorHandler) cidnFallback(w *recorder, r *http.Request, t target, err error) {
	m.Metrics.cidnFallback()
	m.log.Warn("cidn unavailable; fetching from origin", "key", t.key, "err", err)
	m.miss(w, r, t)
}
