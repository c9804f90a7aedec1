// Package fill is httpmirror's fill engine: it fetches an object from its
// origin once, however many clients ask for it at the same time, writes it to
// a storage backend, and lets every waiting client read the bytes as they
// arrive.
//
// A Group holds the fills in progress, one per cache key. The first request
// for a key starts a Fill; later requests for the same key join it. The fill
// runs on the Group's context, not on any client's, so a client that leaves
// does not stop the download for the others, and a fill whose clients all
// left still completes (the next request is then a hit).
//
// Bytes are spooled on disk while they arrive: into the storage writer itself
// when it can read back what it wrote (storage.Spooler, the local-disk
// backend), otherwise into an anonymous temporary file. Readers block until
// the bytes they want have arrived, so memory does not grow with object size
// or with the number of clients.
//
// When the origin's body breaks and the Group allows retries, the fill
// resumes with a Range request guarded by If-Range, and accepts only a 206
// whose Content-Range continues exactly where the body broke. An origin that
// answers 200 (its object changed) aborts the fill. Nothing is committed
// unless the byte count matches Content-Length.
//
// Which response headers are kept and whether a response may be stored are
// not the engine's decisions: Options.Info and Options.Storable make them
// (package policy by default).
package fill

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// Source is where a fill gets its bytes from.
type Source struct {
	// URL names the origin object; it is used in logs only.
	URL string
	// Get sends a GET for the object with the given extra request headers
	// (validators when revalidating; Range for the first segment only, see
	// Options.Connections; Range and If-Range for other segments and when
	// resuming) and returns the response.
	Get func(ctx context.Context, h http.Header) (*http.Response, error)
	// Head, when not nil, sends a HEAD for the object, with the same
	// request headers as Get's but those given. A segmented fill asks it
	// for the digests that describe one whole response (Content-Digest,
	// Content-MD5, the storage services' checksums): its first answer is a
	// part, whose own describe the part (see wholeDigests).
	Head func(ctx context.Context) (*http.Response, error)
	// Want, when positive, is the byte offset the client that starts the
	// fill wants first (the start of its Range). When the fill may use
	// several connections and Want lies beyond the first segment, it asks
	// for the segment from Want at once, beside its first request, so that
	// client's first byte comes after about one origin round trip; the
	// answer is used only if it proves to be part of the same object as the
	// first response (see Options.Connections).
	Want int64
}

// NewSource returns the Source of the object at url whose requests send
// sends: GETs with the headers Get is given, and HEADs without any.
func NewSource(url string, send func(ctx context.Context, method string, h http.Header) (*http.Response, error)) Source {
	return Source{
		URL: url,
		Get: func(ctx context.Context, h http.Header) (*http.Response, error) {
			return send(ctx, http.MethodGet, h)
		},
		Head: func(ctx context.Context) (*http.Response, error) {
			return send(ctx, http.MethodHead, nil)
		},
	}
}

// Options configure a Group. The zero value of every field is usable.
type Options struct {
	// Retry is how many times a broken upstream body is resumed with a
	// Range request. Zero disables resuming: the fill fails at the first
	// broken body.
	Retry int
	// RetryInterval is the pause before each resume attempt.
	RetryInterval time.Duration
	// IdleTimeout aborts an upstream body that delivers no bytes for this
	// long (the abort may be resumed like any broken body). Zero means no
	// limit.
	IdleTimeout time.Duration
	// MinRate, in bytes per second, aborts (or resumes) an upstream body
	// that delivers less than MinRate×IdleTimeout bytes in any period of
	// IdleTimeout, so that an origin trickling a byte now and then cannot
	// hold a fill for ever. Zero means no minimum beyond IdleTimeout; it
	// needs IdleTimeout.
	MinRate int64
	// Connections is how many connections a fill may use at once: objects
	// larger than SegmentSize whose origin serves byte ranges and gives a
	// validator (a strong ETag or Last-Modified) are fetched as segments
	// of SegmentSize, every segment checked against the first response's
	// validators and length, over two connections at first, doubled (up
	// to Connections) as long as the aggregate rate grows with them and
	// taken back when it did not; a reader waiting for bytes ahead of what
	// has arrived gets the segment it needs next, on one more connection
	// if all are busy. The first request then asks
	// for the first segment only (Range: bytes=0-SegmentSize-1): no
	// response is ever cut short, so the origin sends no byte the fill
	// does not keep. Zero or one means one connection per fill, and a
	// first request for the whole object.
	Connections int
	// SegmentSize is the size of those segments. Zero means
	// DefaultSegmentSize.
	SegmentSize int64
	// MaxObjectSize bounds the objects a fill downloads: a response whose
	// Content-Length is larger ends the fill with ErrTooLarge before any
	// body is read, and a body of unknown length is cut off with
	// ErrTooLarge once it exceeds the bound. Zero means no bound.
	MaxObjectSize int64
	// SpoolDir holds temporary spool files for backends whose writers
	// cannot read back (storage.Spooler). Empty means os.TempDir().
	SpoolDir string
	// Info builds the stored metadata from the origin's response. Nil
	// means policy.Info at the time of the response.
	Info func(*http.Response) storage.Info
	// Storable reports whether a 200 response, fetched for the object of
	// key, may be stored (it may not when the origin says no-store, for
	// example); an unstorable body is still streamed to the fill's
	// clients from a temporary spool. Nil means every response is
	// storable.
	Storable func(key string, resp *http.Response) bool
	// Relayed reports whether resp, a response of a fill's Source, relays
	// a copy of the object that another party fetches from the origin and
	// stores (another replica's, package cluster): the fill streams it
	// without storing it. When such a body breaks, the fill resumes it
	// (Range and If-Range, checked as every resume is) whatever Retry
	// says and without RetryInterval's pause, as long as the broken body
	// brought bytes: the Source knows where the rest is and how long to
	// wait for it. A resume that the origin itself answers (Relayed is
	// false: the other party is gone and this fill took the fetch over)
	// makes the fill store the object after all: the bytes that arrived
	// are written to storage first, read back from the spool. Nil means
	// no response is relayed.
	Relayed func(resp *http.Response) bool
	// Digests returns the digests published for the object of key that
	// resp brings (see policy.DigestRules.Digests), most trusted first.
	// The fill checks its bytes against them, hashing them as they arrive
	// (the growing prefix, for a segmented fill), and fails with a
	// *DigestError (ErrDigestMismatch) at the first that does not match,
	// storing nothing; readers get the object's last byte only after the
	// verdict. The SHA-256 of every object it stores is kept in the
	// object's metadata (policy.DigestHeader), published or not. Nil means
	// no digest is published.
	Digests func(key string, resp *http.Response) []policy.Expected
	// Logger receives fill events. Nil discards them.
	Logger *slog.Logger
	// Observer receives events for metrics. Nil means none.
	Observer Observer
}

// Observer receives the fill engine's events. Its methods must be cheap and
// safe for concurrent use.
type Observer interface {
	// UpstreamBytes is called for every chunk of body read from an origin.
	UpstreamBytes(n int)
	// FillDone is called once for every fill that asked the origin, with
	// the bytes received, whether the object was stored, and the error that
	// ended it (nil on success).
	FillDone(key string, bytes int64, stored bool, err error, d time.Duration)
}

type nopObserver struct{}

func (nopObserver) UpstreamBytes(int)                                  {}
func (nopObserver) FillDone(string, int64, bool, error, time.Duration) {}

// Group coalesces fills by cache key.
type Group struct {
	store storage.Backend
	opts  Options
	log   *slog.Logger

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	fills   map[string]*Fill
	running int           // fills whose goroutine has not returned yet
	idle    chan struct{} // closed while running is zero; replaced when a fill starts

	// storeFailing is set while storage writes fail, so that a failing
	// store is logged once, not once per fill.
	storeFailing atomic.Bool
	// memSpooled is the memory the spools of small objects hold (see
	// memSpoolBudget).
	memSpooled atomic.Int64
}

// NewGroup returns a Group that stores objects in store. It panics if store
// is nil, which is a programming error.
func NewGroup(store storage.Backend, opts Options) *Group {
	if store == nil {
		panic("fill: NewGroup with nil storage")
	}
	if opts.Info == nil {
		opts.Info = func(resp *http.Response) storage.Info { return policy.Info(resp, time.Now()) }
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	idle := make(chan struct{})
	close(idle)
	return &Group{store: store, opts: opts, log: log, ctx: ctx, cancel: cancel, fills: make(map[string]*Fill), idle: idle}
}

// Wait blocks until no fill is in progress or ctx is done. A fill is in
// progress until it has cleaned up, including one that was abandoned or
// superseded and no longer joinable. Fills started while waiting extend the
// wait.
func (g *Group) Wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		idle, n := g.idle, g.running
		g.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Shutdown aborts every fill in progress, waits until they have cleaned up
// (nothing half-written stays in storage) or ctx is done, and makes later
// fills fail at once.
func (g *Group) Shutdown(ctx context.Context) error {
	g.cancel(ErrShutdown)
	return g.Wait(ctx)
}

// stopped records that a fill's goroutine has returned.
func (g *Group) stopped() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	if g.running == 0 {
		close(g.idle)
	}
}

// storeFailed logs a storage write failure: at error level the first time
// after writes worked, at debug level while they keep failing.
func (g *Group) storeFailed(key, msg string, err error) {
	if g.storeFailing.CompareAndSwap(false, true) {
		g.log.Error(msg+"; objects are served without caching until a write succeeds", "key", key, "err", err)
		return
	}
	g.log.Debug(msg, "key", key, "err", err)
}

// storeWorked records a successful commit.
func (g *Group) storeWorked() {
	if g.storeFailing.CompareAndSwap(true, false) {
		g.log.Info("storage writes succeed again")
	}
}

// InProgress reports how many fills are running.
func (g *Group) InProgress() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.fills)
}

// op is what a fill is asked to do.
type op uint8

const (
	opMiss       op = iota // fetch unless storage has the object by now
	opRevalidate           // ask the origin conditionally
	opRefetch              // fetch whatever storage holds
)

// Miss returns the fill of an object that storage did not have, starting
// it from src when none is running. joined reports whether the caller
// joined a fill that was already running.
//
// A new fill first opens the object in storage again, because a fill for the
// same key may have committed between the caller's miss and this call (the
// flight re-checks, as groupcache's load does). It then ends at once as a
// stored fill whose readers read the stored object, and asks the origin
// nothing.
//
// The caller must call Release on the returned Fill when done with it.
func (g *Group) Miss(key string, src Source) (f *Fill, joined bool) {
	return g.start(key, src, opMiss, nil)
}

// Revalidate returns the fill that revalidates a stored object with the
// conditional request headers validators (see policy.Validators): a 304
// ends it with a *NotModifiedError, a 200 replaces the object.
func (g *Group) Revalidate(key string, src Source, validators http.Header) (f *Fill, joined bool) {
	return g.start(key, src, opRevalidate, validators)
}

// Refetch returns a fill that downloads the object whatever storage holds:
// for an object whose origin copy changed, or that storage could not open.
func (g *Group) Refetch(key string, src Source) (f *Fill, joined bool) {
	return g.start(key, src, opRefetch, nil)
}

func (g *Group) start(key string, src Source, o op, validators http.Header) (f *Fill, joined bool) {
	g.mu.Lock()
	if f := g.fills[key]; f != nil {
		f.refs++
		g.mu.Unlock()
		return f, true
	}
	f = &Fill{
		g:          g,
		keep:       true,
		key:        key,
		src:        src,
		op:         o,
		validators: validators,
		refs:       2, // the caller and the running fill
		header:     make(chan struct{}),
		done:       make(chan struct{}),
		progress:   make(chan struct{}),
		size:       -1,
		control:    newControl(g.ctx),
	}
	if g.running == 0 {
		g.idle = make(chan struct{})
	}
	g.running++
	g.fills[key] = f
	g.mu.Unlock()
	go func() {
		defer g.stopped()
		defer f.cancel(nil) // releases the fill's context
		f.run()
	}()
	return f, false
}
