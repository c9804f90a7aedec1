package file

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// ErrNoSpace is returned when an object cannot be stored without exceeding
// the cache's size limit: it is larger than the limit, or every other object
// is in use. The fill engine then serves the object without caching it.
var ErrNoSpace = storage.ErrNoSpace

// touchEvery is how often an object's modification time is advanced when
// it is read. The mtime is the least-recently-used order that survives a
// restart; updating it at most this often keeps hits free of writes.
const touchEvery = time.Minute

// entry is one committed object in the index.
type entry struct {
	name    string // file name: the hex SHA-256 of the key
	size    int64  // bytes on disk, trailer included
	readers int    // open objects; an entry with readers is never evicted
	touched time.Time
	elem    *list.Element // in index.lru; front is most recently used

	// The object's metadata once read (or written), valid for the file
	// with inode ino, so that a hit does not parse the trailer again.
	info    storage.Info
	hasInfo bool
	ino     uint64
	// data holds the body of a small object in memory (see
	// Options.MemoryCacheSize): a hit then needs no system call at all.
	data []byte
	// listed is what a listing needs of an object whose metadata is not
	// held: read once from its trailer by List.
	listed *listed
}

// index tracks the objects on disk, their sizes and their use, to keep the
// cache under its size limit by evicting the least recently used objects.
type index struct {
	dir     string // the objects directory
	maxSize int64  // 0: no limit

	memMax    int64 // bytes of small object bodies kept in memory
	memObject int64 // largest body kept in memory

	mu        sync.Mutex
	entries   map[string]*entry
	lru       list.List
	bytes     int64 // committed objects
	reserved  int64 // space promised to writers in progress
	evictions int64
	memBytes  int64 // bodies held in entries' data
}

// load builds the index from the objects on disk, most recently modified
// first.
func (ix *index) load() error {
	ix.entries = make(map[string]*entry)
	var found []*entry
	err := filepath.WalkDir(ix.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isHashName(d.Name()) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		found = append(found, &entry{name: d.Name(), size: fi.Size(), touched: fi.ModTime()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("cache directory: indexing objects: %w", err)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].touched.After(found[j].touched) })
	for _, e := range found {
		e.elem = ix.lru.PushBack(e)
		ix.entries[e.name] = e
		ix.bytes += e.size
	}
	return nil
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

func (ix *index) path(name string) string {
	return filepath.Join(ix.dir, name[0:2], name[2:4], name)
}

// lookupMemory returns the in-memory body and metadata of the object name,
// if it has them, marking the use. touch says whether the file's mtime
// should be advanced.
func (ix *index) lookupMemory(name []byte, now time.Time) (data []byte, info storage.Info, touch, ok bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := ix.entries[string(name)]
	if e == nil || e.data == nil {
		return nil, storage.Info{}, false, false
	}
	ix.lru.MoveToFront(e.elem)
	return e.data, e.info, ix.touchLocked(e, now), true
}

func (ix *index) touchLocked(e *entry, now time.Time) bool {
	if now.Sub(e.touched) > touchEvery {
		e.touched = now
		return true
	}
	return false
}

// cachedInfo returns the metadata recorded for the object file name if it
// belongs to the file whose stat is fi.
func (ix *index) cachedInfo(name string, fi os.FileInfo) (storage.Info, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := ix.entries[name]
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
// unlinked between its open and now: evicted or replaced, it is not indexed
// again), whether the file's mtime should be advanced, and whether the body
// should be loaded into memory (see keep).
func (ix *index) opened(name string, fi os.FileInfo, info storage.Info, now time.Time) (e *entry, touch, load bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && st.Nlink == 0 {
		return nil, false, false
	}
	e = ix.entries[name]
	if e == nil || e.size != fi.Size() || e.ino != inode(fi) {
		if e == nil {
			e = &entry{name: name, touched: fi.ModTime()}
			e.elem = ix.lru.PushFront(e)
			ix.entries[name] = e
		}
		ix.bytes += fi.Size() - e.size
		e.size = fi.Size()
		e.ino = inode(fi)
		ix.dropDataLocked(e)
	}
	e.info, e.hasInfo = info, true
	e.readers++
	ix.lru.MoveToFront(e.elem)
	load = e.data == nil && info.Size <= ix.memObject && info.Size < ix.memMax
	return e, ix.touchLocked(e, now), load
}

// keep stores data, the body of the object of entry e, in memory if the
// memory budget allows, making room by dropping the bodies of the least
// recently used objects.
func (ix *index) keep(e *entry, ino uint64, data []byte) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.entries[e.name] != e || e.ino != ino || e.data != nil {
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

// reserve promises n more bytes to a writer, evicting objects to make room.
func (ix *index) reserve(n int64) error {
	if n <= 0 {
		return nil
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.maxSize > 0 {
		if n > ix.maxSize {
			return ErrNoSpace
		}
		if !ix.evictLocked(ix.maxSize - n) {
			return ErrNoSpace
		}
	}
	ix.reserved += n
	return nil
}

// release returns a writer's unused reservation.
func (ix *index) release(n int64) {
	ix.mu.Lock()
	ix.reserved -= n
	ix.mu.Unlock()
}

// committed turns a writer's reservation into the object name of size
// bytes (inode ino, metadata info), replacing any previous object under
// that name.
func (ix *index) committed(name string, size, reservation int64, ino uint64, info storage.Info, now time.Time) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.reserved -= reservation
	if old := ix.entries[name]; old != nil {
		ix.bytes -= old.size
		ix.dropDataLocked(old)
		ix.lru.Remove(old.elem)
	}
	e := &entry{name: name, size: size, touched: now, info: info, hasInfo: true, ino: ino}
	e.elem = ix.lru.PushFront(e)
	ix.entries[name] = e
	ix.bytes += size
	if ix.maxSize > 0 {
		ix.evictLocked(ix.maxSize)
	}
}

// removed forgets the object name (deleted from disk by the caller).
func (ix *index) removed(name string) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e := ix.entries[name]; e != nil {
		ix.bytes -= e.size
		ix.dropDataLocked(e)
		ix.lru.Remove(e.elem)
		delete(ix.entries, name)
	}
}

// evictLocked removes least recently used objects nobody is reading until
// the cache holds at most limit bytes. It reports whether it got there.
func (ix *index) evictLocked(limit int64) bool {
	for el := ix.lru.Back(); el != nil && ix.bytes+ix.reserved > limit; {
		e := el.Value.(*entry)
		prev := el.Prev()
		if e.readers == 0 {
			if err := os.Remove(ix.path(e.name)); err == nil || errors.Is(err, fs.ErrNotExist) {
				ix.bytes -= e.size
				ix.dropDataLocked(e)
				ix.lru.Remove(el)
				delete(ix.entries, e.name)
				ix.evictions++
			}
		}
		el = prev
	}
	return ix.bytes+ix.reserved <= limit
}

// stats returns the bytes held (reservations included), the number of
// objects and the evictions so far.
func (ix *index) stats() (bytes, objects, evictions int64) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.bytes + ix.reserved, int64(len(ix.entries)), ix.evictions
}
