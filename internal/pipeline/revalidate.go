package pipeline

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// revalidate acts on a Revalidate decision: it asks the origin whether the
// stale object d.Obj is still current, with its validators, and serves
// what follows: the object itself when the origin confirms it (304) or
// cannot be reached and the object may be served stale (the next
// decision, see stale), else the new object as it arrives.
func (p *Pipeline) revalidate(w *responseWriter, r *http.Request, d *Decision) step {
	ctx := r.Context()
	f, joined := p.fills.Revalidate(d.Target.key, p.source(d.Target, d.Req), policy.Validators(d.Info))
	outcome := fillOutcome(joined)
	if _, err := f.Header(ctx); err != nil && ctx.Err() == nil {
		if next := p.stale(ctx, d, err, outcome); next != nil {
			f.Release()
			return step{next: next}
		}
	}
	d.Close()
	s := p.serveFetch(w, r, d, f, outcome)
	if d.Fill != f {
		f.Release() // unless the next decision serves it
	}
	return s
}

// stale decides what a revalidation, which the request started or joined
// (outcome), that did not produce a new object serves: the stored object when the origin confirmed it (304), or when
// the origin failed and the object may be served stale (RFC 9111 section
// 4.2.4; stale-if-error); a 504 when it may not. Nil means the fill's own
// answer stands (the origin answered 404, or the mirror stops).
func (p *Pipeline) stale(ctx context.Context, d *Decision, err error, outcome Outcome) *Decision {
	var nm *fill.NotModifiedError
	var se *fill.StatusError
	t := d.Target
	switch {
	case errors.As(err, &nm):
		info := policy.Refreshed(d.Info, nm.Header, p.now())
		if outcome == OutcomeMiss {
			// One refresh per revalidation: the request that started it.
			err := p.store.(storage.Refresher).Refresh(context.WithoutCancel(ctx), t.key, info)
			if err != nil && !errors.Is(err, storage.ErrNotSupported) {
				p.log.Warn("refreshing revalidated object failed", "key", t.key, "err", err)
			}
		}
		d.Obj, d.Info = withInfo{d.Obj, info}, info
		d.Fresh, d.hot = p.freshness(t, info)
	case errors.As(err, &se) && se.Code < 500:
		return nil // the origin answered: 404 and others go to the client
	case errors.Is(err, fill.ErrShutdown), errors.Is(err, fill.ErrCancelled):
		return nil // the mirror stops, or a purge removes the object
	case p.cfg.Rules.Freshness(t.ruleKey(), d.Info).MustRevalidate:
		p.log.Warn("revalidation failed; object may not be served stale", "key", t.key, "err", err)
		d.Close()
		return d.fail(&staleError{cause: err})
	default:
		p.log.Warn("revalidation failed; serving stale object", "key", t.key, "err", err)
	}
	return p.hitOrRedirect(ctx, d)
}

// withInfo is a stored object served with updated metadata: a revalidated
// object's, before (or without) the store's refresh.
type withInfo struct {
	storage.Object
	info storage.Info
}

func (o withInfo) Info() storage.Info { return o.info }

// changedAtOrigin reports whether the origin now has a file of another size
// than info. It asks at most once at a time per key, within
// CheckSyncTimeout; when the origin cannot say, the cache is trusted.
func (p *Pipeline) changedAtOrigin(ctx context.Context, r *Request, t Target, info storage.Info) bool {
	// The variant's representation, with the client's credential: the
	// size of another variant, or a 401, says nothing about this one.
	fwd := forwardedHeaders(r, t)
	v, err, _ := p.syncs.Do(t.key, func() (any, error) {
		// Shared by every request of the key: not bound to the first one.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.CheckSyncTimeout)
		defer cancel()
		resp, err := p.upstream(cctx, http.MethodHead, t.url(p.cfg.Scheme), fwd)
		if err != nil {
			return int64(-1), err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return int64(-1), &fill.StatusError{Code: resp.StatusCode}
		}
		return resp.ContentLength, nil
	})
	if err != nil {
		p.log.Info("origin check failed; serving cache", "key", t.key, "err", err)
		return false
	}
	size := v.(int64)
	if size >= 0 && size != info.Size {
		p.log.Info("origin size changed; refetching", "key", t.key, "cached", info.Size, "origin", size)
		return true
	}
	return false
}

// errMustRevalidate: a stale object that must not be served stale could
// not be revalidated. 504, as RFC 9111 section 4.2.4 asks; the client
// message says what the origin did (see staleError).
var errMustRevalidate = errors.New("stale object could not be revalidated")

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
