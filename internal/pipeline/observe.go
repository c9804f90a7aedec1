package pipeline

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/fill"
)

// Outcome is what a request turned out to be, for metrics and the access
// log.
type Outcome uint8

const (
	OutcomeNone    Outcome = iota
	OutcomeHit             // served (or redirected) from storage
	OutcomeMiss            // started a fill
	OutcomeJoined          // joined a fill already running
	OutcomeDirect          // proxied without a cache
	OutcomeBlocked         // blocked suffix, or host not allowed
	OutcomeRefused         // upstream address refused
	OutcomeInvalid         // malformed, unknown origin, method not allowed
	OutcomeError           // failed on the mirror's or the origin's side
)

var outcomeNames = [...]string{"none", "hit", "miss", "joined", "direct", "blocked", "refused", "invalid", "error"}

func (o Outcome) String() string { return outcomeNames[o] }

// Exchange is one finished request, as the Observer receives it: built
// from what the stages returned and what the response writer counted.
type Exchange struct {
	Method, Host, Path string // Path as net/http's URL.Path has it, shortened for logs
	Remote             string
	Status             int
	Bytes              int64 // body bytes sent
	Duration           time.Duration
	Outcome            Outcome
	Aborted            bool // the response was cut off
	// Failure is set when the request failed: what the client was told.
	Failure *Failure
}

// Observer receives the pipeline's events. Its methods must be cheap and
// safe for concurrent use.
type Observer interface {
	fill.Observer
	// Timed reports whether requests are timed (Exchange.Duration): the
	// clock is read for nothing else on the hit path. It is asked once,
	// when the pipeline is built.
	Timed(ctx context.Context) bool
	// Exchange is called once for every request served.
	Exchange(ctx context.Context, e *Exchange)
	// UpstreamResponse is called with the time an upstream request took
	// to its response headers.
	UpstreamResponse(d time.Duration)
	// UpstreamError is called for a failed upstream request a client saw
	// (a direct proxy's), with the kind of Failure.
	UpstreamError(kind string)
	// AuthCheck is called with the result of each authorisation check at
	// an origin: allowed, denied, unproven or error.
	AuthCheck(result string)
	// FetcherFallback is called when a miss that another fetcher should
	// have taken (CIDN) falls back to the fill engine.
	FetcherFallback()
	// VariantNotStored is called for a variant served but not stored,
	// past MaxVariants.
	VariantNotStored()
}

type nopObserver struct{}

func (nopObserver) UpstreamBytes(int)                                  {}
func (nopObserver) FillDone(string, int64, bool, error, time.Duration) {}
func (nopObserver) Timed(context.Context) bool                         { return false }
func (nopObserver) Exchange(context.Context, *Exchange)                {}
func (nopObserver) UpstreamResponse(time.Duration)                     {}
func (nopObserver) UpstreamError(string)                               {}
func (nopObserver) AuthCheck(string)                                   {}
func (nopObserver) FetcherFallback()                                   {}
func (nopObserver) VariantNotStored()                                  {}

// finish reports a finished (or aborted) request to the observer.
func (p *Pipeline) finish(w *responseWriter, r *http.Request, host string, start time.Time, res result) {
	status := w.status
	if status == 0 {
		status = http.StatusOK
		if r.Context().Err() != nil {
			status = StatusClientClosedRequest
		}
	}
	e := &w.x
	*e = Exchange{
		Method: r.Method, Host: host, Status: status, Bytes: w.bytes,
		Outcome: res.outcome, Remote: r.RemoteAddr, Aborted: res.abort != nil, Failure: res.failure,
	}
	if !start.IsZero() || res.failure != nil {
		e.Path = LogPath(r.URL.Path)
	}
	if !start.IsZero() {
		e.Duration = time.Since(start)
	}
	p.obs.Exchange(r.Context(), e)
}

// HitSent records a response of ServeHit once the serving loop has sent
// it (sent body bytes; aborted when the connection failed): in the metrics
// and the access log, as ServeHTTP records its responses. It releases
// the object the response was sent from.
func (p *Pipeline) HitSent(req *HitRequest, resp *HitResponse, sent int64, aborted bool) {
	resp.d.Close()
	resp.File = nil
	e := &resp.x
	*e = Exchange{
		Method: req.Method, Host: resp.host, Status: http.StatusOK, Bytes: sent,
		Outcome: resp.outcome, Remote: req.RemoteAddr, Aborted: aborted,
	}
	if !resp.start.IsZero() {
		// The path as net/http's URL.Path has it: unescaped.
		path := req.Path
		if strings.IndexByte(path, '%') >= 0 {
			if p, err := url.PathUnescape(path); err == nil {
				path = p
			}
		}
		e.Path, e.Duration = LogPath(path), time.Since(resp.start)
	}
	p.obs.Exchange(context.Background(), e)
}

// LogPath shortens a request path for logs: a hostile client must not be
// able to write 64 KiB lines into them.
func LogPath(p string) string {
	const max = 256
	if len(p) <= max {
		return p
	}
	return p[:max] + "...(truncated)"
}
