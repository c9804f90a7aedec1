package pipeline

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httpmirror/httpmirror/fill"
)

// step is what a stage did: the outcome the request counts as (OutcomeNone
// leaves it as it was), and the decision to act on next; nil when the
// request is answered, or its response aborted (abort).
type step struct {
	outcome Outcome
	next    *Decision
	abort   *abortError
}

// served is the step of a stage that served d with outcome, and got err
// from sending it: an abort, a failure before anything was sent (the next
// decision answers it), or nothing.
func served(outcome Outcome, d *Decision, err error) step {
	var ae *abortError
	switch {
	case err == nil:
		return step{outcome: outcome}
	case errors.As(err, &ae):
		return step{outcome: outcome, abort: ae}
	}
	return step{outcome: outcome, next: d.fail(err)}
}

// maxSteps bounds the decisions one request goes through. The longest
// path is a revalidation whose fill another credential started (a retry),
// that brings another variant (a lookup of it), stored without
// TeeResponse (a reopen), then served: five.
const maxSteps = 8

// ServeHTTP serves r: with the decision the hit loop made for it, when it
// handed r over (see Handover), else with Lookup's. The dispatcher acts
// on it, and the Observer receives the exchange once it is over, aborted
// or not.
func (p *Pipeline) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var start time.Time
	if p.timed {
		start = time.Now()
	}
	// The request's state lives in a pooled writer: a hit allocates
	// nothing of its own here.
	rw := writers.Get().(*responseWriter)
	rw.ResponseWriter, rw.status, rw.bytes = w, 0, 0
	req := &rw.req
	req.set(r)
	d := takeHandover(ctx, req)
	if d == nil {
		d = &rw.d
		*d = Decision{Req: req}
		p.lookup(ctx, d)
	}
	host := d.Target.host
	res := p.dispatch(rw, r, d)
	if res.abort != nil && ctx.Err() == nil {
		p.log.Warn("response aborted", "key", res.abort.what, "err", res.abort.err)
	}
	p.finish(rw, r, host, start, res)
	rw.ResponseWriter, rw.req, rw.d = nil, Request{}, Decision{}
	writers.Put(rw)
	if res.abort != nil {
		// net/http closes the connection without ending the body.
		panic(http.ErrAbortHandler)
	}
}

// result is what the dispatcher reports of a request.
type result struct {
	outcome Outcome
	failure *Failure
	abort   *abortError // the response was cut off
}

// dispatch acts on d, and on each decision a stage returns after it, until
// the request is answered.
func (p *Pipeline) dispatch(w *responseWriter, r *http.Request, d *Decision) result {
	outcome := d.Outcome
	for range maxSteps {
		var s step
		switch d.Action {
		case Fail:
			f := p.fail(w, r, d)
			if f.Outcome != OutcomeNone {
				outcome = f.Outcome
			}
			return result{outcome: outcome, failure: f.recorded()}
		case Direct:
			s = p.direct(w, r, d)
		case Hit:
			s = p.sendObject(w, r, d)
		case Redirect:
			s = p.sendRedirect(w, r, d)
		case Revalidate:
			s = p.revalidate(w, r, d)
		case Miss, Refetch:
			s = p.fetch(w, r, d)
		case Stream:
			s = p.streamFill(w, r, d)
		case Reopen:
			s = step{next: p.reopen(r.Context(), d)}
		case NotFilling:
			http.Error(w, "not filling this key", StatusNotFilling)
			return result{outcome: outcome}
		}
		if s.outcome != OutcomeNone {
			outcome = s.outcome
		}
		if s.next == nil {
			return result{outcome: outcome, abort: s.abort}
		}
		d = s.next
	}
	// A decision that keeps leading to another is a bug, not a client's
	// doing.
	d.Close()
	p.log.Error("request went through too many decisions", "key", d.Target.key, "action", d.Action)
	f := p.fail(w, r, (&Decision{Req: d.Req}).fail(errors.New("too many decisions")))
	return result{outcome: OutcomeError, failure: f.recorded()}
}

// reopen acts on a Reopen: it looks up d's target in storage again. A
// fill that stored the object serves it when storage cannot.
func (p *Pipeline) reopen(ctx context.Context, d *Decision) *Decision {
	f := d.Fill
	d.Fill = nil
	d = p.lookupStored(ctx, d)
	if f == nil {
		return d
	}
	if d.Action != Miss {
		f.Release()
		return d
	}
	p.log.Error("storage cannot give a stored object; serving the fill's copy", "key", d.Target.key)
	info, err := f.Header(ctx)
	if err != nil {
		f.Release()
		return d.fail(err)
	}
	d.Action, d.Fill, d.Info = Stream, f, info
	return d
}

// streamFill acts on a Stream: the fill d.Fill, as it arrives.
func (p *Pipeline) streamFill(w *responseWriter, r *http.Request, d *Decision) step {
	defer d.Close()
	return served(OutcomeNone, d, p.serveFill(w, r, d.Target, d.Fill, d.Info))
}

// fail answers a Fail decision with the Failure its error maps to (see
// Classify), unless the client is gone, and returns the Failure. The
// error's detail goes to the log only.
func (p *Pipeline) fail(w *responseWriter, r *http.Request, d *Decision) Failure {
	err := d.Err
	f := Classify(r.Context(), err)
	if errors.Is(err, errNoTarget) {
		if p.cfg.NotFound != nil {
			p.cfg.NotFound.ServeHTTP(w, r)
		} else {
			http.NotFound(w, r)
		}
		f.Status = 0 // not a failure to record: the request named nothing
		return f
	}
	lvl := p.log.Warn
	if f.Status < 500 {
		lvl = p.log.Debug
	}
	lvl("request failed", "method", r.Method, "path", LogPath(r.URL.Path), "status", f.Status, "err", err)
	if f.Status == StatusClientClosedRequest {
		return f
	}
	h := w.Header()
	for _, k := range []string{"Etag", "Last-Modified", "Content-Type", "Content-Encoding", "Cache-Control", "Age"} {
		h.Del(k)
	}
	var se *fill.StatusError
	switch {
	case f.Status == http.StatusMethodNotAllowed:
		h.Set("Allow", "GET, HEAD")
	case (f.Status == http.StatusUnauthorized || f.Status == http.StatusProxyAuthRequired) && errors.As(err, &se):
		// The client needs the origin's challenge to know how to
		// authenticate (RFC 9110 section 11.6.1).
		if v := se.Header.Values("Www-Authenticate"); len(v) > 0 {
			h["Www-Authenticate"] = v
		}
	case f.Status == http.StatusTooManyRequests:
		// A client told to slow down needs to know for how long (RFC 6585
		// section 4): the origin's word, else a default.
		var origin http.Header
		if errors.As(err, &se) {
			origin = se.Header
		}
		h.Set("Retry-After", strconv.Itoa(RetryAfter(origin, p.now())))
	}
	http.Error(w, f.Message, f.Status)
	return f
}

// recorded returns f for the observer's record of recent failures: nil
// when the request named nothing or the client left.
func (f Failure) recorded() *Failure {
	if f.Status == 0 || f.Status == StatusClientClosedRequest {
		return nil
	}
	return &f
}

// responseWriter counts what a response sent: its status and body bytes,
// for the Exchange. It keeps ReadFrom, so bodies from local files still go
// out through sendfile, and Unwrap, so http.ResponseController reaches the
// connection.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64

	// The request's own state, kept with the writer so that the pool
	// recycles it: the request, its decision, its exchange.
	req Request
	d   Decision
	x   Exchange
}

var writers = sync.Pool{New: func() any { return new(responseWriter) }}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(w.ResponseWriter, src)
	}
	w.bytes += n
	return n, err
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Handover carries the decision of a request the hit loop declined to
// net/http, which serves the connection from then on: the decision, with
// what its lookup opened, serves the request, so that nothing is resolved
// or opened twice. The loop takes it from its response
// (HitResponse.Handover) with the connection it hands over;
// the connection's context carries it (Context); the connection closes it.
type Handover struct{ d atomic.Pointer[Decision] }

type handoverKey struct{}

// Context returns ctx carrying h, for the connection's requests.
func (h *Handover) Context(ctx context.Context) context.Context {
	return context.WithValue(ctx, handoverKey{}, h)
}

// Close releases the decision if no request took it (net/http refused the
// request before its handler ran).
func (h *Handover) Close() {
	if d := h.d.Swap(nil); d != nil {
		d.Close()
	}
}

// takeHandover returns the decision handed over with the connection of
// ctx, once, if it is req's; a decision for another request (net/http
// parsed the bytes otherwise than the loop) is released, and the request
// looked up anew.
func takeHandover(ctx context.Context, req *Request) *Decision {
	h, _ := ctx.Value(handoverKey{}).(*Handover)
	if h == nil {
		return nil
	}
	d := h.d.Swap(nil)
	if d == nil {
		return nil
	}
	if !d.Req.same(req) {
		d.Close()
		return nil
	}
	d.Req = req
	return d
}
