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
	data []byte
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

	st      *store
	j       *journal
	durable *syncer

	visits atomic.Int64 // index entries read by List and Largest
}

func (ix *index) path(name string) string {
	return filepath.Join(ix.dir, name[0:2], name[2:4], name)
}

// stripe returns the lock of the object file name (see index.stripes).
func (ix *index) stripe(name string) *sync.Mutex {
	return &ix.stripes[unhex(name[0])<<4|unhex(name[1])]
}

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

// lookupMemory returns the in-memory body and metadata of the object name,
// if it has them, marking the use.
func (ix *index) lookupMemory(name []byte, now int64) (data []byte, info storage.Info, ok bool) {
	ix.mu.Lock()
	e := ix.hot[string(name)]
	if e == nil || e.data == nil {
		ix.mu.Unlock()
		return nil, storage.Info{}, false
	}
	ix.lru.MoveToFront(e.elem)
	u := ix.usedLocked(e, now)
	data, info = e.data, e.info
	ix.mu.Unlock()
	if u.n > 0 {
		ix.st.touch(info.Key, u.t, u.n)
	}
	return data, info, true
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
func (ix *index) opened(name string, fi os.FileInfo, info storage.Info, now int64) (e *entry, load bool) {
	ix.mu.Lock()
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && st.Nlink == 0 {
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
	}
	e.info, e.hasInfo = info, true
	e.readers++
	ix.lru.MoveToFront(e.elem)
	u := ix.usedLocked(e, now)
	load = e.data == nil && info.Size <= ix.memObject && info.Size < ix.memMax
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
			ix.lru.Remove(el)
			delete(ix.hot, e.name)
		}
		el = prev
	}
}

// keep stores data, the body of the object of entry e, in memory if the
// memory budget allows, making room by dropping the bodies of the least
// recently used objects.
func (ix *index) keep(e *entry, ino uint64, data []byte) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.hot[e.name] != e || e.ino != ino || e.data != nil {
		return // replaced meanwhile
	}
	need := int64(len(data))
	for el := ix.lru.Back(); el != nil && ix.memBytes+need > ix.memMax; el = el.Prev() {
		if o := el.Value.(*entry); o != e {
			ix.dropDataLocked(o)
		}
	}
	if ix.memBytes+need > ix.memMax {
		return
	}
	if data == nil {
		data = []byte{} // an empty object is kept too
	}
	e.data = data
	ix.memBytes += need
}

func (ix *index) dropDataLocked(e *entry) {
	if e.data != nil {
		ix.memBytes -= int64(len(e.data))
		e.data = nil
	}
}

// closed drops a reader recorded by opened.
func (ix *index) closed(e *entry) {
	if e == nil {
		return
	}
	ix.mu.Lock()
	e.readers--
	ix.mu.Unlock()
}

// hotCommitted puts the object just committed under name (size bytes on
// disk, inode ino, metadata info) in the hot set, replacing what it held
// of the previous object.
func (ix *index) hotCommitted(name string, size int64, ino uint64, info storage.Info, now int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := ix.hot[name]
	if e == nil {
		e = &entry{name: name}
		e.elem = ix.lru.PushFront(e)
		ix.hot[name] = e
		ix.trimLocked()
	} else {
		ix.lru.MoveToFront(e.elem)
		ix.dropDataLocked(e)
	}
	e.size, e.ino, e.info, e.hasInfo = size, ino, info, true
	e.used, e.recorded = now, now
}

// hotRemoved forgets what the hot set holds of the object name (deleted
// from disk by the caller).
func (ix *index) hotRemoved(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.hot[name]; e != nil {
		ix.dropDataLocked(e)
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
