package httpmirror

import (
	"context"
	"log/slog"
	"time"

	"github.com/httpmirror/httpmirror/internal/pipeline"
)

// observer receives the request pipeline's events and keeps what the
// operators read of them: the metrics, the access log, and the recent
// failures of the status page.
type observer struct {
	fillObserver
	m      *Metrics
	access *AccessLog
	log    *slog.Logger
	errors *errorRing
	now    func() time.Time
}

var _ pipeline.Observer = (*observer)(nil)

// Timed reports whether requests are logged, and so timed.
func (o *observer) Timed(ctx context.Context) bool {
	return o.access != nil || o.log.Enabled(ctx, slog.LevelInfo)
}

// Exchange records a finished request: in the metrics (overall and per
// origin), the recent failures and the access log.
func (o *observer) Exchange(ctx context.Context, e *pipeline.Exchange) {
	o.m.request(e.Outcome, e.Status, e.Bytes)
	o.m.origin(e)
	if f := e.Failure; f != nil {
		o.errors.add(o.now(), e, f)
	}
	if !o.Timed(ctx) {
		return // no access log
	}
	if o.access != nil {
		o.access.write(time.Now(), e)
		return
	}
	attrs := [...]slog.Attr{
		slog.String("method", e.Method),
		slog.String("host", e.Host),
		slog.String("path", e.Path),
		slog.Int("status", e.Status),
		slog.Int64("bytes", e.Bytes),
		slog.Duration("duration", e.Duration),
		slog.String("outcome", e.Outcome.String()),
		slog.String("remote", e.Remote),
		slog.Bool("aborted", true),
	}
	n := len(attrs)
	if !e.Aborted {
		n--
	}
	o.log.LogAttrs(ctx, slog.LevelInfo, "request", attrs[:n]...)
}

func (o *observer) UpstreamResponse(d time.Duration) { o.m.upstreamResponse(d) }
func (o *observer) UpstreamError(kind string)        { o.m.upstreamError(kind) }
func (o *observer) AuthCheck(result string)          { o.m.authCheck(result) }
func (o *observer) FetcherFallback()                 { o.m.cidnFallback() }
func (o *observer) VariantNotStored()                { o.m.variantNotStored() }
