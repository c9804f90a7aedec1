package cluster

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror/internal/clock"
	"github.com/httpmirror/httpmirror/storage"
)

// source is where a fill's bytes come from, once its first Get decided.
type source uint8

const (
	undecided  source = iota
	fromOrigin        // this replica holds the lease
	fromPeer          // the lease's owner, or the stored object
	unleased          // the origin, without a lease (the store or the owner failed us)
	finished          // Done was called
)

// share is one fill's part in the coordination of its key.
type share struct {
	n      *Node
	key    string
	name   string // the lease's claim name
	origin func(context.Context, http.Header) (*http.Response, error)

	mu       sync.Mutex
	src      source
	held     *held  // while src is fromOrigin
	streamed string // the owner whose stream the fill last read, if any
}

func (s *share) source() source {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.src
}

func (s *share) set(src source) {
	s.mu.Lock()
	if s.src != finished {
		s.src = src
	}
	s.mu.Unlock()
}

// Get implements httpmirror.Coordination. The fill calls it from one
// goroutine, first for the object, then for resumes.
func (s *share) Get(ctx context.Context, h http.Header) (*http.Response, bool, error) {
	switch s.source() {
	case fromOrigin:
		return s.fetch(ctx, h)
	case unleased:
		resp, err := s.origin(ctx, h)
		return resp, true, err
	case fromPeer:
		return s.resume(ctx, h)
	case finished:
		return nil, false, errors.New("cluster: fill already ended")
	}
	return s.decide(ctx, h)
}

// decide finds out who fills the key: this replica if it creates the
// lease or takes a dead one over, else the live owner, whose copy is
// streamed; the stored object once it is there. It loops (pausing between
// rounds) while the owner cannot be reached, at most MaxWait; past it,
// and when the store fails to keep leases, the origin is asked without a
// lease: duplicate fetches are better than none.
//
// A lease is dead when its deadline passed, or, sooner, when it is
// certain that its owner's fill is gone: the owner whose stream this fill
// was reading (so its advertised address was right) now refuses
// connections (its process died) or says it does not fill the key (it
// restarted). An owner that merely cannot be reached (a partition, a wrong
// --advertise-url) may be alive and renewing: its lease is waited out.
func (s *share) decide(ctx context.Context, h http.Header) (*http.Response, bool, error) {
	n := s.n
	giveUp := time.Now().Add(n.maxWait)
	s.mu.Lock()
	streamed := s.streamed
	s.mu.Unlock()
	// quick counts the rounds that pause briefly: after another replica
	// took the lease over, it serves as soon as its origin answers.
	quick, taken := 0, false
	for round, wait := 0, false; ; round++ {
		if round > 0 {
			if resp := s.stored(ctx, h); resp != nil {
				n.metrics.fill("stored")
				s.set(fromPeer)
				return resp, false, nil
			}
		}
		if wait {
			if time.Now().After(giveUp) {
				n.log.Warn("cluster: the fill's owner stayed unreachable; fetching from the origin", "key", s.key, "waited", n.maxWait)
				return s.fetchUnleased(ctx, h)
			}
			pause := n.poll()
			if quick > 0 {
				quick--
				pause = min(pause, quickPoll)
			}
			if err := clock.Sleep(ctx, pause); err != nil {
				return nil, false, context.Cause(ctx)
			}
		}
		wait = true
		now := n.now()
		mine := lease{Owner: n.self, Key: s.key, Started: now, Deadline: now.Add(n.lease)}
		cur, err := n.claims.Claim(ctx, s.name, mine.encode())
		if err == nil {
			return s.own(ctx, h, cur, "origin")
		}
		if !errors.Is(err, storage.ErrClaimed) {
			return s.storeFailed(ctx, h, err)
		}
		if cur.Version == "" {
			wait = false // released meanwhile: claim it
			continue
		}
		l, ok := decodeLease(cur.Data)
		// Expired (or this replica's own, left by an earlier run or a
		// fill that ended without releasing it): taken over.
		why := "expired"
		if ok && l.Owner != n.self && l.live(now) {
			resp, err := n.peerGet(ctx, l.Owner, s.key, h)
			if err == nil {
				n.metrics.fill("peer")
				s.mu.Lock()
				if s.src != finished {
					s.src, s.streamed = fromPeer, l.Owner
				}
				s.mu.Unlock()
				return resp, false, nil
			}
			if ctx.Err() != nil {
				return nil, false, context.Cause(ctx)
			}
			if why = gone(streamed, l.Owner, err); why == "" {
				n.log.Debug("cluster: the fill's owner cannot serve it; waiting", "key", s.key, "owner", l.Owner, "err", err)
				if streamed != "" && !taken {
					// Look again soon: another replica took the
					// lease over from the owner this fill streamed
					// from and serves once its origin answers, or
					// that owner's failure came on a pooled
					// connection (reset), and a new one tells
					// whether it refuses connections.
					taken, quick = true, quickRounds
				}
				continue
			}
		}
		won, err := n.claims.Swap(ctx, s.name, mine.encode(), cur.Version)
		switch {
		case err == nil:
			n.log.Warn("cluster: took over the lease of a fill whose owner is gone", "key", s.key, "owner", l.Owner, "deadline", l.Deadline, "why", why, "offset", h.Get("Range"))
			// The dead owner's upload is aborted before this
			// replica's own can begin: the others' streams store
			// nothing.
			n.abortUploads(ctx, s.key)
			return s.own(ctx, h, won, "takeover")
		case errors.Is(err, storage.ErrClaimChanged):
			// Another replica took it first: stream from it, once it
			// serves (its origin answered).
			wait, quick, taken = false, quickRounds, true
			continue
		}
		return s.storeFailed(ctx, h, err)
	}
}

// gone says why the lease of owner, which failed to serve this fill with
// err, is certainly dead although its deadline has not passed, or "" when
// that is not certain (see decide); streamed is the owner whose stream
// the fill was reading, if any.
func gone(streamed, owner string, err error) string {
	switch {
	case owner != streamed:
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, errNotFilling):
		return "not_filling"
	}
	return ""
}

// abortUploadsTimeout bounds the abort of a dead owner's uploads, which
// a takeover's origin request waits for.
const abortUploadsTimeout = 10 * time.Second

// storeFailed fetches from the origin without a lease after the store
// failed a lease operation with err.
func (s *share) storeFailed(ctx context.Context, h http.Header, err error) (*http.Response, bool, error) {
	if ctx.Err() != nil {
		return nil, false, context.Cause(ctx)
	}
	s.n.log.Warn("cluster: lease store failing; fetching from the origin without a lease", "key", s.key, "err", err)
	return s.fetchUnleased(ctx, h)
}

func (s *share) fetchUnleased(ctx context.Context, h http.Header) (*http.Response, bool, error) {
	s.n.metrics.fill("unleased")
	s.set(unleased)
	resp, err := s.origin(ctx, h)
	return resp, true, err
}

// own makes this replica the fill's owner with the lease cl, and fetches.
// The object may have been committed between the fill's look into storage
// and the claim (its owner released the lease just before): it is checked
// once more, so that the origin is not asked again.
func (s *share) own(ctx context.Context, h http.Header, cl storage.Claim, how string) (*http.Response, bool, error) {
	hd := &held{s: s, version: cl.Version, tookOver: how == "takeover", stop: make(chan struct{}), stopped: make(chan struct{})}
	hd.started = s.n.now()
	s.n.leases.Add(1) // until the lease is released
	s.mu.Lock()
	s.src, s.held = fromOrigin, hd
	s.mu.Unlock()
	go hd.renewEvery(s.n.lease / 3)
	if resp := s.stored(ctx, h); resp != nil {
		s.n.metrics.fill("stored")
		s.mu.Lock()
		s.src, s.held = fromPeer, nil
		s.mu.Unlock()
		hd.release()
		return resp, false, nil
	}
	s.n.metrics.fill(how)
	return s.fetch(ctx, h)
}

// fetch asks the origin, counting the body's progress for the renewals.
func (s *share) fetch(ctx context.Context, h http.Header) (*http.Response, bool, error) {
	s.mu.Lock()
	hd := s.held
	s.mu.Unlock()
	resp, err := s.origin(ctx, h)
	if err != nil || hd == nil {
		return resp, true, err
	}
	hd.reading.Store(true)
	resp.Body = &progressBody{ReadCloser: resp.Body, hd: hd}
	return resp, true, nil
}

// resume answers the resume of a stream from another replica (h holds
// the fill's Range and If-Range): from the committed object; else, as the
// fill's first request was decided, from the replica that fills the key
// now (the same owner, or one that took it over), or, once the owner's
// lease is dead (see decide), from the origin, this replica having taken
// the fill over: the origin then sends only what this fill lacks, and the
// fill checks that it continues the same object, as every resume.
func (s *share) resume(ctx context.Context, h http.Header) (*http.Response, bool, error) {
	if resp := s.stored(ctx, h); resp != nil {
		return resp, false, nil
	}
	return s.decide(ctx, h)
}

// Done implements httpmirror.Coordination: a lease held is released.
func (s *share) Done() {
	s.mu.Lock()
	hd := s.held
	s.src, s.held = finished, nil
	s.mu.Unlock()
	if hd != nil {
		hd.release()
	}
}

// stored returns a response from the committed object, or nil.
func (s *share) stored(ctx context.Context, h http.Header) *http.Response {
	obj, err := s.n.store.Open(ctx, s.key)
	if err != nil {
		return nil
	}
	return objectResponse(obj, h.Get("Range"))
}

// When a stream from the owner broke, or a takeover was lost to another
// replica, the first quickRounds looks at the lease pause quickPoll only:
// a replica that took the lease over serves the fill to the others as
// soon as its origin answers (until then it says it does not fill the
// key), a dead owner's pooled connection fails otherwise than a new one
// (reset, not refused), and the streams that broke are waiting.
const (
	quickRounds = 10
	quickPoll   = 20 * time.Millisecond
)

// poll is the pause between two looks at a lease whose owner cannot serve.
func (n *Node) poll() time.Duration {
	return min(max(n.lease/20, 20*time.Millisecond), time.Second)
}

// held is a lease this replica holds for a fill.
type held struct {
	s       *share
	started time.Time
	// tookOver: the lease was taken from a dead owner, whose uploads are
	// aborted again at release (see release).
	tookOver bool
	stop     chan struct{} // closed by release
	stopped  chan struct{} // closed when renewEvery returns

	reading   atomic.Bool  // an origin body is open
	bytes     atomic.Int64 // body bytes read
	lastBytes atomic.Int64 // bytes at the last renewal check

	mu      sync.Mutex
	version string
	lost    bool // another replica took the lease over
}

// renewEvery renews the lease every period until release.
func (hd *held) renewEvery(period time.Duration) {
	defer close(hd.stopped)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-hd.stop:
			return
		case <-hd.s.n.ctx.Done():
			return // the node is closing: the lease is released or expires
		case <-t.C:
		}
		if !hd.progressed() {
			hd.s.n.metrics.renewal("stalled")
			continue
		}
		if hd.renew(hd.s.n.ctx) != nil {
			return
		}
	}
}

// progressed reports whether the fill made progress since the last check:
// body bytes arrived, or no body is being read (the origin's headers are
// awaited, or the object is being committed).
func (hd *held) progressed() bool {
	b := hd.bytes.Load()
	moved := hd.lastBytes.Swap(b) != b
	return moved || !hd.reading.Load()
}

// errLeaseLost stops the renewals of a lease another replica took over.
var errLeaseLost = errors.New("cluster: lease taken over")

// renew moves the lease's deadline one lease duration past now.
func (hd *held) renew(ctx context.Context) error {
	n := hd.s.n
	hd.mu.Lock()
	version, lost := hd.version, hd.lost
	hd.mu.Unlock()
	if lost {
		return errLeaseLost
	}
	now := n.now()
	l := lease{Owner: n.self, Key: hd.s.key, Started: hd.started, Deadline: now.Add(n.lease)}
	cl, err := n.claims.Swap(ctx, hd.s.name, l.encode(), version)
	switch {
	case err == nil:
		hd.mu.Lock()
		hd.version = cl.Version
		hd.mu.Unlock()
		n.metrics.renewal("renewed")
		return nil
	case errors.Is(err, storage.ErrClaimChanged):
		// This fill stalled past its deadline and another replica took
		// the key over. Both fetch it now; each commits the whole object,
		// so the bucket ends up with one of two identical copies.
		hd.mu.Lock()
		hd.lost = true
		hd.mu.Unlock()
		n.metrics.renewal("lost")
		n.log.Warn("cluster: lease taken over by another replica; this fill goes on", "key", hd.s.key)
		return errLeaseLost
	}
	n.metrics.renewal("failed")
	n.log.Warn("cluster: renewing a lease failed", "key", hd.s.key, "err", err)
	return nil
}

// releaseTimeout bounds the removal of a lease after its fill.
const releaseTimeout = 10 * time.Second

// release stops the renewals and removes the lease, unless another
// replica took it over.
func (hd *held) release() {
	close(hd.stop)
	<-hd.stopped
	defer hd.s.n.leases.Done()
	hd.mu.Lock()
	version, lost := hd.version, hd.lost
	hd.mu.Unlock()
	if lost {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if hd.tookOver {
		// The fill has ended and the lease is still this replica's, so
		// no upload of the key is anyone's but the dead owner's: one it
		// had asked for just before it died can reach the store after
		// the abort at the takeover.
		hd.s.n.abortUploads(ctx, hd.s.key)
	}
	err := hd.s.n.claims.Release(ctx, hd.s.name, version)
	if err != nil && !errors.Is(err, storage.ErrClaimChanged) {
		hd.s.n.log.Warn("cluster: releasing a lease failed; it expires by itself", "key", hd.s.key, "err", err)
	}
}

// progressBody counts an origin body's bytes for the renewals.
type progressBody struct {
	io.ReadCloser
	hd *held
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.hd.bytes.Add(int64(n))
	return n, err
}

func (b *progressBody) Close() error {
	b.hd.reading.Store(false)
	return b.ReadCloser.Close()
}
