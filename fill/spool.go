package fill

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/httpmirror/httpmirror/storage"
)

// spoolWriter is where the body goes: the storage writer (w, nil once the
// object will not be stored) and, when w cannot read back or has failed, a
// spool of the fill's own: a file, or memory for a small object (mem).
type spoolWriter struct {
	w    storage.Writer
	file *os.File // own spool, nil while w is the spool
	mem  *memSpool

	// A segmented fill writes at offsets from several goroutines: they hold
	// mu shared while they write, and moving the spool holds it alone.
	mu sync.RWMutex
	wa storage.WriterAt // w, when it is the spool of a segmented fill
	// fed: w is fed from the spool file by a follower, not by write (see
	// store); set before the follower starts.
	fed bool
}

// openSpool creates the storage writer and the spool readers read from,
// and publishes info and the spool to readers. A storage backend that
// refuses or fails does not fail the fill: it falls back to a spool file
// so clients are still served, and nothing is cached.
//
// A segmented fill (random set) writes at offsets, so the storage writer
// is its spool only if it takes bytes at any offset (storage.WriterAt);
// otherwise the fill spools in a file of its own and feeds the writer the
// object's prefix in order. A small object (memSpoolMax) of a fill that is
// not segmented and not relayed (see store) spools in memory instead.
func (f *Fill) openSpool(ctx context.Context, info storage.Info, storable, random, relayed bool) (*spoolWriter, error) {
	g := f.g
	sw := &spoolWriter{}
	var w storage.Writer
	err := errNotStorable
	if storable {
		w, err = g.store.Create(ctx, f.key, info)
	}
	switch {
	case err == nil:
		sw.w = w
		f.addCloser(w.Close)
		sp, spooler := w.(storage.Spooler)
		wa, writerAt := w.(storage.WriterAt)
		if spooler && (!random || writerAt) {
			if random {
				sw.wa = wa
			}
			f.setHeader(info, sp)
			return sw, nil
		}
	case errors.Is(err, storage.ErrNoSpace):
		// The store's size policy, not a failure.
		g.log.Info("object does not fit in the cache; serving without caching", "key", f.key, "size", info.Size)
	case storable:
		g.storeFailed(f.key, "storage create failed", err)
	}
	if !random && !relayed && info.Size >= 0 && info.Size <= memSpoolMax && g.spoolInMemory(f, info.Size) {
		// A small object the fill does not store, or whose writer cannot
		// read back: a file made and unlinked per request would cost more
		// than everything else its miss does.
		sw.mem = &memSpool{data: make([]byte, info.Size)}
		f.setHeader(info, sw.mem)
	} else {
		file, err := f.newSpoolFile()
		if err != nil {
			if w != nil {
				w.Cancel(context.Background())
			}
			return nil, err
		}
		sw.file = file
		f.setHeader(info, file)
	}
	if sw.w == nil {
		f.dropKeep()
	}
	return sw, nil
}

// store makes a fill that relayed another party's copy (and spooled it in
// a file of its own, storing nothing) store the object after all: the
// party is gone, and this fill fetches the rest from the origin (see
// Options.Relayed). It creates the storage writer with info and returns a
// feeder that gives it the object's bytes, in order, read back from the
// spool file (the n that arrived first, then the rest as it arrives:
// the clients' bytes do not wait for the store to take the prefix), and
// the SHA-256 that the stored object keeps, unless v already hashes the
// bytes. The spool file stays the fill's spool. nil means the store
// refused: the fill goes on as it was, its clients served, nothing kept.
func (s *spoolWriter) store(ctx context.Context, f *Fill, info storage.Info, v *verifier) *feeder {
	if s.w != nil || s.file == nil || info.Size < 0 {
		return nil
	}
	w, err := f.g.store.Create(ctx, f.key, info)
	if err != nil {
		s.logDrop(f, err)
		return nil
	}
	f.addCloser(w.Close)
	s.mu.Lock()
	s.w, s.fed = w, true
	s.mu.Unlock()
	f.mu.Lock()
	f.keep = true // the fill now stores: it completes without readers
	f.mu.Unlock()
	fd := &feeder{v: v, done: make(chan error, 1)}
	if v.sha == nil {
		fd.sha = &verifier{sha: sha256.New()}
	}
	var fctx context.Context
	fctx, fd.cancel = context.WithCancelCause(ctx)
	go func() { fd.done <- follow(fctx, f, s, info.Size, fd.sha, true) }()
	return fd
}

// feeder feeds a storage writer from the spool (see spoolWriter.store).
type feeder struct {
	v      *verifier
	sha    *verifier // the SHA-256 computed beside the feed, when v has none
	cancel context.CancelCauseFunc
	done   chan error
}

// wait waits for the feed to end, after the fill's body ended with err
// (the feed is stopped at once when err is not nil), and returns err or,
// failing that, the feed's error. The SHA-256 it computed is then v's.
func (fd *feeder) wait(err error) error {
	if err != nil {
		fd.cancel(err)
	}
	ferr := <-fd.done
	fd.cancel(nil)
	if fd.sha != nil {
		fd.v.sha = fd.sha.sha
	}
	if err == nil {
		err = ferr
	}
	return err
}

// newSpoolFile creates an anonymous spool file in the spool directory.
func (f *Fill) newSpoolFile() (*os.File, error) {
	file, err := os.CreateTemp(f.g.opts.SpoolDir, "httpmirror-spool-*")
	if err != nil {
		return nil, fmt.Errorf("%w: creating spool file: %w", ErrSpool, err)
	}
	// Unlinked at once: the space is reclaimed when the last reader closes
	// it, even after a crash.
	os.Remove(file.Name())
	f.addCloser(file.Close)
	return file, nil
}

// write appends p, the bytes of the object at offset off. A storage writer
// that fails is dropped (the object will not be cached) and the clients
// are still served: from the fill's own spool file, which takes over the
// bytes the writer held when the writer was the spool. Only a spool file
// that cannot be written fails the fill, with ErrSpool.
func (s *spoolWriter) write(f *Fill, off int64, p []byte) error {
	if !s.fed && s.w != nil {
		if _, err := s.w.Write(p); err != nil {
			return s.dropWriter(f, off, p, err)
		}
		if s.file == nil && s.mem == nil {
			return nil
		}
	}
	if s.mem != nil {
		return s.mem.write(p)
	}
	if _, err := s.file.Write(p); err != nil {
		return fmt.Errorf("%w: %w", ErrSpool, err)
	}
	return nil
}

// dropWriter gives up storing after the writer failed with werr while
// writing p at off, moving the spool to a file of the fill's own if the
// writer was it.
func (s *spoolWriter) dropWriter(f *Fill, off int64, p []byte, werr error) error {
	w := s.w
	s.w = nil
	s.logDrop(f, werr)
	defer func() {
		// The writer's file stays readable through its open handle until
		// the fill's last reference goes (its Close is a closer).
		w.Cancel(context.Background())
		f.dropKeep()
	}()
	if s.mem != nil {
		return s.mem.write(p)
	}
	if s.file != nil {
		_, err := s.file.Write(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSpool, err)
		}
		return nil
	}
	file, err := f.newSpoolFile()
	if err != nil {
		return err
	}
	// Copy what the writer holds, then the bytes it refused.
	if _, err := io.Copy(file, io.NewSectionReader(w.(storage.Spooler), 0, off)); err != nil {
		return fmt.Errorf("%w: moving the spool: %w", ErrSpool, err)
	}
	if _, err := file.Write(p); err != nil {
		return fmt.Errorf("%w: %w", ErrSpool, err)
	}
	s.file = file
	f.setSpool(file)
	return nil
}

// spoolFile returns the file the spool's bytes are in, if they are in one,
// and the spool's generation.
func (f *Fill) spoolFile() (*os.File, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch s := f.spool.(type) {
	case *os.File:
		return s, f.gen
	case storage.FileSpooler:
		return s.SpoolFile(), f.gen
	}
	return nil, f.gen
}

// writeAt writes p, the bytes of a segmented fill's object at off, and
// makes them visible to readers. A storage writer that is the spool and
// fails is dropped and the spool moved, as write does.
func (s *spoolWriter) writeAt(f *Fill, off int64, p []byte) error {
	s.mu.RLock()
	var err error
	if s.file != nil {
		_, err = s.file.WriteAt(p, off)
		if err != nil {
			err = fmt.Errorf("%w: %w", ErrSpool, err)
		}
	} else if _, werr := s.wa.WriteAt(p, off); werr != nil {
		s.mu.RUnlock()
		return s.moveSpoolAt(f, off, p, werr)
	}
	if err == nil {
		f.advanceAt(off, int64(len(p)))
	}
	s.mu.RUnlock()
	return err
}

// moveSpoolAt gives up storing a segmented fill's object after its writer,
// the spool, failed with werr: every byte that arrived is copied to a spool
// file of the fill's own, then p is written at off.
func (s *spoolWriter) moveSpoolAt(f *Fill, off int64, p []byte, werr error) error {
	s.mu.Lock()
	if s.file == nil {
		w := s.w
		s.logDrop(f, werr)
		file, err := f.newSpoolFile()
		if err == nil {
			err = copyArrived(f, file, w.(storage.Spooler))
		}
		w.Cancel(context.Background())
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.w, s.wa, s.file = nil, nil, file
		f.setSpool(file)
		defer f.dropKeep()
	}
	_, err := s.file.WriteAt(p, off)
	if err == nil {
		f.advanceAt(off, int64(len(p)))
	} else {
		err = fmt.Errorf("%w: %w", ErrSpool, err)
	}
	s.mu.Unlock()
	return err
}

// copyArrived copies every byte of f that arrived from src to dst.
func copyArrived(f *Fill, dst *os.File, src io.ReaderAt) error {
	f.mu.Lock()
	spans := append(intervals(nil), f.filled...)
	f.mu.Unlock()
	for _, sp := range spans {
		w := io.NewOffsetWriter(dst, sp.start)
		if _, err := io.Copy(w, io.NewSectionReader(src, sp.start, sp.end-sp.start)); err != nil {
			return fmt.Errorf("%w: moving the spool: %w", ErrSpool, err)
		}
	}
	return nil
}

// dropFed gives up storing after the writer fed from the spool failed.
func (s *spoolWriter) dropFed(f *Fill, werr error) {
	s.mu.Lock()
	w := s.w
	s.w = nil
	s.mu.Unlock()
	if w == nil {
		return
	}
	s.logDrop(f, werr)
	w.Cancel(context.Background())
	f.dropKeep()
}

// logDrop logs that the object will not be stored because the writer
// failed with err.
func (s *spoolWriter) logDrop(f *Fill, err error) {
	if errors.Is(err, storage.ErrNoSpace) {
		f.g.log.Info("object does not fit in the cache; serving without caching", "key", f.key)
	} else {
		f.g.storeFailed(f.key, "storage write failed", err)
	}
}

// memSpoolMax is the largest object a fill spools in memory when the
// storage writer is not its spool, and memSpoolBudget what all such
// spools hold at most (their clients may be slow to read): beyond it,
// fills spool in files again.
const (
	memSpoolMax    = 64 << 10
	memSpoolBudget = 64 << 20
)

// spoolInMemory reports whether f may spool its size bytes in memory,
// counting them against memSpoolBudget until f's last reference goes.
func (g *Group) spoolInMemory(f *Fill, size int64) bool {
	if g.memSpooled.Add(size) > memSpoolBudget {
		g.memSpooled.Add(-size)
		return false
	}
	f.addCloser(func() error {
		g.memSpooled.Add(-size)
		return nil
	})
	return true
}

// memSpool is a spool in memory, of the object's size from the start:
// write appends, and readers read what the fill made visible (below
// Fill.n), which write never touches again.
type memSpool struct {
	data []byte
	n    int // bytes written, the fill's goroutine's alone
}

func (m *memSpool) write(p []byte) error {
	if len(p) > len(m.data)-m.n {
		return fmt.Errorf("%w: more bytes than the object's length", ErrSpool)
	}
	m.n += copy(m.data[m.n:], p)
	return nil
}

func (m *memSpool) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
