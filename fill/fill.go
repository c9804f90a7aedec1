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
package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

var (
	// ErrNotOK is matched by every *StatusError.
	ErrNotOK = errors.New("http status not ok")

	// ErrStored is returned by Fill.Header when the object turned out to be
	// in storage already (committed by a fill that finished just before this
	// one started). The caller serves the stored object.
	ErrStored = errors.New("fill: object already stored")

	// ErrOriginChanged is returned when a resumed download shows that the
	// origin's object changed since the fill began.
	ErrOriginChanged = errors.New("fill: origin object changed during download")

	// ErrShortBody is returned when the origin's body ended before its
	// Content-Length.
	ErrShortBody = errors.New("fill: upstream body shorter than Content-Length")

	// ErrIdleTimeout is returned when the origin sent no bytes for longer
	// than the Group's IdleTimeout.
	ErrIdleTimeout = errors.New("fill: upstream body idle timeout")

	// ErrShutdown is returned for fills aborted by Group.Shutdown.
	ErrShutdown = errors.New("fill: server shutting down")

	// ErrNotModified is matched by *NotModifiedError.
	ErrNotModified = errors.New("fill: not modified")
)

// NotModifiedError ends a revalidating fill whose origin answered 304 Not
// Modified: the stored object is still current. Header holds the 304's
// headers, which may update the stored ones (RFC 9111 section 4.3.4).
type NotModifiedError struct {
	Header http.Header
}

func (e *NotModifiedError) Error() string { return "upstream 304 not modified" }

// Is makes errors.Is(err, ErrNotModified) true.
func (e *NotModifiedError) Is(target error) bool { return target == ErrNotModified }

// StatusError is the result of a fill whose origin answered with a status
// other than 200 OK. Header holds the origin's response headers.
type StatusError struct {
	Code   int
	Header http.Header
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream status %d %s", e.Code, http.StatusText(e.Code))
}

// Is makes errors.Is(err, ErrNotOK) true.
func (e *StatusError) Is(target error) bool { return target == ErrNotOK }

// Source is where a fill gets its bytes from.
type Source struct {
	// URL names the origin object; it is used in logs only.
	URL string
	// Get sends a GET for the object with the given extra request headers
	// (Range and If-Range when resuming) and returns the response.
	Get func(ctx context.Context, h http.Header) (*http.Response, error)
	// Validators, when set, are sent with the first request
	// (If-None-Match, If-Modified-Since) to revalidate a stored object: a
	// 304 answer ends the fill with a *NotModifiedError, a 200 replaces
	// the object.
	Validators http.Header
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
	// SpoolDir holds temporary spool files for backends whose writers
	// cannot read back (storage.Spooler). Empty means os.TempDir().
	SpoolDir string
	// Info builds the stored metadata from the origin's response. Nil
	// means InfoFromResponse.
	Info func(*http.Response) storage.Info
	// Storable reports whether a 200 response may be stored (it may not
	// when the origin says no-store, for example); an unstorable body is
	// still streamed to the fill's clients from a temporary spool. Nil
	// means every response is storable.
	Storable func(*http.Response) bool
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
	wg     sync.WaitGroup

	mu    sync.Mutex
	fills map[string]*Fill
	idle  chan struct{} // closed while no fill runs; replaced when one starts
}

// NewGroup returns a Group that stores objects in store. It panics if store
// is nil, which is a programming error.
func NewGroup(store storage.Backend, opts Options) *Group {
	if store == nil {
		panic("fill: NewGroup with nil storage")
	}
	if opts.Info == nil {
		opts.Info = InfoFromResponse
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

// Wait blocks until no fill is in progress or ctx is done. Fills started
// while waiting extend the wait.
func (g *Group) Wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		idle, n := g.idle, len(g.fills)
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
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// InProgress reports how many fills are running.
func (g *Group) InProgress() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.fills)
}

// Get returns the fill for key, starting it from src when none is running.
// joined reports whether the caller joined a fill that was already running.
//
// A new fill first checks storage again, because a fill for the same key may
// have committed between the caller's miss and this call; it then finishes
// with ErrStored and no upstream request. force skips that check, for
// refetching an object known to be stale.
//
// The caller must call Release on the returned Fill when done with it.
func (g *Group) Get(key string, src Source, force bool) (f *Fill, joined bool) {
	g.mu.Lock()
	if f := g.fills[key]; f != nil {
		f.refs++
		g.mu.Unlock()
		return f, true
	}
	f = &Fill{
		g:        g,
		key:      key,
		src:      src,
		force:    force,
		refs:     2, // the caller and the running fill
		header:   make(chan struct{}),
		done:     make(chan struct{}),
		progress: make(chan struct{}),
		size:     -1,
	}
	if len(g.fills) == 0 {
		g.idle = make(chan struct{})
	}
	g.fills[key] = f
	g.wg.Add(1)
	g.mu.Unlock()
	go f.run()
	return f, false
}

// Fill is one download in progress, shared by every client of its key.
type Fill struct {
	g     *Group
	key   string
	src   Source
	force bool

	refs int // guarded by g.mu

	header chan struct{} // closed once info (or err) is known
	info   storage.Info  // valid after header is closed, when hdrErr is nil
	hdrErr error         // set before header is closed

	done chan struct{} // closed when the fill has finished

	mu       sync.Mutex
	n        int64         // bytes available in the spool
	size     int64         // final size once known, else -1
	err      error         // final error, valid once done is closed
	stored   bool          // committed to storage
	progress chan struct{} // closed and replaced when n grows (if waiting) or the fill ends
	waiting  bool          // a reader waits on progress
	spool    io.ReaderAt
	closers  []func() error // spool resources, run when the last reference goes
}

// Key returns the fill's cache key.
func (f *Fill) Key() string { return f.key }

// Header waits until the origin's response headers are known and returns the
// object's metadata (Size is -1 when the origin sent no Content-Length). It
// returns ErrStored when the object was found in storage instead, a
// *StatusError for a non-200 origin response, or the error that stopped the
// fill before any byte arrived.
func (f *Fill) Header(ctx context.Context) (storage.Info, error) {
	select {
	case <-f.header:
		return f.info, f.hdrErr
	case <-ctx.Done():
		return storage.Info{}, context.Cause(ctx)
	}
}

// Done is closed when the fill has finished, successfully or not.
func (f *Fill) Done() <-chan struct{} { return f.done }

// Err returns the fill's final error. It is valid once Done is closed; nil
// means every byte arrived.
func (f *Fill) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Stored reports whether the fill committed the object to storage. It is
// valid once Done is closed. A fill can succeed without storing when the
// storage backend failed: its clients were still served from the spool.
func (f *Fill) Stored() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stored
}

// Size returns the object's size once known (from Content-Length, or at the
// end of a body without one), else -1.
func (f *Fill) Size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.size
}

// ReadAt reads bytes of the object at off, waiting until at least one of
// them has arrived. It returns fewer bytes than len(p) when fewer are
// available, io.EOF at the end of a successful fill, and the fill's error
// (or ctx's) when the bytes will never come.
func (f *Fill) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.Available(ctx, off)
	if err != nil {
		return 0, err
	}
	want := min(int64(len(p)), n-off)
	got, err := f.spool.ReadAt(p[:want], off)
	if err == io.EOF {
		// These bytes were written: the spool must have them.
		err = nil
		if int64(got) < want {
			err = io.ErrUnexpectedEOF
		}
	}
	return got, err
}

// Available waits until bytes beyond off have arrived and returns how many
// bytes of the object are in the spool (more than off). It returns io.EOF
// when the fill completed with no bytes beyond off, and the fill's error (or
// ctx's) when they will never come.
func (f *Fill) Available(ctx context.Context, off int64) (int64, error) {
	for {
		f.mu.Lock()
		n, err, ch := f.n, f.err, f.progress
		finished := f.isDone()
		if off >= n && !finished {
			f.waiting = true
		}
		f.mu.Unlock()
		if off < n {
			return n, nil
		}
		if finished {
			if err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, context.Cause(ctx)
		}
	}
}

// OpenSpool opens a read-only handle of its own on the spool, when the
// spool is a file: a client can then send what has arrived with sendfile,
// from its own file offset. The caller closes it; it stays valid after the
// fill ends. It fails where the platform cannot reopen an open file.
func (f *Fill) OpenSpool() (*os.File, error) {
	var file *os.File
	switch s := f.spool.(type) {
	case *os.File:
		file = s
	case storage.FileSpooler:
		file = s.SpoolFile()
	}
	if file == nil {
		return nil, errors.New("fill: spool is not a file")
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd uintptr
	if err := rc.Control(func(d uintptr) { fd = d }); err != nil {
		return nil, err
	}
	// A new open file description: its offset is this reader's alone.
	return os.Open("/proc/self/fd/" + strconv.Itoa(int(fd)))
}

// isDone reports whether done is closed; f.mu must be held.
func (f *Fill) isDone() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// Release drops the caller's reference. The spool is closed when the fill
// has finished and every reference is gone.
func (f *Fill) Release() {
	f.g.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.g.mu.Unlock()
	if last {
		f.mu.Lock()
		closers := f.closers
		f.closers = nil
		f.mu.Unlock()
		for _, c := range closers {
			if err := c(); err != nil {
				f.g.log.Warn("closing spool", "key", f.key, "err", err)
			}
		}
	}
}

// setHeader publishes the object's metadata and the spool to readers.
func (f *Fill) setHeader(info storage.Info, spool io.ReaderAt) {
	f.mu.Lock()
	f.spool = spool
	f.size = info.Size
	f.mu.Unlock()
	f.info = info
	close(f.header)
}

// advance makes n more bytes visible to readers. Readers that are busy
// sending find the new bytes when they come back; only when one is waiting
// is the progress channel closed (and a new one made), so a fill whose
// clients keep up does not allocate per chunk.
func (f *Fill) advance(n int) {
	f.mu.Lock()
	f.n += int64(n)
	if f.waiting {
		f.waiting = false
		close(f.progress)
		f.progress = make(chan struct{})
	}
	f.mu.Unlock()
}

// finish ends the fill. It removes the fill from the group first, so that
// requests arriving afterwards see the committed object (or start anew after
// a failure) instead of joining a finished fill.
func (f *Fill) finish(err error, stored bool) {
	f.g.mu.Lock()
	if f.g.fills[f.key] == f {
		delete(f.g.fills, f.key)
		if len(f.g.fills) == 0 {
			close(f.g.idle)
		}
	}
	f.g.mu.Unlock()

	select {
	case <-f.header:
	default:
		f.hdrErr = err
		if err == nil {
			f.hdrErr = errors.New("fill: finished without a response")
		}
		close(f.header)
	}
	f.mu.Lock()
	f.err = err
	f.stored = stored
	if err == nil {
		f.size = f.n
	}
	close(f.done)
	close(f.progress)
	f.progress = make(chan struct{})
	f.mu.Unlock()
}

func (f *Fill) run() {
	g := f.g
	defer g.wg.Done()
	defer f.Release()
	ctx := g.ctx
	log := g.log.With("key", f.key)
	if ctx.Err() != nil {
		f.finish(context.Cause(ctx), false)
		return
	}

	if !f.force && f.src.Validators == nil {
		if _, err := g.store.Stat(ctx, f.key); err == nil {
			f.finish(ErrStored, true)
			return
		} else if !errors.Is(err, storage.ErrNotFound) {
			log.Warn("storage stat failed; fetching from origin", "err", err)
		}
	}

	start := time.Now()
	n, stored, err := f.fetch(ctx, log)
	g.opts.Observer.FillDone(f.key, n, stored, err, time.Since(start))
	if err != nil {
		if !errors.Is(err, ErrNotOK) && !errors.Is(err, ErrNotModified) {
			log.Warn("fill failed", "upstream", f.src.URL, "bytes", n, "err", err)
		}
	} else {
		log.Debug("fill complete", "upstream", f.src.URL, "bytes", n, "stored", stored, "duration", time.Since(start))
	}
	f.finish(err, stored)
}

// fetch downloads the object into the spool and storage. It returns the
// bytes received, whether the object was committed, and the error that
// ended the download.
func (f *Fill) fetch(ctx context.Context, log *slog.Logger) (n int64, stored bool, err error) {
	g := f.g
	resp, err := f.src.Get(ctx, f.src.Validators.Clone())
	if err != nil {
		return 0, false, f.cause(ctx, err)
	}
	if resp.StatusCode == http.StatusNotModified && f.src.Validators != nil {
		drain(resp.Body)
		return 0, false, &NotModifiedError{Header: resp.Header}
	}
	if resp.StatusCode != http.StatusOK {
		drain(resp.Body)
		return 0, false, &StatusError{Code: resp.StatusCode, Header: resp.Header}
	}
	info := g.opts.Info(resp)
	info.Key = f.key
	storable := g.opts.Storable == nil || g.opts.Storable(resp)

	spool, err := f.openSpool(ctx, info, storable)
	if err != nil {
		resp.Body.Close()
		return 0, false, err
	}
	f.setHeader(info, spool.reader)

	n, err = f.copyBody(ctx, resp, info, spool)
	// spool.w is nil when storage failed: the clients are served from the
	// spool and nothing is cached.
	w := spool.w
	if err != nil {
		if w != nil {
			w.Cancel(context.Background())
		}
		return n, false, err
	}
	if w == nil {
		return n, false, nil
	}
	if err := w.Commit(ctx); err != nil {
		// Every client got its bytes from the spool; only the cache
		// misses out. The next request fetches again.
		log.Error("storage commit failed; object not cached", "err", err)
		w.Cancel(context.Background())
		return n, false, nil
	}
	return n, true, nil
}

// cause turns a cancellation of the group's context into ErrShutdown.
func (f *Fill) cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return err
}

// spoolWriter is where the body goes: the storage writer (w, nil after a
// storage failure) and, when w cannot read back, a separate spool file.
type spoolWriter struct {
	w      storage.Writer
	file   *os.File // separate spool, nil when w is the spool
	reader io.ReaderAt
}

// openSpool creates the storage writer and the spool readers read from. A
// failing storage backend does not fail the fill: it falls back to a
// temporary spool so clients are still served, and nothing is cached.
func (f *Fill) openSpool(ctx context.Context, info storage.Info, storable bool) (*spoolWriter, error) {
	g := f.g
	sw := &spoolWriter{}
	var w storage.Writer
	err := errNotStorable
	if storable {
		w, err = g.store.Create(ctx, f.key, info)
	}
	if err != nil {
		if storable {
			g.log.Error("storage create failed; serving without caching", "key", f.key, "err", err)
		}
	} else {
		sw.w = w
		f.addCloser(w.Close)
		if sp, ok := w.(storage.Spooler); ok {
			sw.reader = sp
			return sw, nil
		}
	}
	file, err := os.CreateTemp(g.opts.SpoolDir, "httpmirror-spool-*")
	if err != nil {
		if w != nil {
			w.Cancel(context.Background())
		}
		return nil, fmt.Errorf("creating spool: %w", err)
	}
	// Unlinked at once: the space is reclaimed when the last reader closes
	// it, even after a crash.
	os.Remove(file.Name())
	f.addCloser(file.Close)
	sw.file = file
	sw.reader = file
	return sw, nil
}

func (f *Fill) addCloser(c func() error) {
	f.mu.Lock()
	f.closers = append(f.closers, c)
	f.mu.Unlock()
}

func (s *spoolWriter) write(ctx context.Context, log *slog.Logger, p []byte) error {
	if s.file != nil {
		if _, err := s.file.Write(p); err != nil {
			return err
		}
		if s.w != nil {
			if _, err := s.w.Write(p); err != nil {
				log.Error("storage write failed; object will not be cached", "err", err)
				s.w.Cancel(context.Background())
				s.w = nil
			}
		}
		return nil
	}
	_, err := s.w.Write(p)
	return err
}

const bufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// copyBody copies the origin's body into the spool, resuming broken bodies
// as the options allow. It returns the number of bytes written.
func (f *Fill) copyBody(ctx context.Context, resp *http.Response, info storage.Info, sw *spoolWriter) (int64, error) {
	g := f.g
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	body := resp.Body
	for attempt := 0; ; {
		err := f.copyOnce(ctx, body, buf, sw, &n)
		body.Close()
		if err == nil {
			if info.Size >= 0 && n != info.Size {
				return n, ErrShortBody
			}
			return n, nil
		}
		if ctx.Err() != nil {
			return n, f.cause(ctx, err)
		}
		if errors.Is(err, errSpool) {
			return n, err
		}
		if attempt >= g.opts.Retry {
			return n, err
		}
		validator := ifRangeValidator(info)
		if validator == "" {
			return n, fmt.Errorf("%w (cannot resume: origin sent no strong ETag or Last-Modified)", err)
		}
		// Attempts that fail before any body arrives count too, so a dead
		// origin ends the fill after Retry tries.
		for {
			attempt++
			g.log.Info("resuming upstream body", "key", f.key, "offset", n, "attempt", attempt, "err", err)
			if err := sleep(ctx, g.opts.RetryInterval); err != nil {
				return n, f.cause(ctx, err)
			}
			body, err = f.resume(ctx, n, info, validator)
			if err == nil {
				break
			}
			if errors.Is(err, ErrOriginChanged) || attempt >= g.opts.Retry || ctx.Err() != nil {
				return n, f.cause(ctx, err)
			}
		}
	}
}

var (
	errSpool       = errors.New("writing spool")
	errNotStorable = errors.New("response not storable")
)

// copyOnce copies body into the spool until EOF or an error, updating *n.
func (f *Fill) copyOnce(ctx context.Context, body io.Reader, buf []byte, sw *spoolWriter, n *int64) error {
	// A body whose reader ignores cancellation would keep a shutdown
	// waiting: close it when the group's context ends.
	closer, _ := body.(io.Closer)
	if closer != nil {
		stop := context.AfterFunc(ctx, func() { closer.Close() })
		defer stop()
	}
	idle := f.g.opts.IdleTimeout
	var timer *time.Timer
	timedOut := make(chan struct{})
	if idle > 0 {
		// A body that stalls is closed from the timer; the blocked Read then
		// returns and the stall is reported as ErrIdleTimeout.
		timer = time.AfterFunc(idle, func() {
			close(timedOut)
			if closer != nil {
				closer.Close()
			}
		})
		defer timer.Stop()
	}
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			f.g.opts.Observer.UpstreamBytes(m)
			if err := sw.write(ctx, f.g.log, buf[:m]); err != nil {
				return fmt.Errorf("%w: %w", errSpool, err)
			}
			*n += int64(m)
			f.advance(m)
		}
		if timer != nil {
			select {
			case <-timedOut:
				return ErrIdleTimeout
			default:
				timer.Reset(idle)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if rerr == io.ErrUnexpectedEOF {
				return fmt.Errorf("%w: %w", ErrShortBody, rerr)
			}
			return rerr
		}
	}
}

// resume requests the rest of the object from offset and checks that the
// origin continues the same object there.
func (f *Fill) resume(ctx context.Context, offset int64, info storage.Info, validator string) (io.ReadCloser, error) {
	h := http.Header{}
	h.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	h.Set("If-Range", validator)
	resp, err := f.src.Get(ctx, h)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK, http.StatusRequestedRangeNotSatisfiable:
		// 200: If-Range did not match, the origin sent a new full object.
		// 416: the object shrank below offset.
		drain(resp.Body)
		return nil, ErrOriginChanged
	default:
		drain(resp.Body)
		return nil, &StatusError{Code: resp.StatusCode, Header: resp.Header}
	}
	start, end, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok || start != offset || (info.Size >= 0 && (total != info.Size || end != total-1)) ||
		(resp.ContentLength >= 0 && resp.ContentLength != end-start+1) {
		drain(resp.Body)
		return nil, fmt.Errorf("%w: resume answered Content-Range %q for offset %d", ErrOriginChanged, resp.Header.Get("Content-Range"), offset)
	}
	if etag := resp.Header.Get("ETag"); etag != "" && info.ETag != "" && etag != info.ETag {
		drain(resp.Body)
		return nil, fmt.Errorf("%w: ETag %s became %s", ErrOriginChanged, info.ETag, etag)
	}
	return resp.Body, nil
}

// ifRangeValidator returns the If-Range value for resuming: the ETag when it
// is strong (RFC 9110 13.1.5 forbids weak ones), else Last-Modified.
func ifRangeValidator(info storage.Info) string {
	if info.ETag != "" && !strings.HasPrefix(info.ETag, "W/") {
		return info.ETag
	}
	if !info.LastModified.IsZero() {
		return info.LastModified.UTC().Format(http.TimeFormat)
	}
	return ""
}

// parseContentRange parses "bytes START-END/TOTAL".
func parseContentRange(s string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(b, 10, 64)
	if tot == "*" {
		total = -1
	} else {
		total, err3 = strconv.ParseInt(tot, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || (total >= 0 && end >= total) {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain reads a little of an unwanted body so the connection can be reused,
// then closes it.
func drain(body io.ReadCloser) {
	io.CopyN(io.Discard, body, 64<<10)
	body.Close()
}

// keptHeaders are the origin response headers stored with an object and
// replayed on every hit, besides ETag, Last-Modified and Content-Type.
var keptHeaders = []string{
	"Cache-Control",
	"Content-Disposition",
	"Content-Encoding",
	"Content-Language",
	"Expires",
	"Link",
	"X-Linked-Etag",
	"X-Linked-Size",
	"X-Repo-Commit",
}

// InfoFromResponse extracts the metadata httpmirror stores with an object
// from the origin's response.
func InfoFromResponse(resp *http.Response) storage.Info {
	info := storage.Info{
		Size:        resp.ContentLength,
		ETag:        resp.Header.Get("ETag"),
		ContentType: resp.Header.Get("Content-Type"),
	}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		info.LastModified = t
	}
	for _, k := range keptHeaders {
		if v := resp.Header.Values(k); len(v) > 0 {
			if info.Header == nil {
				info.Header = make(http.Header)
			}
			info.Header[k] = v
		}
	}
	return info
}
