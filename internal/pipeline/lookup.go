package pipeline

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// Action is what a Decision sends.
type Action uint8

const (
	// Fail answers Err, classified (errors.go).
	Fail Action = iota
	// Direct proxies the request to its origin; nothing is kept.
	Direct
	// Hit serves the stored object Obj.
	Hit
	// Redirect answers 302 to URL, a signed link to the stored object.
	Redirect
	// Revalidate asks the origin about the stale stored object Obj, and
	// serves it or what replaces it.
	Revalidate
	// Miss fetches an object storage does not have; who fetches it is the
	// fetch stage's decision (fetchers.go).
	Miss
	// Refetch fetches the object again, whatever storage holds: the origin
	// has one of another size (CheckSyncTimeout).
	Refetch
	// Stream serves the fill in progress Fill, whose object's metadata is
	// Info: to a peer replica that joined it (LookupPeer), or to a client
	// when storage cannot give the object the fill stored.
	Stream
	// Reopen looks up Target in storage again: the object is stored now
	// (a CIDN transfer, or a fill without TeeResponse, stored it). If it
	// cannot be opened, the fill Fill still serves it, or, without one,
	// the fill engine fetches it (own).
	Reopen
	// NotFilling tells a peer replica this one has nothing for it (421).
	NotFilling
)

// Decision is what one request gets: the result of Lookup, acted on by
// the dispatcher. It holds what Lookup opened (an object, a fill), which
// the stage that serves it uses and Close releases, so that nothing is
// resolved or opened twice, even when the hit loop hands the request to
// net/http.
type Decision struct {
	Action Action
	Req    *Request
	Target Target
	// Obj is the stored object (Hit, Revalidate), with its metadata Info
	// (Info alone for Redirect and Stream) and freshness Fresh.
	Obj   storage.Object
	Info  storage.Info
	Fresh policy.Freshness
	hot   *hotHeader // the object's prebuilt header, if it is hot
	// URL is Redirect's signed link.
	URL string
	// Fill is Stream's fill, and Reopen's when it has one.
	Fill *fill.Fill
	// Err is Fail's error, and Outcome what the request counts as when
	// it fails (OutcomeNone: as Classify says).
	Err     error
	Outcome Outcome
	// retried: a Miss that retries, with the client's own credential, a
	// fill another client started and the origin refused (see fetch).
	retried bool
	// own: a Miss the fill engine fetches from the origin itself, because
	// the fetcher that should have (CIDN) could not (see fetcher).
	own bool
	// taken: the hit loop answered the request (see HitResponse).
	taken bool
}

// fail makes d a Fail of err.
func (d *Decision) fail(err error) *Decision {
	d.Action, d.Err = Fail, err
	return d
}

// Close releases the object and the fill d holds, if any.
func (d *Decision) Close() {
	if d.Obj != nil {
		d.Obj.Close()
		d.Obj = nil
	}
	if d.Fill != nil {
		d.Fill.Release()
		d.Fill = nil
	}
}

// Lookup decides what req gets, in one pass: the method, the target
// (target.go), the origin's remembered 404, the stored object or the
// variant the request selects (vary.go), whether the client may have it
// (auth.go), its freshness, the origin's size (CheckSyncTimeout), and a
// signed redirect where the store gives one. Every entry point starts here:
// the hit loop (ServeHit), net/http (ServeHTTP), prefetch (Kind Prefetch)
// and the peer endpoint (LookupPeer).
func (p *Pipeline) Lookup(ctx context.Context, req *Request) *Decision {
	d := &Decision{Req: req}
	p.lookup(ctx, d)
	return d
}

// lookup is Lookup into d, whose Req is set.
func (p *Pipeline) lookup(ctx context.Context, d *Decision) *Decision {
	req := d.Req
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return d.fail(errMethodNotAllowed)
	}
	if req.fragment {
		// net/http escapes it; the client sent a '#' (see cleanPath).
		return d.fail(errBadRequest)
	}
	t, err := p.cfg.Hosts.resolve(p.cfg.Hosts.Mode, req.Path, req.RawQuery, req.Host)
	if err != nil {
		return d.fail(err)
	}
	d.Target = t
	if p.store == nil {
		d.Action = Direct
		return d
	}
	// What the origin told anyone is no answer for a credential: a
	// private file is 404 to the anonymous.
	if code, ok := p.negatives.get(t.key, p.now); ok && !req.Authenticated() {
		d.Outcome = OutcomeHit
		return d.fail(&fill.StatusError{Code: code})
	}
	return p.lookupStored(ctx, d)
}

// lookupStored decides d, whose target is resolved, by what storage holds.
func (p *Pipeline) lookupStored(ctx context.Context, d *Decision) *Decision {
	obj, err := p.store.Open(ctx, d.Target.key)
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrNotFound):
		d.Action = Miss
		return d
	case ctx.Err() != nil:
		return d.fail(context.Cause(ctx))
	default:
		// A failing store must not fail the request: the fill engine
		// fetches from the origin and serves from its spool.
		p.log.Error("storage open failed; fetching from origin", "key", d.Target.key, "err", err)
		d.Action = Miss
		return d
	}
	info := obj.Info()
	vt, other := p.variant(d.Req, d.Target, info)
	d.Target = vt
	if other {
		// The request selects another variant than the one stored under
		// the object's key: its own key decides.
		obj.Close()
		return p.lookupStored(ctx, d)
	}
	d.Obj, d.Info = obj, info
	return p.decideStored(ctx, d)
}

// decideStored decides d by the stored object of its target (d.Obj, with
// its metadata d.Info): whether the client may have it, whether it is
// fresh, whether the origin still has one of its size (CheckSyncTimeout),
// and how it is sent.
func (p *Pipeline) decideStored(ctx context.Context, d *Decision) *Decision {
	req, info := d.Req, d.Info
	if req.Kind == Prefetch {
		d.Action = Hit // stored: the prefetch is done
		return d
	}
	// An object that needs authorisation goes to authorised clients only,
	// and only they may revalidate it: an origin's 404 to another
	// credential must not remove it.
	if info.Header[policy.AuthHeader] != nil {
		if next := p.authorise(ctx, d); next != Hit {
			d.Close()
			d.Action = next
			return d
		}
	}
	// An object an operator invalidated is stale here, whatever its
	// headers say (policy.InvalidatedHeader): the freshness says so.
	d.Fresh, d.hot = p.freshness(d.Target, info)
	if d.Fresh.Mutable && d.Fresh.Stale(info.StoredAt, p.now()) {
		d.Action = Revalidate
		return d
	}
	if p.cfg.CheckSyncTimeout > 0 && p.changedAtOrigin(ctx, req, d.Target, info) {
		d.Close()
		d.Action = Refetch
		return d
	}
	return p.hitOrRedirect(ctx, d)
}

// hitOrRedirect decides how d's stored object, which the client may have
// as it is, is sent: a redirect to a signed URL when the store gives one
// (GET only, without NoRedirect), else its bytes.
func (p *Pipeline) hitOrRedirect(ctx context.Context, d *Decision) *Decision {
	if !p.cfg.NoRedirect && d.Req.Method == http.MethodGet {
		u, err := p.store.(storage.Redirector).SignedURL(ctx, d.Target.key, http.MethodGet, p.cfg.LinkExpires)
		if err == nil && u != "" {
			d.Close()
			d.Action, d.URL = Redirect, u
			return d
		}
		if err != nil {
			p.log.Warn("signing URL failed; serving bytes", "key", d.Target.key, "err", err)
		}
	}
	d.Action = Hit
	return d
}

// LookupPeer decides what another replica's request for the object of
// key gets (see PeerHandler): this replica's fill in progress, unless
// that fill itself streams another replica's copy (peers never chase each
// other) or was fetched with a client's credential; else the stored
// object, as it is (never a redirect, a revalidation or a check at the
// origin); else NotFilling. A peer never starts a fill. The origin's
// error statuses of a fill are passed on.
func (p *Pipeline) LookupPeer(ctx context.Context, req *Request, key string) *Decision {
	d := &Decision{Req: req}
	if p.store == nil || storage.ValidateKey(key) != nil {
		return d.fail(errNoTarget)
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return d.fail(errMethodNotAllowed)
	}
	host, rest, _ := strings.Cut(key, "/")
	d.Target = Target{host: host, path: "/" + rest, key: key}
	if f := p.fills.Join(key); f != nil {
		if p.relayed(key) {
			f.Release()
		} else {
			if PeerJoined != nil {
				PeerJoined(key)
			}
			info, err := f.Header(ctx)
			var se *fill.StatusError
			switch {
			case err == nil && info.Header[policy.AuthHeader] != nil:
				// Fetched with a client's credential: the other
				// replica fetches for its own client.
				f.Release()
				d.Action = NotFilling
				return d
			case err == nil:
				d.Action, d.Fill, d.Info = Stream, f, info
				return d
			case errors.As(err, &se), ctx.Err() != nil:
				f.Release()
				return d.fail(err)
			}
			// Not an object (a revalidation's 304, a fill over the
			// size limit or without disk): storage may have it.
			f.Release()
		}
	}
	obj, err := p.store.Open(ctx, key)
	if err != nil {
		d.Action = NotFilling
		return d
	}
	info := obj.Info()
	if info.Header[policy.AuthHeader] != nil {
		obj.Close()
		d.Action = NotFilling
		return d
	}
	d.Action, d.Obj, d.Info = Hit, obj, info
	return d
}

// PeerJoined, when set (by tests), is called with the key of every fill a
// peer request joins.
var PeerJoined func(key string)

// freshness returns how the stored object of t, with metadata info, may be
// used, and its prebuilt header when it is a small hot object: the
// freshness is kept with it, so that its hits do not parse Cache-Control
// and match the revalidate patterns every time.
func (p *Pipeline) freshness(t Target, info storage.Info) (policy.Freshness, *hotHeader) {
	if e := p.hot.get(t.key, info); e != nil {
		return e.fresh, e
	}
	return p.cfg.Rules.Freshness(t.ruleKey(), info), nil
}
