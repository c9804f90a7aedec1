// Package file is the local-disk storage backend, httpmirror's default.
//
// Layout under the root directory:
//
//	lock                   held (flock) while a Backend is open
//	layout                 the layout of objects/ (see layout.go)
//	objects/ab/<hash>      committed objects, <hash> = hex SHA-256 of the key
//	tmp/<hash>.<random>    objects being written
//	claims/<name>          claims of storage.Claimer (see claim.go)
//	index.db               the index of the objects (bbolt, see store.go)
//	index.journal          keys whose files are changing (see journal.go)
//	index.state            how the last process left the index (state.go)
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
// The 256 directories of objects/ are made when first needed; a cache of
// the older layout (objects/ab/cd/<hash>) is moved into this one at the
// start (layout.go).
//
// Writes go to a temporary file in tmp/ (a small object's body waits in
// memory and goes there at once on commit), which is made durable and
// renamed into objects/ on commit, and the rename made durable in turn;
// commits that happen together share these syncs (durable.go). Anything
// left in tmp/ by a crash is removed when the next Backend opens the root.
//
// The object files are the truth. The index (key, size, last use and kept
// digest of each object, in key order, in order of use and in order of
// size) lets a start open no object file, listings and purges by prefix
// read only what they return, and eviction find the least recently used
// objects; it is rebuilt from the files, in the background, whenever it
// cannot be trusted (build.go).
package file

import (
	"cmp"
	"context"
	"crypto/rand"
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
	//
	// Eviction needs the whole index. While it is being built after a
	// start (see Backend.Indexed), nothing is evicted: a new object is
	// stored only if it fits beside the objects indexed so far, and is
	// otherwise served without being cached (ErrNoSpace). Once the index
	// is complete, objects are evicted until the cache is within the
	// limit again.
	MaxSize int64
	// MemoryCacheSize bounds the bytes of small object bodies also kept in
	// memory, so that hits on them need no system call. Zero means
	// DefaultMemoryCacheSize; negative disables it.
	MemoryCacheSize int64
	// MemoryObjectSize is the largest body kept in memory. Zero means
	// DefaultMemoryObjectSize.
	MemoryObjectSize int64
	// NoSync skips the fsyncs of commits (of the object file and of its
	// directory) and of Close, for loading a cache in bulk (benchmarks,
	// tests). A crash of the process loses nothing, but a crash of the
	// system may lose or damage recently committed objects (a damaged
	// object is never served), and the index is then rebuilt.
	NoSync bool
	// Now is the clock of last uses and of commits' StoredAt. Nil means
	// time.Now.
	Now func() time.Time

	// testHook, when set, is called at named points of the index's work,
	// so that tests can stop a process there or hold the build.
	testHook func(point string)
	// testGather, when set, replaces gatherWait.
	testGather time.Duration
	// testWriting, when set, replaces writingMax.
	testWriting int64
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

	closeOnce sync.Once
	closeErr  error
}

// New opens (creating if needed) the cache directory root, takes its lock,
// removes temporary files a crashed process left behind, and opens the
// index of the objects present. It opens no object file: when the index
// cannot be trusted whole (the last process died, or it is missing or
// damaged), what it lacks is rebuilt in the background from the object
// files while the backend serves (see Indexed). Only one Backend may hold
// a root at a time, across processes.
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
	ix := &index{dir: filepath.Join(root, objectsDir), root: root, maxSize: opts.MaxSize,
		noSync: opts.NoSync, hook: opts.testHook, gather: cmp.Or(opts.testGather, gatherWait), hot: map[string]*entry{},
		memMax: opts.MemoryCacheSize, memObject: opts.MemoryObjectSize, clock: opts.Now, mark: newMark(), maxIdle: idleFilesBound(),
		writingMax: cmp.Or(opts.testWriting, writingMax)}
	if ix.clock == nil {
		ix.clock = time.Now
	}
	if ix.memMax == 0 {
		ix.memMax = DefaultMemoryCacheSize
	}
	if ix.memObject == 0 {
		ix.memObject = DefaultMemoryObjectSize
	}
	if ix.memMax < 0 {
		ix.memMax, ix.memObject = 0, -1
	}
	if ix.durable, err = newSyncer(root); err != nil {
		lock.Close()
		return nil, fmt.Errorf("cache directory: %w", err)
	}
	b := &Backend{root: root, lock: lock, ix: ix}
	if err := b.removeTemps(); err != nil {
		ix.durable.close()
		lock.Close()
		return nil, err
	}
	if err := migrateLayout(root, opts.NoSync); err != nil {
		ix.durable.close()
		lock.Close()
		return nil, err
	}
	if err := b.Check(context.Background()); err != nil {
		ix.durable.close()
		lock.Close()
		return nil, err
	}
	st, err := openStore(b.ix)
	if err != nil {
		ix.durable.close()
		lock.Close()
		return nil, err
	}
	b.ix.st = st
	if opts.MaxSize > 0 && b.ix.isComplete() {
		// The limit may have shrunk since the last run.
		st.do(&op{kind: opEvict})
	}
	return b, nil
}

// Root returns the cache directory.
func (b *Backend) Root() string { return b.root }

// Close writes the index out, marks it clean for the next start and
// releases the directory lock. Open objects stay usable until they are
// closed themselves; a writer may still commit, but its object is
// indexed only when it is next used, or by the next rebuild.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.ix.mu.Lock()
		b.ix.shut = true
		b.ix.mu.Unlock()
		b.ix.dropAllIdle()
		b.closeErr = b.ix.st.close()
		if err := b.ix.durable.close(); b.closeErr == nil {
			b.closeErr = err
		}
		if err := b.lock.Close(); b.closeErr == nil {
			b.closeErr = err
		}
	})
	return b.closeErr
}

// Indexed reports whether every object on disk is in the index: listings
// wait for it, and eviction starts with it.
func (b *Backend) Indexed() bool { return b.ix.isComplete() }

// WaitIndexed waits until every object on disk is in the index, or ctx
// ends.
func (b *Backend) WaitIndexed(ctx context.Context) error {
	if !b.ix.waitComplete(ctx) {
		return ctx.Err()
	}
	return nil
}

// IndexWrites is what the index has written since the backend opened.
type IndexWrites struct {
	// Transactions is the number of index transactions committed.
	Transactions int64
	// Pages is the number of index pages written, Time the time spent
	// writing them.
	Pages int64
	Time  time.Duration
}

// IndexWrites reports what the index has written since the backend
// opened: with the object files' own cost, what a purge, a listing or a
// stream of commits costs.
func (b *Backend) IndexWrites() IndexWrites {
	return b.ix.st.writes()
}

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
	return b.ix.path(hashKey(key)), nil
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

// Reread implements storage.Rereader: the object's file, its metadata read
// from the file's trailer, neither the memory copy nor the index's use
// order touched.
func (b *Backend) Reread(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, err
	}
	f, _, info, err := b.openFile(key, hashName(key), false)
	if err != nil {
		return nil, err
	}
	return &object{f: f, info: info, ix: b.ix}, nil
}

// open opens the object file of key and returns it with its stat and
// metadata, read from the trailer unless the index has it already.
func (b *Backend) open(key string) (*os.File, os.FileInfo, storage.Info, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, nil, storage.Info{}, err
	}
	return b.openFile(key, hashName(key), true)
}

// openFile opens the file of the object key, whose file name is name,
// and returns its metadata: the index's copy when cached allows it and
// the index holds one, else the file's trailer.
func (b *Backend) openFile(key string, name [64]byte, cached bool) (*os.File, os.FileInfo, storage.Info, error) {
	f, err := openRead(b.ix.pathOf(name))
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
	if cached {
		if info, ok := b.ix.cachedInfo(fi.Name(), fi); ok {
			return f, fi, info, nil
		}
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
// sendfile. The descriptor of a hot object's file is kept open for the
// next Open once the object is closed (index.closed), so that most hits
// of a file open nothing.
func (b *Backend) Open(ctx context.Context, key string) (storage.Object, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, err
	}
	name := hashName(key)
	now := b.ix.clock().UnixNano()
	h := b.ix.lookup(name[:], now)
	switch {
	case h.inMemory:
		return newMemObject(h.data, h.info), nil
	case h.f != nil:
		if h.load {
			b.load(h.f, h.e, h.ino, h.info.Size, now)
		}
		return &object{f: h.f, info: h.info, ix: b.ix, e: h.e, ino: h.ino, size: h.size}, nil
	}
	f, fi, info, err := b.openFile(key, name, true)
	if err != nil {
		return nil, err
	}
	b.ix.point("open-statted")
	e, load := b.ix.opened(fi.Name(), fi, info, now, h.seq)
	if load && e != nil {
		b.load(f, e, inode(fi), info.Size, now)
	}
	return &object{f: f, info: info, ix: b.ix, e: e, ino: inode(fi), size: fi.Size()}, nil
}

// load reads the body of size bytes of the object of e from f, its file
// with inode ino, to keep it in memory.
func (b *Backend) load(f *os.File, e *entry, ino uint64, size, now int64) {
	data := make([]byte, size)
	if _, err := f.ReadAt(data, 0); err == nil {
		b.ix.keep(e, ino, data, now)
	}
}

// Delete implements storage.Backend.
func (b *Backend) Delete(ctx context.Context, key string) error {
	p, err := b.Path(key)
	if err != nil {
		return err
	}
	name := filepath.Base(p)
	mu := b.ix.stripe(name)
	mu.Lock()
	j, err := b.ix.j.add(key)
	if err != nil {
		mu.Unlock()
		return err
	}
	if j == nil {
		mu.Unlock()
		return errClosed
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		b.ix.j.done(j)
		mu.Unlock()
		return err
	}
	b.ix.point("delete-removed")
	o := &op{kind: opDel, key: key, j: j, done: make(chan error, 1)}
	queued, wait := b.ix.st.enqueue(o)
	mu.Unlock()
	b.ix.hotRemoved(name)
	if !queued {
		b.ix.j.done(j)
	}
	if wait {
		<-o.done
	}
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
	if fw.mem {
		_, err = io.Copy(fw, io.LimitReader(f, cur.Size))
	} else {
		var n int64
		n, err = io.Copy(fw.f, io.LimitReader(f, cur.Size))
		fw.n = n
	}
	if err != nil {
		return err
	}
	return w.Commit(ctx)
}

// Stats implements storage.StatsReporter. The counters include every
// commit and delete that has returned.
func (b *Backend) Stats() storage.Stats {
	b.ix.st.sync()
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
	b.ix.mu.Lock()
	closed := b.ix.shut
	b.ix.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	var reservation int64
	if info.Size >= 0 {
		reservation = info.Size + trailerReserve
	}
	if err := b.ix.reserve(reservation); err != nil {
		return nil, err
	}
	info.Key = key
	w, err := b.ix.newWriter(info, p, reservation)
	if err != nil {
		b.ix.release(reservation)
		return nil, err
	}
	return w, nil
}

// newMark returns a mark for the temporary files of a new backend (see
// index.mark): random, so that no other backend's is the same.
func newMark() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// trailerReserve is the room reserved for an object's metadata trailer on
// top of its body.
const trailerReserve = 4 << 10
