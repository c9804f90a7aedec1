package file

import (
	"container/list"
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// ErrNoSpace is returned when an object cannot be stored without exceeding
// the cache's size limit: it is larger than the limit, or every other object
// is in use, or the index is still being built and the objects it knows of
// leave no room (see Options.MaxSize). The fill engine then serves the
// object without caching it.
var ErrNoSpace = storage.ErrNoSpace

// touchEvery is how often the last use of an object that keeps being read
// is written to the index. Eviction itself sees every use (the hot set
// below); the index only needs the order to survive a restart, and
// writing it at most this often keeps hits free of writes.
const touchEvery = time.Minute

// hotMax bounds the hot set: the objects used recently, with their
// metadata and (for small ones) their bodies. Everything else about an
// object lives in the index on disk, so memory does not grow with the
// number of objects stored.
const hotMax = 1 << 14

// idleFilesMax bounds the descriptors of object files kept open for the
// next Opens (entry.idle), and idlePerObject those of one object (as many
// as are read at once, up to it). The process's limit of open files
// lowers the first: a quarter of it at most (see idleFilesBound).
const (
	idleFilesMax  = 4096
	idlePerObject = 8
)

// entry is an object of the hot set.
type entry struct {
	name    string // file name: the hex SHA-256 of the key
	readers int    // open objects; an entry with readers is never evicted
	// used is the object's last use, in Unix nanoseconds; recorded is the
	// last use the index holds (or has been asked to hold).
	used, recorded int64
	// hits counts the uses since the index was last told of them.
	hits int64
	elem *list.Element // in index.lru; front is most recently used

	// The object's metadata once read (or written), valid for the file
	// with inode ino and size size, so that a hit does not parse the
	// trailer again.
	info    storage.Info
	hasInfo bool
	ino     uint64
	size    int64
	// data holds the body of a small object in memory (see
	// Options.MemoryCacheSize): a hit then needs no system call at all.
	data    []byte
	memElem *list.Element // in index.mem while data is held
	// idle holds open descriptors of the object's file (inode ino, size
	// size) that no reader uses, for the next Opens: opening a hot
	// file's path and reading its stat cost more than the rest of a hit
	// (nginx's open_file_cache). Each is used by one reader at a time,
	// which moves its offset as it pleases. fileElem is the entry's
	// place in index.files while idle is not empty.
	idle     []*os.File
	fileElem *list.Element
}

// index keeps what the backend knows of its objects: the hot set and the
// size accounting in memory, and, in a bbolt database beside the objects
// (store.go), every object's key, size and last use, in key order (for
// listings), in order of use (for eviction) and in order of size.
type index struct {
	dir       string // the objects directory
	root      string
	maxSize   int64 // 0: no limit
	noSync    bool
	memMax    int64 // bytes of small object bodies kept in memory
	memObject int64 // largest body kept in memory
	hook      func(point string)
	gather    time.Duration    // how long the applier holds changes (see holdable)
	clock     func() time.Time // Options.Now
	// mark is in the names of the temporary files this backend makes
	// beside objects: those with another mark are leftovers of a process
	// that died (see removeLeftovers).
	mark string

	mu        sync.Mutex
	hot       map[string]*entry
	lru       list.List
	mem       list.List // entries with data; front is most recently used
	files     list.List // entries with idle descriptors; front is most recently used
	idleFiles int       // the idle descriptors of all entries
	maxIdle   int       // bound of idleFiles (see idleFilesMax)
	// changes counts, per stripe of file names, the commits and removals
	// the hot set was told of, so that an Open that read a file's stat
	// before one of them does not remember that file as the object's
	// (see opened).
	changes   [256]uint64
	bytes     int64 // indexed objects, trailers included
	objects   int64
	reserved  int64 // space promised to writers in progress
	evictions int64
	memBytes  int64 // bodies held in entries' data
	complete  bool  // every object on disk is indexed
	indexed   chan struct{}
	shut      bool // Close was called

	// stripes order the changes to one key's file with the index updates
	// that record them: a commit's rename, a delete, an eviction and a
	// check of the file by the index build each hold the stripe of the
	// key from the change until the update is queued.
	stripes [256]sync.Mutex
	// writing is the memory the writers of small objects hold (see
	// writingMax).
	writing    atomic.Int64
	writingMax int64

	// dirs says which object directories (one per stripe) this backend
	// has seen to exist (see inObjectDir).
	dirs [256]atomic.Bool

	st      *store
	j       *journal
	durable *syncer

	visits atomic.Int64 // index entries read by List and Largest
}

func (ix *index) path(name string) string {
	return filepath.Join(ix.dir, name[0:2], name)
}

// pathOf is path, built with one allocation.
func (ix *index) pathOf(name [64]byte) string {
	b := make([]byte, 0, len(ix.dir)+4+len(name))
	b = append(b, ix.dir...)
	b = append(b, '/')
	b = append(b, name[0:2]...)
	b = append(b, '/')
	b = append(b, name[:]...)
	return string(b)
}

// stripe returns the lock of the object file name (see index.stripes).
func (ix *index) stripe(name string) *sync.Mutex {
	return &ix.stripes[stripeOf(name)]
}

// stripeOf returns the stripe of the object file name: its first byte.
func stripeOf[T string | []byte](name T) byte { return unhex(name[0])<<4 | unhex(name[1]) }

func unhex(c byte) byte {
	if c >= 'a' {
		return c - 'a' + 10
	}
	return c - '0'
}

func isHashName(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func (ix *index) point(name string) {
	if ix.hook != nil {
		ix.hook(name)
	}
}

// hot is what the hot set gives an Open of an object: its body in memory
// (inMemory), or an idle descriptor of its file (f), with the metadata;
// else seq, the count of changes to the object's stripe, for opened.
type hot struct {
	data     []byte
	inMemory bool
	f        *os.File
	e        *entry
	ino      uint64 // f's
	size     int64
	load     bool // f's body should be kept in memory (see keep)
	info     storage.Info
	seq      uint64
}

// lookup returns what the hot set has of the object name, marking the
// use when it has its body or a descriptor of its file: the latter is
// the caller's until it gives it back (closed).
func (ix *index) lookup(name []byte, now int64) hot {
	ix.mu.Lock()
	e := ix.hot[string(name)]
	var h hot
	switch {
	case e == nil || !e.hasInfo:
		h.seq = ix.changes[stripeOf(name)]
		ix.mu.Unlock()
		return h
	case e.data != nil:
		h.data, h.inMemory = e.data, true
		ix.mem.MoveToFront(e.memElem)
	case len(e.idle) > 0:
		h.f, h.e, h.ino, h.size = e.idle[len(e.idle)-1], e, e.ino, e.size
		e.idle[len(e.idle)-1] = nil
		e.idle = e.idle[:len(e.idle)-1]
		ix.idleFiles--
		if len(e.idle) == 0 {
			ix.files.Remove(e.fileElem)
			e.fileElem = nil
		}
		e.readers++
		h.load = ix.roomLocked(e.info.Size, now)
	default:
		h.seq = ix.changes[stripeOf(name)]
		ix.mu.Unlock()
		return h
	}
	ix.lru.MoveToFront(e.elem)
	u := ix.usedLocked(e, now)
	h.info = e.info
	ix.mu.Unlock()
	if u.n > 0 {
		ix.st.touch(h.info.Key, u.t, u.n)
	}
	return h
}

// usedLocked records a use of e at now, and returns the uses the index
// should be told of (see touchEvery): none (n == 0) for most uses.
func (ix *index) usedLocked(e *entry, now int64) use {
	if now > e.used {
		e.used = now
	}
	e.hits++
	if e.used-e.recorded > int64(touchEvery) && e.hasInfo {
		e.recorded = e.used
		u := use{e.used, e.hits}
		e.hits = 0
		return u
	}
	return use{}
}

// cachedInfo returns the metadata recorded for the object file name if it
// belongs to the file whose stat is fi.
func (ix *index) cachedInfo(name string, fi os.FileInfo) (storage.Info, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := ix.hot[name]
	if e == nil || !e.hasInfo || e.size != fi.Size() || e.ino != inode(fi) {
		return storage.Info{}, false
	}
	return e.info, true
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// opened records a reader of the object file named name, whose stat is fi
// and metadata info. It returns the entry to pass to closed (nil for a file
// unlinked between its open and now: evicted or replaced, it is not
// remembered), and whether the body should be loaded into memory (see
// keep).
//
// seq is the count of changes to the file's stripe that lookup returned
// before the file was opened: if a commit or a removal has come since,
// the file opened may be the one it replaced or removed (its stat was
// read before), which must not become the hot set's copy of the object.
func (ix *index) opened(name string, fi os.FileInfo, info storage.Info, now int64, seq uint64) (e *entry, load bool) {
	ix.mu.Lock()
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && st.Nlink == 0 || ix.changes[stripeOf(name)] != seq {
		ix.mu.Unlock()
		return nil, false
	}
	e = ix.hot[name]
	if e == nil {
		// recorded stays 0: the first use since the object entered the
		// hot set is written to the index.
		e = &entry{name: name}
		e.elem = ix.lru.PushFront(e)
		ix.hot[name] = e
		ix.trimLocked()
	}
	if e.size != fi.Size() || e.ino != inode(fi) {
		e.size, e.ino = fi.Size(), inode(fi)
		ix.dropDataLocked(e)
		ix.dropIdleLocked(e)
	}
	e.info, e.hasInfo = info, true
	e.readers++
	ix.lru.MoveToFront(e.elem)
	u := ix.usedLocked(e, now)
	load = e.data == nil && ix.roomLocked(info.Size, now)
	ix.mu.Unlock()
	if u.n > 0 {
		ix.st.touch(info.Key, u.t, u.n)
	}
	return e, load
}

// trimLocked keeps the hot set within hotMax entries, dropping the least
// recently used ones nobody is reading; a use the index does not hold yet
// is sent to it first.
func (ix *index) trimLocked() {
	for el := ix.lru.Back(); el != nil && len(ix.hot) > hotMax; {
		prev := el.Prev()
		if e := el.Value.(*entry); e.readers == 0 {
			if (e.used > e.recorded || e.hits > 0) && e.hasInfo {
				ix.st.touch(e.info.Key, e.used, e.hits)
			}
			ix.dropDataLocked(e)
			ix.dropIdleLocked(e)
			ix.lru.Remove(el)
			delete(ix.hot, e.name)
		}
		el = prev
	}
}

// keep stores data, the body of the object of entry e, in memory if the
// memory budget allows, making room by dropping the bodies of the least
// recently used objects, as long as they were not used within memHold
// (see roomLocked).
func (ix *index) keep(e *entry, ino uint64, data []byte, now int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.hot[e.name] != e || e.ino != ino || e.data != nil {
		return // replaced meanwhile
	}
	need := int64(len(data))
	for ix.memBytes+need > ix.memMax {
		el := ix.mem.Back()
		if el == nil {
			break
		}
		o := el.Value.(*entry)
		if now-o.used < int64(memHold) {
			return
		}
		ix.dropDataLocked(o)
	}
	if ix.memBytes+need > ix.memMax {
		return
	}
	if data == nil {
		data = []byte{} // an empty object is kept too
	}
	e.data = data
	e.memElem = ix.mem.PushFront(e)
	ix.memBytes += need
	ix.dropIdleLocked(e) // hits are served from memory now
}

// memHold is how long a body kept in memory is safe from being dropped
// for another: while the objects used more often than this fill the
// memory, others are served from their files. Replacing bodies that are
// all in use would only trade one for another at every hit: a read of
// the file into a new buffer, for nothing, when the objects read at
// random are more than the memory holds.
const memHold = 10 * time.Second

// roomLocked reports whether a body of need bytes could be kept in
// memory at now (see keep): it fits, or the least recently used body is
// past memHold.
func (ix *index) roomLocked(need, now int64) bool {
	if need > ix.memObject || need >= ix.memMax {
		return false
	}
	if ix.memBytes+need <= ix.memMax {
		return true
	}
	el := ix.mem.Back()
	return el != nil && now-el.Value.(*entry).used >= int64(memHold)
}

func (ix *index) dropDataLocked(e *entry) {
	if e.data != nil {
		ix.memBytes -= int64(len(e.data))
		e.data = nil
		ix.mem.Remove(e.memElem)
		e.memElem = nil
	}
}

// closed drops a reader recorded by opened or lookup, whose descriptor
// f is of the file with inode ino and size size. It keeps f for the next
// Open when it is still the object's file and the bound allows, and
// closes it otherwise.
func (ix *index) closed(e *entry, f *os.File, ino uint64, size int64) {
	if e == nil {
		f.Close()
		return
	}
	ix.mu.Lock()
	e.readers--
	if ix.shut || ix.maxIdle <= 0 || ix.hot[e.name] != e || !e.hasInfo || e.ino != ino || e.size != size ||
		e.data != nil || len(e.idle) >= idlePerObject {
		ix.mu.Unlock()
		f.Close()
		return
	}
	e.idle = append(e.idle, f)
	ix.idleFiles++
	if e.fileElem == nil {
		e.fileElem = ix.files.PushFront(e)
	} else {
		ix.files.MoveToFront(e.fileElem)
	}
	var extra []*os.File
	for ix.idleFiles > ix.maxIdle {
		o := ix.files.Back().Value.(*entry)
		extra = append(extra, o.idle[0])
		o.idle[0] = nil
		o.idle = o.idle[1:]
		ix.idleFiles--
		if len(o.idle) == 0 {
			o.idle = nil
			ix.files.Remove(o.fileElem)
			o.fileElem = nil
		}
	}
	ix.mu.Unlock()
	for _, f := range extra {
		f.Close()
	}
}

// dropIdleLocked closes the idle descriptors of e: its file changed, or
// it leaves the hot set.
func (ix *index) dropIdleLocked(e *entry) {
	if len(e.idle) == 0 {
		return
	}
	for i, f := range e.idle {
		f.Close()
		e.idle[i] = nil
	}
	ix.idleFiles -= len(e.idle)
	e.idle = nil
	ix.files.Remove(e.fileElem)
	e.fileElem = nil
}

// changedLocked counts a commit or removal of the object file name (see
// index.changes).
func (ix *index) changedLocked(name string) { ix.changes[stripeOf(name)]++ }

// dropAllIdle closes every idle descriptor, for Close.
func (ix *index) dropAllIdle() {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for el := ix.files.Front(); el != nil; {
		next := el.Next()
		ix.dropIdleLocked(el.Value.(*entry))
		el = next
	}
}

// hotCommitted puts the object just committed under name (size bytes on
// disk, inode ino, metadata info) in the hot set, replacing what it held
// of the previous object.
func (ix *index) hotCommitted(name string, size int64, ino uint64, info storage.Info, now int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.changedLocked(name)
	e := ix.hot[name]
	if e == nil {
		e = &entry{name: name}
		e.elem = ix.lru.PushFront(e)
		ix.hot[name] = e
		ix.trimLocked()
	} else {
		ix.lru.MoveToFront(e.elem)
		ix.dropDataLocked(e)
		ix.dropIdleLocked(e)
	}
	e.size, e.ino, e.info, e.hasInfo = size, ino, info, true
	e.used, e.recorded = now, now
}

// hotRemoved forgets what the hot set holds of the object name (deleted
// from disk by the caller).
func (ix *index) hotRemoved(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.changedLocked(name)
	if e := ix.hot[name]; e != nil {
		ix.dropDataLocked(e)
		ix.dropIdleLocked(e)
		e.hasInfo, e.size, e.ino, e.hits = false, 0, 0, 0
		if e.readers == 0 {
			ix.lru.Remove(e.elem)
			delete(ix.hot, name)
		}
	}
}

// hotUse tells eviction about the object name: whether it is being read,
// and its last use if the hot set knows a later one than the index.
func (ix *index) hotUse(name string) (readers int, used int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.hot[name]; e != nil {
		return e.readers, e.used
	}
	return 0, 0
}

// hotUses returns the uses the index has not been told of, for Close.
func (ix *index) hotUses() map[string]use {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	uses := map[string]use{}
	for _, e := range ix.hot {
		if e.hasInfo && (e.used > e.recorded || e.hits > 0) {
			uses[e.info.Key] = use{e.used, e.hits}
			e.recorded, e.hits = e.used, 0
		}
	}
	return uses
}

// hotPending returns what the hot set knows of the object name's uses
// that the index may not hold yet: the last use and the uses not told.
func (ix *index) hotPending(name string) use {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.hot[name]; e != nil && e.hasInfo {
		return use{e.used, e.hits}
	}
	return use{}
}

// reserve promises n more bytes to a writer. With a size limit, room is
// made by evicting the least recently used objects, once the index is
// complete; before that only the room the limit leaves beside the objects
// indexed so far can be promised.
func (ix *index) reserve(n int64) error {
	if n <= 0 {
		return nil
	}
	ix.mu.Lock()
	if ix.maxSize <= 0 || ix.bytes+ix.reserved+n <= ix.maxSize {
		ix.reserved += n
		ix.mu.Unlock()
		return nil
	}
	complete := ix.complete
	ix.mu.Unlock()
	if n > ix.maxSize || !complete {
		return ErrNoSpace
	}
	return ix.st.evict(n)
}

// release returns a writer's unused reservation.
func (ix *index) release(n int64) {
	ix.mu.Lock()
	ix.reserved -= n
	ix.mu.Unlock()
}

// stats returns the bytes held (reservations included), the number of
// objects and the evictions so far.
func (ix *index) stats() (bytes, objects, evictions int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.bytes + ix.reserved, ix.objects, ix.evictions
}

// isComplete reports whether every object on disk is indexed.
func (ix *index) isComplete() bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.complete
}

// waitComplete waits until every object on disk is indexed.
func (ix *index) waitComplete(ctx context.Context) bool {
	ix.mu.Lock()
	ch := ix.indexed
	ix.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}
