package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/httpmirror/httpmirror/internal/clock"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// DefaultSegmentSize is Options.SegmentSize's default.
const DefaultSegmentSize = 8 << 20

// errRangeIgnored: the origin answered a segment's Range request with the
// whole object. It promised ranges (Accept-Ranges), so it is not the
// object the fill started with that answers; the fill is aborted.
var errRangeIgnored = fmt.Errorf("%w: origin answered a Range request with 200", ErrOriginChanged)

func (o Options) segmentSize() int64 {
	if o.SegmentSize > 0 {
		return o.SegmentSize
	}
	return DefaultSegmentSize
}

// segmentable reports whether an object is fetched in parallel segments
// after the first response brought its first end bytes (see first; end is
// -1 when that response brings the whole object): Options allow more than
// one connection, the first response is such a part, whose validator (a
// strong ETag, or Last-Modified, checked on every segment along with the
// total length) makes every segment provably part of the same object, and
// it is not relayed: the party that relays it fetches it once, and
// streams it (see Options.Relayed).
func (f *Fill) segmentable(info storage.Info, end int64, relayed bool) bool {
	return f.g.opts.Connections > 1 && end >= 0 && end < info.Size && !relayed &&
		policy.IfRange(info) != ""
}

// segmenter schedules a segmented fill. The object's bytes not yet asked
// for are pending; fetchers take them a segment at a time, lowest offset
// first, so readers of the whole object see a prefix that grows about as
// fast as all connections together bring bytes in. The first response's
// body, the object's first part, is one of the fetchers (the head), which
// then fetches as the others do. A reader that waits for a byte ahead of
// everything fetched makes the segment starting at that byte the next one
// fetched, on an extra connection when every fetcher is busy
// (range-first).
//
// How many fetchers run is found out as the fill goes (see adapt): it
// starts with startConnections and doubles while the aggregate rate grows
// with them, up to Connections. An origin that caps each connection gets
// as many as help; one whose link, disk or CPU is the limit gets no more
// than it started with, or those it had before a doubling that did not
// pay.
type segmenter struct {
	f         *Fill
	sw        *spoolWriter
	info      storage.Info
	size      int64
	segSize   int64
	validator string
	max       int // Options.Connections
	ctx       context.Context
	cancel    context.CancelCauseFunc
	stopped   chan struct{} // closed when the last fetcher has returned
	adapted   chan struct{} // closed when adapt has returned

	// The fetchers are counted under mu, not with a sync.WaitGroup: a
	// reader starts one (want) at any time, even while fetchSegments is
	// still starting the first ones or waits for the last, and done must
	// be set in the same step as the count drops to zero, so that no
	// fetcher starts after the fill stopped waiting for them.
	mu       sync.Mutex
	pending  intervals     // bytes no fetcher has taken
	takenEnd int64         // the end of the range take took last
	wants    []int64       // offsets readers wait for, in the order they asked
	running  int           // fetchers started that have not returned
	extra    int           // range-first fetchers running beyond conns
	conns    int           // how many fetchers may take ranges (besides extra)
	workers  int           // fetchers that take ranges until none is left
	fresh    int           // fetchers started by addLocked that have brought no bytes yet
	flowing  chan struct{} // closed when fresh drops to zero
	got      atomic.Int64  // bytes arrived, for adapt's measure
	err      error         // the first error that stops the fill
	done     bool          // no new fetcher may start, nor take a range
}

// fetchSegments downloads the object of resp, whose headers are known and
// published and whose body brings its first head bytes, with parallel
// ranged requests, into sw. It returns the object's size and nil when
// every byte arrived, else the error that stopped it (every fetcher has
// stopped by then).
func (f *Fill) fetchSegments(ctx context.Context, resp *http.Response, head int64, info storage.Info, sw *spoolWriter, spec *speculation, v *verifier) (int64, error) {
	o := f.g.opts
	s := &segmenter{
		f: f, sw: sw, info: info, size: info.Size, segSize: o.segmentSize(),
		validator: policy.IfRange(info), max: o.Connections,
		conns:   min(o.Connections, startConnections),
		stopped: make(chan struct{}), adapted: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	defer s.cancel(nil)
	s.pending.add(head, s.size)

	// Readers may ask for bytes (want) as soon as the segmenter is
	// published; holding s.mu until every first fetcher is counted keeps
	// a fetcher they start, or one that returns at once, from seeing the
	// count at zero and ending the fill before it began.
	s.mu.Lock()
	f.mu.Lock()
	f.seg = s
	f.mu.Unlock()
	s.workers++
	s.startLocked(func() { s.head(resp, head) })
	workers := s.conns - 1
	if start, end, ok := spec.claimLocked(s); ok {
		// The speculative range is one of the fetchers.
		workers--
		s.workers++
		s.startLocked(func() { s.speculated(spec, start, end) })
	}
	s.addLocked(workers)
	s.mu.Unlock()
	if s.conns < s.max {
		go s.adapt()
	} else {
		close(s.adapted)
	}

	// The bytes go to the verifier, and to a storage writer that cannot
	// take them at offsets, in order: as the prefix grows.
	feeding := sw.w != nil && sw.wa == nil
	following := feeding || v != nil
	feedErr := make(chan error, 1)
	if following {
		go func() { feedErr <- s.follow(v, feeding) }()
	}
	<-s.stopped
	<-s.adapted
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err == nil && !f.hasAll(s.size) {
		err = ErrShortBody
	}
	if err != nil {
		s.cancel(err)
	}
	if following {
		if ferr := <-feedErr; err == nil && ferr != nil {
			err = ferr
		}
	}
	if err != nil {
		return f.Arrived(), f.cause(ctx, err)
	}
	return s.size, nil
}

// startLocked starts fetch as a fetcher of the fill; s.mu must be held
// and s.done false. The last fetcher to return sets done and closes
// stopped.
func (s *segmenter) startLocked(fetch func()) {
	s.running++
	go func() {
		defer s.exit()
		fetch()
	}()
}

// exit records that a fetcher returned.
func (s *segmenter) exit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running--
	if s.running == 0 {
		s.done = true
		close(s.stopped)
	}
}

// hasAll reports whether every byte of an object of size bytes arrived.
func (f *Fill) hasAll(size int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.filled.covers(size)
}

// want records that a reader waits for the byte at off. If no fetcher has
// taken it yet, the segment that starts there is fetched next, by a new
// fetcher when all are busy.
func (s *segmenter) want(off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || !s.pending.contains(off) {
		return
	}
	for _, w := range s.wants {
		if w == off {
			return
		}
	}
	s.wants = append(s.wants, off)
	if s.extra < s.max {
		s.extra++
		s.startLocked(func() { s.work(true, nil) })
	}
}

// next takes the next range to fetch: from a wanted offset if there is
// one, else from the lowest pending offset; at most a segment long. A
// fetcher that is not range-first (once false) stops when next returns
// false: it is no longer counted among the workers then, and it is told
// to stop when there are more workers than conns (adapt took a doubling
// back).
func (s *segmenter) next(once bool) (start, end int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		if !ok && !once {
			s.workers--
		}
	}()
	if s.done || !once && s.workers > s.conns {
		return 0, 0, false
	}
	for len(s.wants) > 0 {
		off := s.wants[0]
		s.wants = s.wants[1:]
		if s.pending.contains(off) {
			return s.take(off), s.takenEnd, true
		}
	}
	if len(s.pending) == 0 {
		return 0, 0, false
	}
	start = s.pending[0].start
	return s.take(start), s.takenEnd, true
}

// take removes [off, off+segSize) (cut at the end of its pending run) from
// pending and returns off; s.takenEnd is the end. s.mu must be held.
func (s *segmenter) take(off int64) int64 {
	s.takenEnd = min(off+s.segSize, s.pending.runFrom(off))
	s.pending.remove(off, s.takenEnd)
	return off
}

// work fetches ranges until none is left (or, for a range-first fetcher,
// after one range). arrived, when not nil, is called once the fetcher's
// first bytes arrived, or it stops without any.
func (s *segmenter) work(once bool, arrived func()) {
	if arrived != nil {
		defer arrived()
	}
	if once {
		defer func() {
			s.mu.Lock()
			s.extra--
			s.mu.Unlock()
		}()
	}
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	for {
		start, end, ok := s.next(once)
		if !ok {
			return
		}
		if err := s.fetch(start, end, *buf, 0, arrived); err != nil {
			s.fail(err)
			return
		}
		if once {
			return
		}
	}
}

// fail stops the fill with err.
func (s *segmenter) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.done = true
	s.mu.Unlock()
	s.cancel(err)
}

// head reads the first response's body, the object's bytes [0, end),
// then fetches like any other fetcher.
func (s *segmenter) head(resp *http.Response, end int64) {
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	var cur int64
	err := s.f.pump(s.ctx, io.LimitReader(resp.Body, end), resp.Body, *buf, s.sink(&cur, nil))
	if err == nil {
		// Read the end of the body, so the connection is reused.
		resp.Body.Read((*buf)[:1])
		if cur < end {
			err = ErrShortBody // the body ended before the range did
		}
	}
	resp.Body.Close()
	if err != nil {
		if err := s.resume(cur, end, *buf, err); err != nil {
			s.fail(err)
			return
		}
	}
	s.work(false, nil)
}

// resume finishes [cur, end) after err broke the body that was bringing
// it, as the Group's Retry allows.
func (s *segmenter) resume(cur, end int64, buf []byte, err error) error {
	if !retryable(s.ctx, err) || s.f.g.opts.Retry == 0 {
		return err
	}
	return s.fetch(cur, end, buf, 1, nil)
}

// retryable reports whether a fetch that failed with err may be tried
// again.
func retryable(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, ErrSpool) && !errors.Is(err, ErrOriginChanged) && !errors.Is(err, ErrNotOK)
}

// fetch brings [start, end) with a ranged request guarded by If-Range,
// resuming where a broken body stopped, up to the Group's Retry attempts
// in all (attempt counts those made already). arrived, when not nil, is
// called as bytes arrive.
func (s *segmenter) fetch(start, end int64, buf []byte, attempt int, arrived func()) error {
	f := s.f
	cur := start
	sink := s.sink(&cur, arrived)
	for ; ; attempt++ {
		if attempt > 0 {
			if err := clock.Sleep(s.ctx, f.g.opts.RetryInterval); err != nil {
				return context.Cause(s.ctx)
			}
		}
		body, err := s.request(cur, end)
		if err == nil {
			err = f.pump(s.ctx, io.LimitReader(body, end-cur), body, buf, sink)
			if err == nil {
				// Read the end of the body, so the connection is reused.
				body.Read(buf[:1])
			}
			body.Close()
			if err == nil && cur < end {
				err = ErrShortBody
			}
		}
		if err == nil {
			return nil
		}
		if !retryable(s.ctx, err) || attempt >= f.g.opts.Retry {
			if s.ctx.Err() != nil {
				return context.Cause(s.ctx)
			}
			return err
		}
		f.g.log.Info("resuming segment", "key", f.key, "offset", cur, "end", end, "attempt", attempt+1, "err", err)
	}
}

// request sends the ranged request for [start, end) and checks that the
// answer is exactly that range of the same object.
func (s *segmenter) request(start, end int64) (io.ReadCloser, error) {
	h := http.Header{}
	h.Set("Range", "bytes="+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end-1, 10))
	h.Set("If-Range", s.validator)
	resp, err := s.f.src.Get(s.ctx, h)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK:
		drain(resp.Body)
		return nil, errRangeIgnored
	case http.StatusRequestedRangeNotSatisfiable:
		drain(resp.Body)
		return nil, ErrOriginChanged
	default:
		drain(resp.Body)
		return nil, &StatusError{Code: resp.StatusCode, Header: resp.Header}
	}
	if err := sameRange(resp, start, end-1, s.info); err != nil {
		drain(resp.Body)
		return nil, err
	}
	return resp.Body, nil
}

// sink returns the function that writes a fetcher's bytes at *cur (and
// calls arrived, when not nil).
func (s *segmenter) sink(cur *int64, arrived func()) func([]byte) error {
	return func(p []byte) error {
		if err := s.sw.writeAt(s.f, *cur, p); err != nil {
			return err
		}
		*cur += int64(len(p))
		s.got.Add(int64(len(p)))
		if arrived != nil {
			arrived()
		}
		return nil
	}
}
