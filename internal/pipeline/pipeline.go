// Package pipeline is httpmirror's request path: what happens to one
// request, from its target to the last byte of its answer. The root
// package's MirrorHandler configures one Pipeline and hands it every
// request; the operator API uses the few methods of seam.go.
//
// A request passes through the files in this order:
//
//	request.go    the request, as net/http or the hit loop parsed it
//	target.go     its origin host, path and cache key (and the checks on them)
//	lookup.go     the one decision: what the request gets (the Decision)
//	dispatch.go   the one dispatcher, acting on the decision
//	hit.go        a stored object: bytes, memory, or a signed redirect
//	revalidate.go a stale stored object, asked about at the origin
//	fetch.go      a miss: who fetches it (fetchers.go), the fill, its clients
//	respond.go    bytes of a fill, ranges, headers, aborts
//	direct.go     a request proxied to its origin, nothing kept
//	observe.go    what the observer receives of the finished request
//
// beside the rules lookup asks (auth.go, vary.go, memo.go), the one
// classifier of errors into statuses (errors.go), the one way out to
// origins (upstream.go), the peer endpoint (peer.go) and the seam the
// operator features use (seam.go).
//
// Every stage returns what it did (an Outcome, an error) and, at most, the
// next decision; none calls back into an earlier stage. The dispatcher
// alone moves from one decision to the next, and reports each request's
// result once, to the Observer, which keeps the metrics and the access log.
package pipeline

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// Config is what a Pipeline needs. Unlike MirrorHandler's fields, no zero
// value stands for a default: the caller has resolved them.
type Config struct {
	// Store is where objects are kept, behind the instrumenting decorator
	// (storage.Instrument). Nil means no cache: every request is proxied.
	Store storage.Backend
	// Lists reports whether the backend behind Store can list its objects
	// (storage.Lister): the decorator offers the method either way.
	Lists bool
	// Client reaches origins. The pipeline adds its redirect policy and
	// the allowed-hosts guard (see upstream.go).
	Client *http.Client
	// Scheme is the scheme of upstream URLs: "http" or "https".
	Scheme string
	// Hosts are the rules that find and check a request's origin.
	Hosts HostRules
	// Rules decide freshness.
	Rules policy.Rules
	// Digests find the digests published for an object, which fills
	// check (see fill.Options.Digests).
	Digests policy.DigestRules

	LinkExpires      time.Duration // lifetime of signed redirect URLs
	NoRedirect       bool          // serve bytes where the store could redirect
	TeeResponse      bool          // stream fills to their clients
	CheckSyncTimeout time.Duration // > 0: hits first check the size at the origin
	MaxRanges        int           // the most ranges of a request, once merged
	MaxVariants      int           // the most variants of a URL stored; < 0: no limit
	NegativeTTL      time.Duration // how long a 404 or 410 is remembered; <= 0: not at all
	AuthCache        bool          // store responses that need authorisation
	AuthCacheTTL     time.Duration // how long an answer about a credential stands

	// Fill configures the fill engine; Info, Storable and Observer are
	// the pipeline's own.
	Fill fill.Options
	// Fetchers decide who fetches a miss (see fetchers.go).
	Fetchers Fetchers

	// NotFound answers requests that name no origin; nil means
	// http.NotFound.
	NotFound http.Handler
	// Logger receives errors and events; nil discards them.
	Logger *slog.Logger
	// Observer receives each request's result and the upstream events;
	// nil records nothing.
	Observer Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Pipeline serves requests as Config says. Its methods are safe for
// concurrent use.
type Pipeline struct {
	cfg    Config
	store  storage.Backend
	client *http.Client
	log    *slog.Logger
	obs    Observer
	timed  bool // obs.Timed: requests are timed for the access log
	now    func() time.Time
	fills  *fill.Group

	negatives negativeCache
	hot       hotHeaders
	auths     authCache
	syncs     singleflight.Group // CheckSyncTimeout's origin checks, one per key
	// relayedKeys holds the keys whose fill in progress streams another
	// replica's copy (key -> its Coordination): the peer endpoint does not
	// serve those on.
	relayedKeys sync.Map
	// unknownDigests holds the digest algorithms found published but not
	// checkable, each logged once.
	unknownDigests sync.Map
}

// New returns the pipeline of cfg.
func New(cfg Config) *Pipeline {
	p := &Pipeline{
		cfg: cfg, store: cfg.Store, log: cfg.Logger, obs: cfg.Observer, now: cfg.Now,
		negatives: newNegativeCache(), hot: newHotHeaders(), auths: newAuthCache(),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.obs == nil {
		p.obs = nopObserver{}
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.timed = p.obs.Timed(context.Background())
	p.cfg.Scheme = cmp.Or(cfg.Scheme, "https")
	p.client = p.upstreamClient(cfg.Client)
	if p.store != nil {
		opts := cfg.Fill
		opts.Logger = p.log
		opts.Observer = p.obs
		opts.Info = p.objectInfo
		opts.Storable = p.storable
		opts.Relayed = fromPeer
		opts.Digests = p.published
		p.fills = fill.NewGroup(p.store, opts)
	}
	return p
}

// Cached reports whether the pipeline has a cache.
func (p *Pipeline) Cached() bool { return p.store != nil }

// Shutdown aborts the fills in progress and waits, until ctx is done, for
// them to clean up.
func (p *Pipeline) Shutdown(ctx context.Context) error {
	if p.fills == nil {
		return nil
	}
	return p.fills.Shutdown(ctx)
}

// Wait blocks until no fill is in progress, or ctx is done.
func (p *Pipeline) Wait(ctx context.Context) error {
	if p.fills == nil {
		return nil
	}
	return p.fills.Wait(ctx)
}

// InProgress reports how many fills are running.
func (p *Pipeline) InProgress() int {
	if p.fills == nil {
		return 0
	}
	return p.fills.InProgress()
}

// Check reports whether the cache can serve and store (see
// storage.Checker); nil without a cache.
func (p *Pipeline) Check(ctx context.Context) error {
	if p.store == nil {
		return nil
	}
	return p.store.(storage.Checker).Check(ctx)
}
