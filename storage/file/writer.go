package file

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// memSpool is the largest object whose writer holds its body in memory
// until Commit instead of in a temporary file: a miss of a small file
// then costs no file until the object is complete, its readers read from
// memory, and Commit writes the body and its trailer at once.
const memSpool = 64 << 10

// writingMax bounds the memory all writers hold bodies in (see memSpool):
// their readers may be slow, and their origins too. A small object's
// writer beyond it writes to a temporary file, as a larger object's does.
const writingMax = 64 << 20

// writer writes a new object: to a temporary file, or, for a small object
// of known size, to memory first (see memSpool).
type writer struct {
	info storage.Info
	path string // final location

	ix       *index
	reserved int64 // cache space promised to this writer

	mu     sync.Mutex // guards state and closed against Close racing Commit
	state  writerState
	closed bool
	n      int64

	// amu guards n and reserved for concurrent WriteAt calls, and f, mem
	// and buf, which a writer that outgrows memory changes (spill) while
	// readers read back.
	amu sync.Mutex
	f   *os.File // the temporary file; nil while the body is in memory only
	// mem: the body is in buf, whose capacity is the announced size (it
	// never moves, so bytes read back stay valid). The file made at
	// Commit holds a copy.
	mem bool
	buf []byte
	// held is what the writer counts in index.writing, until spill or
	// Close.
	held int64
}

// newWriter returns the writer of the object info to be committed at
// path, holding reservation bytes of the cache. The temporary file is
// made at once unless the object fits in memory.
func (ix *index) newWriter(info storage.Info, path string, reservation int64) (*writer, error) {
	w := &writer{info: info, path: path, ix: ix, reserved: reservation}
	if info.Size >= 0 && info.Size <= memSpool {
		if ix.writing.Add(info.Size) <= ix.writingMax {
			w.mem, w.buf, w.held = true, make([]byte, 0, info.Size), info.Size
			return w, nil
		}
		ix.writing.Add(-info.Size)
	}
	f, err := ix.tempFile(path)
	if err != nil {
		return nil, err
	}
	w.f = f
	return w, nil
}

// tempFile creates the temporary file, in tmp/, of the object to be
// committed at path.
func (ix *index) tempFile(path string) (*os.File, error) {
	return os.CreateTemp(filepath.Join(ix.root, tmpDir), filepath.Base(path)+".*")
}

// spillLocked moves a body held in memory into a temporary file: it grew
// past the size announced. w.amu must be held.
func (w *writer) spillLocked() error {
	f, err := w.ix.tempFile(w.path)
	if err != nil {
		return err
	}
	if _, err := f.Write(w.buf); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	w.f, w.mem, w.buf = f, false, nil
	w.ix.writing.Add(-w.held)
	w.held = 0
	return nil
}

// reserveLocked makes sure the cache holds room for end bytes of body
// and a trailer. w.amu must be held (or the caller be the only writer).
func (w *writer) reserveLocked(end int64) error {
	if need := end + trailerReserve - w.reserved; need > 0 {
		// A body longer than announced, or of unknown length: reserve
		// more, a megabyte at a time.
		grow := max(need, 1<<20)
		if err := w.ix.reserve(grow); err != nil {
			return err
		}
		w.reserved += grow
	}
	return nil
}

// Write appends p: it is WriteAt at the end of what was written (Write is
// not called concurrently with itself nor with WriteAt).
func (w *writer) Write(p []byte) (int, error) {
	w.amu.Lock()
	off := w.n
	w.amu.Unlock()
	return w.WriteAt(p, off)
}

// WriteAt implements storage.WriterAt: a fill that downloads an object in
// parallel segments writes each where it belongs, from several goroutines.
// Written is then the end of the furthest byte written.
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	end := off + int64(len(p))
	w.amu.Lock()
	if err := w.reserveLocked(end); err != nil {
		w.amu.Unlock()
		return 0, err
	}
	if w.mem {
		if end <= int64(cap(w.buf)) {
			if end > int64(len(w.buf)) {
				w.buf = w.buf[:end]
			}
			copy(w.buf[off:], p)
			w.n = max(w.n, end)
			w.amu.Unlock()
			return len(p), nil
		}
		if err := w.spillLocked(); err != nil {
			w.amu.Unlock()
			return 0, err
		}
	}
	f := w.f
	w.amu.Unlock()
	n, err := f.WriteAt(p, off)
	w.amu.Lock()
	w.n = max(w.n, off+int64(n))
	w.amu.Unlock()
	return n, err
}

func (w *writer) Written() int64 {
	w.amu.Lock()
	defer w.amu.Unlock()
	return w.n
}

// ReadAt reads back written bytes; it may run concurrently with Write.
func (w *writer) ReadAt(p []byte, off int64) (int, error) {
	w.amu.Lock()
	if w.mem {
		defer w.amu.Unlock()
		if off >= int64(len(w.buf)) {
			return 0, io.EOF
		}
		n := copy(p, w.buf[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	f := w.f
	w.amu.Unlock()
	return f.ReadAt(p, off)
}

// SpoolFile returns the file being written, so that the fill engine can
// open readers of its own on it (to send with sendfile). It stays valid
// until Close. It is nil while the body is in memory: readers then read
// it with ReadAt.
func (w *writer) SpoolFile() *os.File {
	w.amu.Lock()
	defer w.amu.Unlock()
	if w.mem {
		return nil
	}
	return w.f
}

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

// Commit publishes the object: the body and its trailer in the temporary
// file, made durable (with the commits around it: see syncer), renamed to
// the object's name, and that rename made durable too. The journal names
// the key before the rename and the index learns of it after (store.go).
//
// A body held in memory goes into a file made now beside the object's
// name, in one write, and is renamed within that directory: no directory
// shared by every commit, and no rename across directories, which the
// file system serialises (Linux takes a lock of the whole file system
// for it). The journal names the key before that file is made, so that a
// start after a crash finds and removes a file left half-made (see
// removeLeftovers).
func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != open || w.closed {
		return fmt.Errorf("file: commit of %s: %w", w.info.Key, storage.ErrWriterFinished)
	}
	w.amu.Lock()
	n, mem, body := w.n, w.mem, w.buf
	w.amu.Unlock()
	info := w.info
	if info.Size >= 0 && info.Size != n {
		return fmt.Errorf("%w: wrote %d bytes, expected %d", storage.ErrSizeMismatch, n, info.Size)
	}
	info.Size = n
	if info.StoredAt.IsZero() {
		info.StoredAt = w.ix.clock()
	}
	buf, err := encodeTrailer(info)
	if err != nil {
		return err
	}
	dir := filepath.Dir(w.path)
	var j *jentry
	journaled := false
	if mem {
		if j, err = w.writeOut(dir, body, buf); err != nil {
			return err
		}
		journaled = true
	} else {
		if _, err := w.f.WriteAt(buf, n); err != nil {
			return err
		}
	}
	// From here on, an error leaves the journal entry (if any) done.
	fail := func(err error) error {
		w.ix.j.done(j)
		return err
	}
	if !w.ix.noSync {
		// The bytes first: a rename must never publish a file whose
		// blocks a power cut may lose.
		if err := w.ix.durable.sync(w.f, ""); err != nil {
			return fail(err)
		}
	}
	fi, err := w.f.Stat()
	if err != nil {
		return fail(err)
	}
	name := filepath.Base(w.path)
	size := n + int64(len(buf))
	mu := w.ix.stripe(name)
	mu.Lock()
	if !journaled {
		// The journal names the key before the rename: a process that
		// dies before the index holds the object leaves the key to be
		// checked.
		if j, err = w.ix.j.add(info.Key); err != nil {
			mu.Unlock()
			return err
		}
	}
	w.ix.point("commit-journaled")
	if err := w.ix.inObjectDir(name, func() error { return os.Rename(w.f.Name(), w.path) }); err != nil {
		mu.Unlock()
		return fail(err)
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
	return w.ix.durable.sync(nil, dir)
}

// writeOut writes a body held in memory and its trailer into a new file
// in the object's directory dir, after the journal names the key (see
// Commit). It returns the journal entry; on error there is none left.
func (w *writer) writeOut(dir string, body, trailer []byte) (*jentry, error) {
	j, err := w.ix.j.add(w.info.Key)
	if err != nil {
		return nil, err
	}
	w.amu.Lock()
	f := w.f
	w.amu.Unlock()
	if f == nil {
		// (A Commit that failed after this point made it already.)
		name := filepath.Base(w.path)
		err = w.ix.inObjectDir(name, func() (err error) {
			f, err = os.CreateTemp(dir, name+"."+w.ix.mark+".*")
			return err
		})
		if err != nil {
			w.ix.j.done(j)
			return nil, err
		}
		w.amu.Lock()
		w.f = f
		w.amu.Unlock()
	}
	whole := make([]byte, 0, len(body)+len(trailer))
	if _, err := f.WriteAt(append(append(whole, body...), trailer...), 0); err != nil {
		w.ix.j.done(j)
		return nil, err
	}
	w.ix.point("commit-written")
	return j, nil
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
	w.amu.Lock()
	f := w.f
	w.amu.Unlock()
	if f == nil {
		return nil // the body was in memory only
	}
	if err := os.Remove(f.Name()); err != nil && !errors.Is(err, fs.ErrNotExist) {
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
	w.amu.Lock()
	f := w.f
	w.ix.writing.Add(-w.held)
	w.held = 0
	w.amu.Unlock()
	if f != nil {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// inObjectDir runs op, which makes an entry in the directory of the
// object file name, after making sure that directory exists: each of the
// 256 directories is looked for once per backend (and made, its own entry
// made durable, if missing), not on every commit. When op finds the
// directory gone (removed by hand under a running cache), it is made
// again and op tried once more.
func (ix *index) inObjectDir(name string, op func() error) error {
	made := &ix.dirs[stripeOf(name)]
	dir := filepath.Join(ix.dir, name[0:2])
	ensure := func() error {
		if _, err := os.Stat(dir); err == nil {
			made.Store(true)
			return nil
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if !ix.noSync {
			if err := syncDir(ix.dir); err != nil {
				return err
			}
		}
		made.Store(true)
		return nil
	}
	if !made.Load() {
		if err := ensure(); err != nil {
			return err
		}
	}
	err := op()
	if errors.Is(err, fs.ErrNotExist) {
		// The directory may be gone (if it is there, something else is
		// missing, and op fails again).
		if err := ensure(); err != nil {
			return err
		}
		err = op()
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
