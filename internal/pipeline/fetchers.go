package pipeline

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/fill"
)

// Fetchers are who, besides the fill engine on its own, may fetch what
// storage does not have: a CIDN deployment that stores misses itself, or
// the other replicas of a shared store (a Coordinator). At most one of
// them serves a mirror: CIDN stores each file once for every replica
// itself. The fetch stage asks which one takes a miss (fetcher), in one
// place; everything else of a miss is the same whoever fetches.
type Fetchers struct {
	// CIDN, when set, stores misses (see CIDN).
	CIDN CIDN
	// CIDNNoWait sends a GET whose CIDN transfer still runs to the origin
	// (proxied, not stored) instead of waiting for the transfer.
	CIDNNoWait bool
	// CIDNWaitTimeout bounds the wait for a CIDN transfer; zero: no bound.
	CIDNWaitTimeout time.Duration
	// Coordinator, when set and CIDN is not, shares misses with the other
	// replicas (see Coordinator).
	Coordinator Coordinator
}

// relayed reports whether the fill of key streams another replica's copy.
func (p *Pipeline) relayed(key string) bool {
	_, ok := p.relayedKeys.Load(key)
	return ok
}

// plan is how a miss gets its object, as its fetcher says.
type plan struct {
	// next is Miss for a fill, whose source is src; started is called
	// with the fill once it is known that this request started it.
	// Otherwise the object is stored now (Reopen), the request is proxied
	// (Direct), or it failed (Fail, with err).
	next    Action
	src     fill.Source
	started func(*fill.Fill)
	err     error
}

// plan decides who fetches the miss of d, whose fill would otherwise
// read src (the origin), and returns that fetcher's plan: a request with a
// credential fetches for itself (CIDN's runners fetch without it, and
// another replica's peer endpoint would hand the bytes to anyone holding
// the peer secret, without the origin's word on this credential), as does
// one that CIDN or another replica failed to serve (d.own); otherwise CIDN,
// for objects without variants, or the replicas.
func (p *Pipeline) plan(ctx context.Context, d *Decision, src fill.Source) plan {
	fs := &p.cfg.Fetchers
	switch {
	case d.own || d.Req.Authenticated():
	case fs.CIDN != nil && d.Target.base == "":
		return p.viaCIDN(ctx, d, src)
	case fs.Coordinator != nil && fs.CIDN == nil:
		return p.viaReplicas(ctx, d, src)
	}
	return fromOrigin(ctx, d, src)
}

// fromOrigin: the fill engine fetches from the origin.
func fromOrigin(_ context.Context, _ *Decision, src fill.Source) plan {
	return plan{next: Miss, src: src, started: func(*fill.Fill) {}}
}

// viaReplicas shares the miss with the other replicas: the fill's source
// is the Coordination's, which decides at the fill's first request whether
// the bytes come from the origin (this replica owns the fill) or from the
// replica that does, and, when a stream from that replica breaks, where
// the rest comes from: the replica that fills it now, or the origin once
// this replica took the fill over (the fill then stores the object, see
// fill.Options.Relayed, and serves it to the other replicas).
func (p *Pipeline) viaReplicas(_ context.Context, d *Decision, src fill.Source) plan {
	key := d.Target.key
	c := p.cfg.Fetchers.Coordinator.Coordinate(key, src.Get)
	origin := src.URL
	src.Get = func(ctx context.Context, h http.Header) (*http.Response, error) {
		resp, fromOrigin, err := c.Get(ctx, h)
		if err != nil {
			return resp, err
		}
		if fromOrigin {
			// This replica fetches the object: the peer endpoint serves
			// its fill to the others from now on.
			p.relayedKeys.CompareAndDelete(key, c)
			return resp, nil
		}
		// The response is judged as the origin's answer to this client's
		// request (anonymous: credentialed requests are not shared), not
		// as the answer to the peer request, whose Authorization carries
		// the peer secret. Nor is it cut into segments again: the peer
		// streams it, and the owner fetches it once.
		u, _ := url.Parse(origin)
		resp.Request = (&http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}).
			WithContext(context.WithValue(ctx, peerMark{}, origin))
		resp.Header.Del("Accept-Ranges")
		p.relayedKeys.Store(key, c)
		return resp, nil
	}
	return plan{next: Miss, src: src, started: func(f *fill.Fill) {
		go func() {
			<-f.Done()
			p.relayedKeys.CompareAndDelete(key, c)
			c.Done()
		}()
	}}
}

// peerMark is the context key that marks the responses of coordinated
// fills that did not come from the origin.
type peerMark struct{}

// fromPeer reports whether resp, a fill's response, came from another
// replica or the stored object rather than the origin: the fill then
// streams it without storing it (the replica that fetched it stores it).
func fromPeer(resp *http.Response) bool {
	return resp.Request != nil && resp.Request.Context().Value(peerMark{}) != nil
}

// viaCIDN has CIDN store the miss, then serves the stored object like any
// hit (Reopen).
//
// GET requests wait for the transfer unless CIDNNoWait is set, in which
// case a transfer still running is bypassed: the request is proxied to the
// origin while CIDN goes on storing the file. HEAD requests never wait (a
// HEAD should not take as long as the whole download); they start the
// transfer and are proxied. A client that leaves stops waiting; the
// transfer goes on. When CIDN cannot be asked, the fill engine fetches the
// file, as without CIDN. A transfer that fails because the origin has no
// such file is remembered as the origin's 404 would be.
func (p *Pipeline) viaCIDN(ctx context.Context, d *Decision, src fill.Source) plan {
	fs := &p.cfg.Fetchers
	t := d.Target
	fallback := func(err error) plan {
		p.obs.FetcherFallback()
		p.log.Warn("cidn unavailable; fetching from origin", "key", t.key, "err", err)
		d.own = true
		return fromOrigin(ctx, d, src)
	}
	tr, err := fs.CIDN.Ensure(ctx, t.key, t.url(p.cfg.Scheme))
	if err != nil {
		if ctx.Err() != nil {
			return plan{next: Fail, err: context.Cause(ctx)}
		}
		return fallback(err)
	}
	defer tr.Release()
	if (fs.CIDNNoWait || d.Req.Method == http.MethodHead) && d.Req.Kind != Prefetch {
		select {
		case <-tr.Done():
		default:
			return plan{next: Direct}
		}
	}
	var timeout <-chan time.Time
	if fs.CIDNWaitTimeout > 0 {
		tm := time.NewTimer(fs.CIDNWaitTimeout)
		defer tm.Stop()
		timeout = tm.C
	}
	select {
	case <-tr.Done():
	case <-timeout:
		p.log.Warn("cidn transfer still running after the wait timeout; proxying from origin", "key", t.key, "timeout", fs.CIDNWaitTimeout)
		return plan{next: Direct}
	case <-ctx.Done():
		return plan{next: Fail, err: context.Cause(ctx)}
	}
	switch err := tr.Err(); {
	case err == nil:
		// If the object is not there after all (a bucket lifecycle rule
		// removed it while the finished Blob lived on, or CIDN wrote to
		// another destination), Reopen fetches it from the origin.
		d.own = true
		return plan{next: Reopen}
	case errors.Is(err, ErrCIDNUnavailable):
		return fallback(err)
	default:
		return plan{next: Fail, err: err}
	}
}

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

// Coordinator shares the misses of replicas that serve from one store, so
// that a file several replicas miss at the same time leaves its origin
// once: one replica fetches and stores it, the others stream it from that
// replica as it arrives. Package cluster implements it with leases kept in
// the store (storage.Claimer) and an authenticated peer listener; the
// handler depends on this interface only.
type Coordinator interface {
	// Coordinate starts the coordination of one fill of key, whose bytes
	// would otherwise come from origin (which takes the extra request
	// headers of fill.Source.Get). It does no I/O: the fill's first Get
	// decides where the bytes come from.
	Coordinate(key string, origin func(ctx context.Context, h http.Header) (*http.Response, error)) Coordination
}

// Coordination is one fill's part in the coordination of its key.
type Coordination interface {
	// Get answers the fill's requests in place of the origin, with the
	// same extra headers (Range and If-Range when a broken body is
	// resumed). fromOrigin reports whether the response is the origin's;
	// one that is not (another replica's copy, or the stored object) is
	// streamed to the fill's clients and not stored again. A resume of
	// such a stream may be answered by the origin (this replica took the
	// fill over from a replica that died): the fill then stores the
	// object, and serves it to the other replicas.
	Get(ctx context.Context, h http.Header) (resp *http.Response, fromOrigin bool, err error)
	// Done is called once, after the fill has ended and its object was
	// committed (or the fill failed). Whatever the coordination holds for
	// the key is given up.
	Done()
}
