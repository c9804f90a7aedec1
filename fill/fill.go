package fill

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/httpmirror/httpmirror/storage"
)

// Fill is one download in progress, shared by every client of its key.
type Fill struct {
	g          *Group
	key        string
	src        Source
	op         op
	validators http.Header // sent with the first request when revalidating

	refs int // guarded by g.mu

	header chan struct{} // closed once info (or err) is known
	info   storage.Info  // valid after header is closed, when hdrErr is nil
	hdrErr error         // set before header is closed

	done chan struct{} // closed when the fill has finished

	mu       sync.Mutex
	n        int64         // bytes of the object's prefix in the spool
	filled   intervals     // a segmented fill's bytes in the spool, prefix included
	seg      *segmenter    // the segment scheduler, nil unless segmented
	size     int64         // final size once known, else -1
	err      error         // final error, valid once done is closed
	stored   bool          // committed to storage
	progress chan struct{} // closed and replaced when n grows (if waiting) or the fill ends
	waiting  bool          // a reader waits on progress
	// holdLast keeps the object's last byte from readers until the
	// verdict (see verified) or the fill's end: the bytes are checked
	// against a published digest, and no reader may finish a response
	// before the verdict (see verifier).
	holdLast bool
	spool    io.ReaderAt    // where the bytes are; replaced when storage fails (see spoolWriter)
	gen      int            // counts spool replacements
	closers  []func() error // spool resources, run when the last reference goes
	// keep is false once the fill will not store the object (the origin
	// forbids it, the store refused it or failed): such a fill only serves
	// its readers, and stops when the last one leaves.
	keep bool

	control // the fill's context, cancel and start time
}

// Key returns the fill's cache key.
func (f *Fill) Key() string { return f.key }

// Header waits until the origin's response headers are known and returns the
// object's metadata (Size is -1 when the origin sent no Content-Length). It
// returns a *StatusError for a non-200 origin response, a
// *NotModifiedError when a revalidation confirmed the stored object, or the
// error that stopped the fill before any byte arrived.
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

// Wait blocks until the fill has finished and returns its error (nil when
// every byte arrived), or ctx's cause when ctx ends first.
func (f *Fill) Wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.Err()
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// Err returns the fill's final error. It is valid once Done is closed; nil
// means every byte arrived.
func (f *Fill) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Stored reports whether the object is committed to storage: by this fill,
// or, for a miss, before it started. It is valid once Done is closed. A
// fill can succeed without storing when the storage backend failed: its
// clients were still served from the spool.
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
	f.mu.Lock()
	spool := f.spool
	f.mu.Unlock()
	got, err := spool.ReadAt(p[:want], off)
	if err == io.EOF {
		// These bytes were written: the spool must have them.
		err = nil
		if int64(got) < want {
			err = io.ErrUnexpectedEOF
		}
	}
	return got, err
}

// Arrived returns how many bytes of the object are in the spool now.
func (f *Fill) Arrived() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// Available waits until the byte at off has arrived and returns the end of
// the run of arrived bytes that starts there: bytes [off, n) are in the
// spool. It returns io.EOF when the fill completed with no bytes beyond
// off, and the fill's error (or ctx's) when they will never come. A
// segmented fill asked for a byte ahead of its prefix fetches the segment
// from that byte next (see segmenter.want).
//
// While the bytes are checked against a published digest, the object's
// last byte is available only once the fill has ended without error: no
// reader finishes a response before the verdict, and on a mismatch every
// reader gets the fill's error instead.
func (f *Fill) Available(ctx context.Context, off int64) (int64, error) {
	return f.available(ctx, off, asReader)
}

// waiter is who waits for bytes of a fill.
type waiter uint8

const (
	// asReader: a reader, who gets the last byte only after a verdict
	// (see holdLast) and whose wait for a byte ahead of the prefix makes
	// a segmented fill fetch it next (segmenter.want).
	asReader waiter = iota
	// asFollower: the fill itself, following its prefix (see follow):
	// it neither waits for a verdict it makes nor changes the schedule.
	asFollower
)

// available is Available for who.
func (f *Fill) available(ctx context.Context, off int64, who waiter) (int64, error) {
	for {
		f.mu.Lock()
		n, err, ch, seg := f.n, f.err, f.progress, f.seg
		if seg != nil && off >= n {
			n = f.filled.runFrom(off)
		}
		finished := f.isDone()
		if who == asReader && f.holdLast && (!finished || err != nil) && f.size > 0 {
			// Until the fill ended well: on a mismatch (or any failure)
			// the last byte never comes.
			n = min(n, f.size-1)
		}
		if off >= n && !finished {
			f.waiting = true
		}
		f.mu.Unlock()
		if off < n {
			return n, nil
		}
		if seg != nil && !finished && who == asReader {
			seg.want(off)
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
// has finished and every reference is gone. A fill that will not store its
// object is stopped when its last reader releases it: nobody would get its
// bytes, and a large download for nobody must not go on filling the disk
// and the link.
func (f *Fill) Release() {
	f.g.mu.Lock()
	f.refs--
	last := f.refs == 0
	if f.refs == 1 {
		f.abandonLocked()
	}
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

// ErrAbandoned ends a fill that nobody read any more and that would not
// have been stored.
var ErrAbandoned = errors.New("fill: abandoned: no reader left and nothing to store")

// abandonLocked stops the fill if its own reference is the only one left,
// it is still running, and it will not store its object. It removes the
// fill from the group at once, so that a new request starts a new fill
// instead of joining one being stopped. f.g.mu must be held.
func (f *Fill) abandonLocked() {
	if f.refs != 1 {
		return
	}
	f.mu.Lock()
	stop := !f.keep && !f.isDone()
	f.mu.Unlock()
	if !stop {
		return
	}
	if f.g.fills[f.key] == f {
		delete(f.g.fills, f.key)
	}
	f.cancel(ErrAbandoned)
}

// dropKeep records that the fill will not store its object, and stops it if
// nobody reads it already.
func (f *Fill) dropKeep() {
	f.g.mu.Lock()
	defer f.g.mu.Unlock()
	f.mu.Lock()
	f.keep = false
	f.mu.Unlock()
	f.abandonLocked()
}

// setSpool replaces the spool readers read from; the new one holds every
// byte the old one had.
func (f *Fill) setSpool(spool io.ReaderAt) {
	f.mu.Lock()
	f.spool = spool
	f.gen++
	f.mu.Unlock()
}

func (f *Fill) addCloser(c func() error) {
	f.mu.Lock()
	f.closers = append(f.closers, c)
	f.mu.Unlock()
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
func (f *Fill) advance(n int64) {
	f.mu.Lock()
	f.n += n
	f.wakeLocked()
	f.mu.Unlock()
}

// wakeLocked wakes the readers waiting on progress; f.mu must be held.
func (f *Fill) wakeLocked() {
	if f.waiting {
		f.waiting = false
		close(f.progress)
		f.progress = make(chan struct{})
	}
}

// advanceAt makes the n bytes at off visible to readers of a segmented
// fill.
func (f *Fill) advanceAt(off, n int64) {
	f.mu.Lock()
	f.filled.add(off, off+n)
	f.n = f.filled.runFrom(0)
	f.wakeLocked()
	f.mu.Unlock()
}

// finish ends the fill. It removes the fill from the group first, so that
// requests arriving afterwards see the committed object (or start anew after
// a failure) instead of joining a finished fill.
func (f *Fill) finish(err error, stored bool) {
	f.g.mu.Lock()
	if f.g.fills[f.key] == f {
		delete(f.g.fills, f.key)
	}
	f.g.mu.Unlock()
	f.cancel(nil) // release the context's resources; the cause is kept if set

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
