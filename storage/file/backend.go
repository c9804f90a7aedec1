// Package file is the local-disk storage backend, httpmirror's default.
//
// Layout under the root directory:
//
//	lock                   held (flock) while a Backend is open
//	objects/ab/cd/<hash>   committed objects, <hash> = hex SHA-256 of the key
//	tmp/<hash>.<random>    objects being written
//	claims/<name>          claims of storage.Claimer (see claim.go)
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
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
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

	snapMu sync.Mutex
	snap   listSnapshot // the listing being paged through (list.go)
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
//
// It writes and syncs a few kilobytes, not just an empty file: a full disk
// often still has inodes for empty files, but no block for data.
func (b *Backend) Check(ctx context.Context) error {
	f, err := os.CreateTemp(filepath.Join(b.root, tmpDir), "check.*")
	if err != nil {
		return fmt.Errorf("cache directory not writable: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, checkBytes))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cache directory not writable: %w", err)
	}
	return nil
}

// checkBytes is how much Check writes.
const checkBytes = 8 << 10

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
