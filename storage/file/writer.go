package file

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/httpmirror/httpmirror/storage"
)

type writerState int

const (
	open writerState = iota
	committed
	cancelled
)

// The fill engine reads back, writes segments and completes the metadata
// through these.
var (
	_ storage.FileSpooler = (*writer)(nil)
	_ storage.WriterAt    = (*writer)(nil)
	_ storage.InfoUpdater = (*writer)(nil)
)

// writer writes a new object to a temporary file.
type writer struct {
	info storage.Info
	path string // final location
	f    *os.File

	ix       *index
	reserved int64 // cache space promised to this writer

	mu     sync.Mutex // guards state and closed against Close racing Commit
	state  writerState
	closed bool
	n      int64

	amu sync.Mutex // guards n and reserved for concurrent WriteAt calls
}

func (w *writer) Write(p []byte) (int, error) {
	if need := w.n + int64(len(p)) + trailerReserve - w.reserved; need > 0 {
		// A body longer than announced, or of unknown length: reserve
		// more, a megabyte at a time.
		grow := max(need, 1<<20)
		if err := w.ix.reserve(grow); err != nil {
			return 0, err
		}
		w.reserved += grow
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	return n, err
}

// WriteAt implements storage.WriterAt: a fill that downloads an object in
// parallel segments writes each where it belongs, from several goroutines.
// Written is then the end of the furthest byte written.
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	w.amu.Lock()
	if need := end + trailerReserve - w.reserved; need > 0 {
		grow := max(need, 1<<20)
		if err := w.ix.reserve(grow); err != nil {
			w.amu.Unlock()
			return 0, err
		}
		w.reserved += grow
	}
	w.amu.Unlock()
	n, err := w.f.WriteAt(p, off)
	w.amu.Lock()
	w.n = max(w.n, off+int64(n))
	w.amu.Unlock()
	return n, err
}

func (w *writer) Written() int64 { return w.n }

// ReadAt reads back written bytes; it may run concurrently with Write.
func (w *writer) ReadAt(p []byte, off int64) (int, error) { return w.f.ReadAt(p, off) }

// SpoolFile returns the file being written, so that the fill engine can
// open readers of its own on it (to send with sendfile). It stays valid
// until Close.
func (w *writer) SpoolFile() *os.File { return w.f }

// UpdateInfo implements storage.InfoUpdater: the metadata lives in the
// trailer that Commit writes after the body, so it can change until then.
func (w *writer) UpdateInfo(info storage.Info) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != open || w.closed {
		return fmt.Errorf("file: update of %s: %w", w.info.Key, storage.ErrWriterFinished)
	}
	info.Key, info.Size = w.info.Key, w.info.Size
	info.Header = info.Header.Clone()
	w.info = info
	return nil
}

func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != open || w.closed {
		return fmt.Errorf("file: commit of %s: %w", w.info.Key, storage.ErrWriterFinished)
	}
	info := w.info
	if info.Size >= 0 && info.Size != w.n {
		return fmt.Errorf("%w: wrote %d bytes, expected %d", storage.ErrSizeMismatch, w.n, info.Size)
	}
	info.Size = w.n
	if info.StoredAt.IsZero() {
		info.StoredAt = w.ix.clock()
	}
	buf, err := encodeTrailer(info)
	if err != nil {
		return err
	}
	if _, err := w.f.WriteAt(buf, w.n); err != nil {
		return err
	}
	if !w.ix.noSync {
		if err := w.f.Sync(); err != nil {
			return err
		}
	}
	dir := filepath.Dir(w.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	fi, err := w.f.Stat()
	if err != nil {
		return err
	}
	name := filepath.Base(w.path)
	size := w.n + int64(len(buf))
	mu := w.ix.stripe(name)
	mu.Lock()
	// The journal names the key before the rename: a process that dies
	// before the index holds the object leaves the key to be checked.
	j, err := w.ix.j.add(info.Key)
	if err != nil {
		mu.Unlock()
		return err
	}
	w.ix.point("commit-journaled")
	if err := os.Rename(w.f.Name(), w.path); err != nil {
		w.ix.j.done(j)
		mu.Unlock()
		return err
	}
	w.state = committed
	w.ix.point("commit-renamed")
	now := w.ix.clock().UnixNano()
	o := &op{kind: opPut, key: info.Key, j: j, reservation: w.reserved, done: make(chan error, 1),
		r: rec{fileSize: size, size: info.Size, storedAt: info.StoredAt.UnixNano(), used: now, ino: inode(fi),
			digest: indexedDigest(info.Header)}}
	queued, wait := false, false
	if j != nil {
		queued, wait = w.ix.st.enqueue(o)
	}
	mu.Unlock()
	w.reserved = 0
	w.ix.hotCommitted(name, size, inode(fi), info, now)
	if wait {
		<-o.done
	}
	if !queued {
		// The backend is closed: the object is indexed when it is next
		// used, or by the next rebuild.
		w.ix.j.done(j)
		w.ix.release(o.reservation)
	}
	if w.ix.noSync {
		return nil
	}
	// The rename is durable only once the directory entry is on disk.
	return syncDir(dir)
}

func (w *writer) Cancel(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cancelLocked()
}

func (w *writer) cancelLocked() error {
	if w.state != open {
		return nil
	}
	w.state = cancelled
	w.ix.release(w.reserved)
	w.reserved = 0
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	err := w.cancelLocked()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
