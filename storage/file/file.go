// Package file is the local-disk storage backend, httpmirror's default.
//
// Layout under the root directory:
//
//	lock                   held (flock) while a Backend is open
//	objects/ab/cd/<hash>   committed objects, <hash> = hex SHA-256 of the key
//	tmp/<hash>.<random>    objects being written
//
// Keys never become path components: every object lives at a name derived
// from the SHA-256 of its key, so no request, however hostile, can name a
// file outside the root.
//
// An object file holds the body followed by a metadata trailer:
//
//	body | metadata (JSON) | metadata length (8 bytes, big endian) | magic (8 bytes)
//
// so the body starts at offset 0 and can be sent with sendfile, and body and
// metadata are published together by one rename. A file whose trailer does
// not check out is treated as absent.
//
// Writes go to a temporary file in tmp/, which is fsynced and renamed into
// objects/ on commit, followed by an fsync of the directory. Anything left in
// tmp/ by a crash is removed when the next Backend opens the root.
package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

const (
	objectsDir = "objects"
	tmpDir     = "tmp"
	lockName   = "lock"

	trailerLen = 16
	// maxMeta bounds the metadata trailer so a corrupt length cannot make
	// Open allocate without limit.
	maxMeta = 1 << 20
	// tailRead is how much of an object's end Open reads in one call; it
	// covers the trailer of nearly every object.
	tailRead = 4096
)

var magic = [8]byte{'H', 'M', 'I', 'R', 'R', 'O', 'R', '1'}

// Options configure a Backend. The zero value is usable.
type Options struct {
	// MaxSize limits the bytes the cache holds on disk, objects being
	// written included. When a new object needs room, the least recently
	// used objects that nobody is reading are removed. Zero means no
	// limit.
	MaxSize int64
	// MemoryCacheSize bounds the bytes of small object bodies also kept in
	// memory, so that hits on them need no system call. Zero means
	// DefaultMemoryCacheSize; negative disables it.
	MemoryCacheSize int64
	// MemoryObjectSize is the largest body kept in memory. Zero means
	// DefaultMemoryObjectSize.
	MemoryObjectSize int64
}

// Defaults for Options.
const (
	DefaultMemoryCacheSize  = 16 << 20
	DefaultMemoryObjectSize = 64 << 10
)

// Backend stores objects as files under a root directory.
type Backend struct {
	root string
	lock *os.File
	ix   *index
}

// New opens (creating if needed) the cache directory root, takes its lock,
// removes temporary files a crashed process left behind, and indexes the
// objects present (their modification times give the least-recently-used
// order across restarts). Only one Backend may hold a root at a time,
// across processes.
func New(root string, opts Options) (*Backend, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("cache directory %q is not an absolute path", root)
	}
	root = filepath.Clean(root)
	for _, d := range []string{root, filepath.Join(root, objectsDir), filepath.Join(root, tmpDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("cache directory: %w", err)
		}
	}
	lock, err := lockDir(filepath.Join(root, lockName))
	if err != nil {
		return nil, fmt.Errorf("cache directory %s: %w", root, err)
	}
	ix := &index{dir: filepath.Join(root, objectsDir), maxSize: opts.MaxSize,
		memMax: opts.MemoryCacheSize, memObject: opts.MemoryObjectSize}
	if ix.memMax == 0 {
		ix.memMax = DefaultMemoryCacheSize
	}
	if ix.memObject == 0 {
		ix.memObject = DefaultMemoryObjectSize
	}
	if ix.memMax < 0 {
		ix.memMax, ix.memObject = 0, -1
	}
	b := &Backend{root: root, lock: lock, ix: ix}
	if err := b.removeTemps(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := b.ix.load(); err != nil {
		lock.Close()
		return nil, err
	}
	if opts.MaxSize > 0 {
		b.ix.mu.Lock()
		b.ix.evictLocked(opts.MaxSize) // the limit may have shrunk since the last run
		b.ix.mu.Unlock()
	}
	if err := b.Check(context.Background()); err != nil {
		lock.Close()
		return nil, err
	}
	return b, nil
}

// Root returns the cache directory.
func (b *Backend) Root() string { return b.root }

// Close releases the directory lock. Open objects and writers stay usable
// until they are closed themselves.
func (b *Backend) Close() error { return b.lock.Close() }

// removeTemps deletes everything in tmp/: with the lock held, no other
// process can be writing there, so any file is a crash leftover.
func (b *Backend) removeTemps() error {
	dir := filepath.Join(b.root, tmpDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("cache directory: removing leftover: %w", err)
		}
	}
	return nil
}

// Path returns the file that holds the object under key. It is always inside
// the root's objects directory.
func (b *Backend) Path(key string) (string, error) {
	if err := storage.ValidateKey(key); err != nil {
		return "", err
	}
	h := hashKey(key)
	return filepath.Join(b.root, objectsDir, h[0:2], h[2:4], h), nil
}

func hashKey(key string) string {
	n := hashName(key)
	return string(n[:])
}

// hashName is the object file name of key, in an array so that index
// lookups need no allocation.
func hashName(key string) [64]byte {
	sum := sha256.Sum256([]byte(key))
	var n [64]byte
	hex.Encode(n[:], sum[:])
	return n
}

// Check verifies that the cache directory accepts new files.
func (b *Backend) Check(ctx context.Context) error {
	f, err := os.CreateTemp(filepath.Join(b.root, tmpDir), "check.*")
	if err != nil {
		return fmt.Errorf("cache directory not writable: %w", err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// meta is the JSON form of the trailer.
type meta struct {
	Key          string      `json:"key"`
	Size         int64       `json:"size"`
	ETag         string      `json:"etag,omitempty"`
	LastModified int64       `json:"lastModified,omitempty"` // Unix seconds
	ContentType  string      `json:"contentType,omitempty"`
	Header       http.Header `json:"header,omitempty"`
	StoredAt     int64       `json:"storedAt"` // Unix nanoseconds
}

func (m *meta) info() storage.Info {
	i := storage.Info{
		Key:         m.Key,
		Size:        m.Size,
		ETag:        m.ETag,
		ContentType: m.ContentType,
		Header:      m.Header,
		StoredAt:    time.Unix(0, m.StoredAt),
	}
	if m.LastModified != 0 {
		i.LastModified = time.Unix(m.LastModified, 0).UTC()
	}
	return i
}

func metaOf(i storage.Info) meta {
	m := meta{
		Key:         i.Key,
		Size:        i.Size,
		ETag:        i.ETag,
		ContentType: i.ContentType,
		Header:      i.Header,
		StoredAt:    i.StoredAt.UnixNano(),
	}
	if !i.LastModified.IsZero() {
		m.LastModified = i.LastModified.Unix()
	}
	return m
}

// errCorrupt marks an object file whose trailer does not check out. It wraps
// ErrNotFound: a damaged object is never served, it is refetched.
var errCorrupt = fmt.Errorf("%w: damaged object file", storage.ErrNotFound)

// readInfo reads and checks the trailer of an object file of the given size.
func readInfo(f *os.File, size int64, key string) (storage.Info, error) {
	if size < trailerLen {
		return storage.Info{}, errCorrupt
	}
	n := min(size, tailRead)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, size-n); err != nil {
		return storage.Info{}, err
	}
	tr := buf[n-trailerLen:]
	if [8]byte(tr[8:]) != magic {
		return storage.Info{}, errCorrupt
	}
	ml := binary.BigEndian.Uint64(tr[:8])
	if ml > maxMeta || int64(ml)+trailerLen > size {
		return storage.Info{}, errCorrupt
	}
	var mb []byte
	if int64(ml)+trailerLen <= n {
		mb = buf[n-trailerLen-int64(ml) : n-trailerLen]
	} else {
		mb = make([]byte, ml)
		if _, err := f.ReadAt(mb, size-trailerLen-int64(ml)); err != nil {
			return storage.Info{}, err
		}
	}
	var m meta
	if err := json.Unmarshal(mb, &m); err != nil {
		return storage.Info{}, errCorrupt
	}
	if m.Key != key || m.Size < 0 || m.Size+int64(ml)+trailerLen != size {
		return storage.Info{}, errCorrupt
	}
	return m.info(), nil
}

// open opens the object file of key and returns it with its stat and
// metadata, read from the trailer unless the index has it already.
func (b *Backend) open(key string) (*os.File, os.FileInfo, storage.Info, error) {
	p, err := b.Path(key)
	if err != nil {
		return nil, nil, storage.Info{}, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, storage.Info{}, storage.ErrNotFound
		}
		return nil, nil, storage.Info{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, storage.Info{}, err
	}
	if info, ok := b.ix.cachedInfo(fi.Name(), fi); ok {
		return f, fi, info, nil
	}
	info, err := readInfo(f, fi.Size(), key)
	if err != nil {
		f.Close()
		return nil, nil, storage.Info{}, err
	}
	return f, fi, info, nil
}

// Stat implements storage.Backend. It does not count as a use of the
// object.
func (b *Backend) Stat(ctx context.Context, key string) (storage.Info, error) {
	f, _, info, err := b.open(key)
	if err != nil {
		return storage.Info{}, err
	}
	f.Close()
	return info, nil
}

// Open implements storage.Backend. A small object whose body is held in
// memory is served from there; any other object is not evicted while it is
// open, and implements syscall.Conn, so net/http sends its body with
// sendfile.
func (b *Backend) Open(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, err
	}
	name := hashName(key)
	now := time.Now()
	if data, info, touch, ok := b.ix.lookupMemory(name[:], now); ok {
		if touch {
			b.touch(string(name[:]), now)
		}
		return newMemObject(data, info), nil
	}
	f, fi, info, err := b.open(key)
	if err != nil {
		return nil, err
	}
	e, touch, load := b.ix.opened(fi.Name(), fi, info, now)
	if touch {
		b.touch(fi.Name(), now)
	}
	if load && e != nil {
		data := make([]byte, info.Size)
		if _, err := f.ReadAt(data, 0); err == nil {
			b.ix.keep(e, inode(fi), data)
		}
	}
	return &object{f: f, info: info, ix: b.ix, e: e}, nil
}

// touch advances the mtime of the object file name: the use order that
// eviction follows after a restart.
func (b *Backend) touch(name string, now time.Time) {
	os.Chtimes(b.ix.path(name), now, now)
}

// Delete implements storage.Backend.
func (b *Backend) Delete(ctx context.Context, key string) error {
	p, err := b.Path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	b.ix.removed(filepath.Base(p))
	return nil
}

// Refresh implements storage.Refresher. The body is copied into a new file
// with the new trailer (in the kernel, with copy_file_range where the file
// system offers it), which then replaces the object atomically like any
// commit.
func (b *Backend) Refresh(ctx context.Context, key string, info storage.Info) error {
	f, _, cur, err := b.open(key)
	if err != nil {
		return err
	}
	defer f.Close()
	if cur.Size != info.Size || cur.ETag != info.ETag {
		return storage.ErrNotFound
	}
	w, err := b.Create(ctx, key, info)
	if err != nil {
		return err
	}
	defer w.Close()
	fw := w.(*writer)
	n, err := io.Copy(fw.f, io.LimitReader(f, cur.Size))
	fw.n = n
	if err != nil {
		return err
	}
	return w.Commit(ctx)
}

// Stats implements storage.StatsReporter.
func (b *Backend) Stats() storage.Stats {
	bytes, objects, evictions := b.ix.stats()
	return storage.Stats{Bytes: bytes, Objects: objects, Evictions: evictions}
}

// Create implements storage.Backend. The writer also implements
// storage.Spooler.
func (b *Backend) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	p, err := b.Path(key)
	if err != nil {
		return nil, err
	}
	var reservation int64
	if info.Size >= 0 {
		reservation = info.Size + trailerReserve
	}
	if err := b.ix.reserve(reservation); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Join(b.root, tmpDir), filepath.Base(p)+".*")
	if err != nil {
		b.ix.release(reservation)
		return nil, err
	}
	info.Key = key
	return &writer{info: info, path: p, f: f, ix: b.ix, reserved: reservation}, nil
}

// trailerReserve is the room reserved for an object's metadata trailer on
// top of its body.
const trailerReserve = 4 << 10

// object is an open object file. Read and Seek are confined to the body;
// the trailer is never visible.
//
// Reads use pread at the object's own position, and Seek only moves that
// position, so serving a range costs no lseek. The file descriptor's offset
// matters only to sendfile, which reads from it: SyscallConn sets it to the
// position first.
type object struct {
	f    *os.File
	info storage.Info
	ix   *index
	e    *entry // the object's index entry, nil if it is no longer indexed
	// off is the position, or -1 when unknown because sendfile has moved
	// the descriptor's offset by an amount we do not see.
	off int64
}

func (o *object) Info() storage.Info { return o.info }

// pos returns the position, recovering it from the descriptor after
// sendfile.
func (o *object) pos() (int64, error) {
	if o.off < 0 {
		off, err := o.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0, err
		}
		o.off = off
	}
	return o.off, nil
}

func (o *object) Read(p []byte) (int, error) {
	off, err := o.pos()
	if err != nil {
		return 0, err
	}
	remain := o.info.Size - off
	if remain <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > remain {
		p = p[:remain]
	}
	n, err := o.f.ReadAt(p, off)
	o.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	var cur int64
	if whence == io.SeekCurrent {
		var err error
		if cur, err = o.pos(); err != nil {
			return 0, err
		}
	}
	abs, err := storage.SeekOffset(cur, o.info.Size, offset, whence)
	if err != nil {
		return 0, err
	}
	o.off = abs
	return abs, nil
}

// SyscallConn exposes the file descriptor so that the kernel can copy the
// body to a socket (net.TCPConn.ReadFrom uses it for sendfile, reading from
// the descriptor's offset). Callers go through an io.LimitedReader sized
// from Seek, so the trailer is never sent.
func (o *object) SyscallConn() (syscall.RawConn, error) {
	off, err := o.pos()
	if err != nil {
		return nil, err
	}
	if _, err := o.f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	o.off = -1
	return o.f.SyscallConn()
}

func (o *object) Close() error {
	o.ix.closed(o.e)
	o.e = nil
	return o.f.Close()
}

// memObject is an object whose body is held in memory. The reader is held
// by value: opening one costs a single allocation.
type memObject struct {
	r    bytes.Reader
	data []byte
	info storage.Info
}

func newMemObject(data []byte, info storage.Info) *memObject {
	o := &memObject{data: data, info: info}
	o.r.Reset(data)
	return o
}

func (o *memObject) Read(p []byte) (int, error)                { return o.r.Read(p) }
func (o *memObject) Seek(off int64, whence int) (int64, error) { return o.r.Seek(off, whence) }
func (o *memObject) WriteTo(w io.Writer) (int64, error)        { return o.r.WriteTo(w) }
func (o *memObject) Info() storage.Info                        { return o.info }
func (o *memObject) Close() error                              { return nil }

// Bytes returns the whole body, which the caller must not modify.
func (o *memObject) Bytes() []byte { return o.data }

type writerState int

const (
	open writerState = iota
	committed
	cancelled
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

func (w *writer) Written() int64 { return w.n }

// ReadAt reads back written bytes; it may run concurrently with Write.
func (w *writer) ReadAt(p []byte, off int64) (int, error) { return w.f.ReadAt(p, off) }

// SpoolFile returns the file being written, so that the fill engine can
// open readers of its own on it (to send with sendfile). It stays valid
// until Close.
func (w *writer) SpoolFile() *os.File { return w.f }

func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != open || w.closed {
		return errors.New("file: commit of a finished writer")
	}
	info := w.info
	if info.Size >= 0 && info.Size != w.n {
		return fmt.Errorf("%w: wrote %d bytes, expected %d", storage.ErrSizeMismatch, w.n, info.Size)
	}
	info.Size = w.n
	if info.StoredAt.IsZero() {
		info.StoredAt = time.Now()
	}
	mb, err := json.Marshal(metaOf(info))
	if err != nil {
		return err
	}
	buf := make([]byte, 0, len(mb)+trailerLen)
	buf = append(buf, mb...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(len(mb)))
	buf = append(buf, magic[:]...)
	if _, err := w.f.WriteAt(buf, w.n); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	dir := filepath.Dir(w.path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Rename(w.f.Name(), w.path); err != nil {
		return err
	}
	w.state = committed
	var ino uint64
	if fi, err := w.f.Stat(); err == nil {
		ino = inode(fi)
	}
	w.ix.committed(filepath.Base(w.path), w.n+int64(len(buf)), w.reserved, ino, info, time.Now())
	w.reserved = 0
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
