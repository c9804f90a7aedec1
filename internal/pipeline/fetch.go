package pipeline

import (
	"context"
	"errors"
	"net/http"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
)

// fetch acts on a Miss or a Refetch decision: it starts (or joins) the
// object's fill and serves it. A miss is fetched by whoever its fetcher
// says (fetchers.go); a refetch, which replaces an object the origin
// changed, always by the fill engine from the origin.
func (p *Pipeline) fetch(w *responseWriter, r *http.Request, d *Decision) step {
	src := p.source(d.Target, d.Req)
	var f *fill.Fill
	var joined bool
	if d.Action == Refetch {
		f, joined = p.fills.Refetch(d.Target.key, src)
	} else {
		pl := p.plan(r.Context(), d, src)
		if pl.next != Miss {
			// Not the fill engine's: the object is stored now, or the
			// request is proxied, or it failed.
			d.Action, d.Err = pl.next, pl.err
			p.remember(d, pl.err)
			return step{outcome: OutcomeMiss, next: d}
		}
		pl.src.Want = d.Req.rangeStart()
		f, joined = p.fills.Miss(d.Target.key, pl.src)
		if !joined {
			pl.started(f)
		}
	}
	s := p.serveFetch(w, r, d, f, fillOutcome(joined))
	if d.Fill != f {
		f.Release() // unless the next decision serves it
	}
	return s
}

// fillOutcome is what a request that started a fill (joined false), or
// joined one another request started, counts as.
func fillOutcome(joined bool) Outcome {
	if joined {
		return OutcomeJoined
	}
	return OutcomeMiss
}

// serveFetch serves the fill f of d's target, which the request started
// or joined (outcome): the object as it arrives,
// or, without TeeResponse, the stored object once the fill is done (the
// next decision, Reopen, then holds f). A
// fill the mirror cannot spool or store (too large, no disk) leaves the
// client to the origin; one that brings another variant than the client's
// leads to that variant; one another client started that the origin
// refused is asked again with this client's credential.
func (p *Pipeline) serveFetch(w *responseWriter, r *http.Request, d *Decision, f *fill.Fill, outcome Outcome) step {
	ctx := r.Context()
	info, err := f.Header(ctx)
	if errors.Is(err, fill.ErrTooLarge) || errors.Is(err, fill.ErrSpool) {
		// Over --max-object-size, or no local disk to spool on: the client
		// is served straight from the origin, nothing is kept.
		d.Action = Direct
		return step{next: d}
	}
	if err != nil {
		if outcome == OutcomeJoined && !d.retried && deniedToOthers(d.Req, err) {
			// The fill was another client's, and the origin refused
			// that client: this one asks with its own credential (or
			// without the other's), once. A revalidation asks again
			// for the object it would replace.
			if d.Action == Revalidate {
				d.Action = Refetch
			}
			d.retried = true
			return step{next: d}
		}
		p.remember(d, err)
		return step{outcome: outcome, next: d.fail(err)}
	}
	if vt, other := p.variant(d.Req, d.Target, info); other {
		// The origin negotiated, and the request asked for another
		// variant than the one this fill brings.
		d.Target, d.Action = vt, Reopen
		return step{next: d}
	}
	if info.Header[policy.AuthHeader] != nil {
		// Fetched with a credential: only clients the origin authorises
		// read it (the one whose credential fetched it is).
		d.Info = info
		if next := p.authorise(ctx, d); next != Hit {
			d.Action = next
			return step{outcome: outcome, next: d}
		}
	}
	if !p.cfg.TeeResponse {
		if err := f.Wait(ctx); err != nil {
			return step{outcome: outcome, next: d.fail(err)}
		}
		if f.Stored() {
			// Served as the hit it now is; should the store fail to
			// open it, the complete spool still serves this client.
			d.Action, d.Fill = Reopen, f
			return step{next: d}
		}
	}
	return served(outcome, d, p.serveFill(w, r, d.Target, f, info))
}

// remember records what a fetch that produced no object tells about the
// origin: its 404 or 410 to an anonymous request is remembered (the
// negative cache), and the object a revalidation would have replaced is
// removed, since the origin no longer has it. A CIDN transfer that found
// no such file counts as such an answer.
func (p *Pipeline) remember(d *Decision, err error) {
	code := 0
	var se *fill.StatusError
	var ce *CIDNError
	switch {
	case errors.As(err, &se):
		code = se.Code
	case errors.As(err, &ce):
		code = ce.status()
	}
	if (code != http.StatusNotFound && code != http.StatusGone) || d.Req.Authenticated() {
		return
	}
	p.negatives.remember(d.Target.key, code, p.now(), p.cfg.NegativeTTL)
	if d.Action == Revalidate {
		p.store.Delete(context.Background(), d.Target.key)
	}
}

// deniedToOthers reports whether err, the failure of a fill that r
// joined, may not be r's answer: the origin refused the credential of the
// client that started the fill (or its lack of one), which says nothing
// about r's; and a 404 or 410 says nothing to a request with a credential,
// since origins hide private files that way.
func deniedToOthers(r *Request, err error) bool {
	var se *fill.StatusError
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusProxyAuthRequired:
		return true
	case http.StatusNotFound, http.StatusGone:
		return r.Authenticated()
	}
	return false
}

// source returns the origin of t for the fill engine, with the request
// headers of r that a fill forwards (see forwardedHeaders). The origin's
// answers to r's credential are remembered for authorisation (learnAuth),
// a GET's only: a HEAD, which a fill sends for a segmented object's
// digests, may be refused where a GET is not (a URL signed for GET that
// a redirect leads to), and says nothing of the credential then.
func (p *Pipeline) source(t Target, r *Request) fill.Source {
	u := t.url(p.cfg.Scheme)
	fwd := forwardedHeaders(r, t)
	var k authKey
	_, authenticated := fwd["Authorization"]
	if authenticated {
		k = authKeyOf(r, t)
	}
	send := func(ctx context.Context, method string, h http.Header) (*http.Response, error) {
		hdr := make(http.Header, len(fwd)+len(h))
		copyHeader(hdr, fwd)
		copyHeader(hdr, h)
		resp, err := p.upstream(ctx, method, u, hdr)
		if err == nil && authenticated && method == http.MethodGet {
			p.learnAuth(k, resp)
		}
		return resp, err
	}
	return fill.NewSource(u, send)
}
