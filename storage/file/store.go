package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httpmirror/httpmirror/storage"
)

// The index database (bbolt, as etcd uses) holds, for every object, in
// three orders:
//
//	k: key → record (file size, body size, StoredAt, last use, inode,
//	   the number of uses, and the digest kept in the object's metadata,
//	   storage.DigestHeader)
//	a: last use (8 bytes) | hash (16 bytes) → key, oldest first: eviction
//	s: file size (8 bytes) | hash (16 bytes) → key: the largest objects
//	m: meta: format, counters, how far the journal is covered, whether
//	   every object on disk is indexed
//
// where hash is the start of the SHA-256 of the key, which keeps entries
// of equal time or size apart. A start opens the database and reads its
// meta: no object file is opened, and memory does not grow with the
// objects held (the database is read through mmap, a page at a time,
// when listing or evicting).
//
// The object files are the truth; the index follows them. Every change
// goes, in one goroutine (the applier), into a transaction that batches
// all the changes waiting, written without fsync (see stateName). A
// commit, delete or eviction names its key in the journal before it
// changes the file, so that a process that dies between the change and
// the transaction leaves the key to be checked again at the next start.
const (
	dbName      = "index.db"
	indexFormat = 1
	// touchQueueMax bounds the uses waiting for the applier; more are
	// dropped (eviction still sees them through the hot set).
	touchQueueMax = 1 << 16
	// buildBatch is how many files the build checks between waits for the
	// applier, which keeps its queue short.
	buildBatch = 512
	// gatherWait and gatherMax bound how long and how many changes the
	// applier holds to apply them together (see holdable).
	gatherWait = 10 * time.Millisecond
	gatherMax  = 256
	// queueWait is the length of the applier's queue past which commits
	// and deletes wait for their changes to be applied.
	queueWait = 4096
	// dropPagesTicks is how often, in the applier's one-second ticks, the
	// index's pages leave the resident set (see dropPages).
	dropPagesTicks = 15
)

var (
	bucketKeys = []byte("k")
	bucketAge  = []byte("a")
	bucketSize = []byte("s")
	bucketMeta = []byte("m")

	metaFormat   = []byte("format")
	metaComplete = []byte("complete")
	metaBytes    = []byte("bytes")
	metaObjects  = []byte("objects")
	metaJGen     = []byte("jgen")
	metaJOff     = []byte("joff")
	metaLost     = []byte("lost")
)

var (
	errClosed       = errors.New("file: backend closed")
	errIndexDamaged = errors.New("file: index damaged; rebuilding it from the object files")
)

// rec is an object's record in the index.
type rec struct {
	fileSize int64 // bytes on disk, trailer included
	size     int64 // body
	storedAt int64 // Unix nanoseconds
	used     int64 // last use, Unix nanoseconds
	ino      uint64
	// hits counts the uses of the object the index has been told of
	// (Open, batched like the last use: see touchEvery); records written
	// before it was kept have none and read as 0.
	hits int64
	// digest is the object's storage.DigestHeader value, verbatim (the
	// backend does not interpret it); empty when it has none, or one
	// longer than maxDigest (the trailer still has it).
	digest string
}

// recLen is the length of a record without hit count and digest, which
// follow: a record with hits has hitsTag and the count (8 bytes) next,
// one without has the digest right away. The tag is a byte no digest
// starts with (indexedDigest), so records written before hits were kept
// read as they did, with 0 hits, and records without hits are written as
// they were. (A version without hit counts misreads a record with hits:
// a downgrade needs the index rebuilt.)
const recLen = 40

// hitsTag marks a record's hit count.
const (
	hitsTag    = 0
	hitsTagLen = 9
)

// maxDigest bounds the digest a record holds: a SHA-256 in the form the
// fill writes takes 54 bytes.
const maxDigest = 128

// indexedDigest returns the digest of info a record holds.
func indexedDigest(h http.Header) string {
	d := h.Get(storage.DigestHeader)
	if len(d) > maxDigest || d != "" && d[0] == hitsTag {
		return ""
	}
	return d
}

func (r rec) encode() []byte {
	b := make([]byte, recLen, recLen+hitsTagLen+len(r.digest))
	binary.BigEndian.PutUint64(b[0:], uint64(r.fileSize))
	binary.BigEndian.PutUint64(b[8:], uint64(r.size))
	binary.BigEndian.PutUint64(b[16:], uint64(r.storedAt))
	binary.BigEndian.PutUint64(b[24:], uint64(r.used))
	binary.BigEndian.PutUint64(b[32:], r.ino)
	if r.hits > 0 {
		b = append(b, hitsTag)
		b = binary.BigEndian.AppendUint64(b, uint64(r.hits))
	}
	return append(b, r.digest...)
}

func decodeRec(b []byte) (rec, bool) {
	if len(b) < recLen || len(b) > recLen+hitsTagLen+maxDigest {
		return rec{}, false
	}
	r := rec{
		fileSize: int64(binary.BigEndian.Uint64(b[0:])),
		size:     int64(binary.BigEndian.Uint64(b[8:])),
		storedAt: int64(binary.BigEndian.Uint64(b[16:])),
		used:     int64(binary.BigEndian.Uint64(b[24:])),
		ino:      binary.BigEndian.Uint64(b[32:]),
	}
	rest := b[recLen:]
	if len(rest) > 0 && rest[0] == hitsTag {
		if len(rest) < hitsTagLen {
			return rec{}, false
		}
		r.hits = int64(binary.BigEndian.Uint64(rest[1:]))
		rest = rest[hitsTagLen:]
	}
	if len(rest) > maxDigest {
		return rec{}, false
	}
	r.digest = string(rest)
	return r, true
}

// orderKey is an entry of the a or s bucket: n, then the start of the
// key's hash.
func orderKey(n int64, key string) []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint64(b, uint64(max(n, 0)))
	sum := sha256.Sum256([]byte(key))
	copy(b[8:], sum[:16])
	return b
}

// hexName is the object file name of key.
func hexName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

type opKind uint8

const (
	opPut      opKind = iota // a commit
	opDel                    // a delete
	opObserve                // what the build found in a key's file
	opEvict                  // make room for need bytes and reserve them
	opSync                   // wait for everything queued before
	opComplete               // the build is done: every object is indexed
	opExpire                 // remove objects not used since cutoff
)

// op is a change for the applier.
type op struct {
	kind        opKind
	key         string
	r           rec
	present     bool       // opObserve: the file holds an object
	j           *jentry    // the journal record of the change
	reservation int64      // opPut: the writer's reservation, released
	need        int64      // opEvict
	victims     []victim   // opEvict, opExpire: files removed by an attempt that failed
	tried       bool       // opEvict, opExpire: victims were chosen already
	done        chan error // nil: nobody waits
	finished    bool       // done has its answer

	// opExpire: objects last used before cutoff go, but for those keep
	// keeps; the applier sets expired (valid when done says nil) and
	// more (the batch was full: more may be idle).
	cutoff  int64
	keep    func(string) bool
	expired int
	more    bool
}

// finish answers the waiter of o, once.
func (o *op) finish(err error) {
	if o.done != nil && !o.finished {
		o.finished = true
		o.done <- err
	}
}

type victim struct {
	key     string
	removed bool // the file was removed (not found gone)
	j       *jentry
}

// store is the index database and the goroutines that write it: the
// applier, the build and the checker of objects used but not indexed.
type store struct {
	ix     *index
	root   string
	dbPath string
	boot   string

	dbMu sync.RWMutex // held exclusively only to replace a damaged db
	db   *bolt.DB

	qmu      sync.Mutex
	queue    []*op
	touches  map[string]use
	stopping bool
	wake     chan struct{}
	stopped  chan struct{}

	// The applier's own.
	retry        []*op
	retryTouches map[string]use
	buildTouch   map[string]use // uses of objects the build has not reached
	unclean      bool           // changes the index could not record

	damaged atomic.Bool  // a reader found the database damaged
	commits atomic.Int64 // index transactions committed
	resets  atomic.Int64

	bmu       sync.Mutex
	buildStop context.CancelFunc
	buildDone chan struct{}

	lazy     chan string // keys used but not indexed
	lazyStop chan struct{}
	lazyDone chan struct{}
}

// openStore opens the index of ix's cache directory, deciding from the
// state the last process left what it can trust, and starts the applier
// and, when some objects may not be indexed, the build.
func openStore(ix *index) (*store, error) {
	root := ix.root
	s := &store{ix: ix, root: root, dbPath: filepath.Join(root, dbName), boot: bootID(),
		wake: make(chan struct{}, 1), stopped: make(chan struct{}),
		lazy: make(chan string, 256), lazyStop: make(chan struct{}), lazyDone: make(chan struct{})}
	last := readState(root)
	trusted := last.trusted(s.boot)
	jPath := filepath.Join(root, journalName)
	if !trusted {
		if err := removeFile(s.dbPath); err != nil {
			return nil, fmt.Errorf("cache directory: index: %w", err)
		}
	}
	m, fresh, err := s.openDB()
	if err != nil {
		return nil, err
	}
	keep := trusted && !last.Clean && !fresh
	j, kept, err := openJournal(jPath, keep, m.jgen+1)
	if err != nil {
		s.db.Close()
		return nil, err
	}
	ix.j = j
	if keep && !kept {
		// The changes the index may lack are unknown: start over.
		if m, err = s.freshDB(); err != nil {
			j.close()
			return nil, err
		}
		fresh = true
	}
	if err := writeState(root, indexState{Boot: s.boot}); err != nil {
		s.db.Close()
		j.close()
		return nil, fmt.Errorf("cache directory: index state: %w", err)
	}
	var replay []string
	if kept {
		if replay, err = j.replayKeys(m.jgen, m.joff); err != nil {
			replay = nil // the records read so far are checked
		}
	}
	if fresh && !m.complete && emptyDir(ix.dir) {
		// A new cache: there is nothing to index.
		if err := guard(func() error {
			return s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(metaComplete, u64(1))
			})
		}); err == nil {
			m.complete = true
		}
	}
	ix.bytes, ix.objects = m.bytes, m.objects
	ix.complete = m.complete && !kept
	ix.indexed = make(chan struct{})
	if ix.complete {
		close(ix.indexed)
	} else {
		s.buildTouch = map[string]use{}
	}
	go s.run()
	go s.checkLazily()
	if !ix.complete {
		s.startBuild(replay, !m.complete)
	}
	return s, nil
}

// dbMeta is what the index database's meta bucket says.
type dbMeta struct {
	complete, lost bool
	bytes, objects int64
	jgen           uint64
	joff           int64
}

// openDB opens the index database, or starts a new one when it is
// missing, damaged, of another format or no longer covered by its
// journal. fresh says it was started anew.
func (s *store) openDB() (m dbMeta, fresh bool, err error) {
	if _, err := os.Stat(s.dbPath); errors.Is(err, fs.ErrNotExist) {
		m, err = s.freshDB()
		return m, true, err
	}
	db, err := openBolt(s.dbPath)
	if err == nil {
		s.db = db
		if m, err = s.readMeta(); err == nil && !m.lost {
			return m, false, nil
		}
		closeBolt(db)
	}
	m, err = s.freshDB()
	return m, true, err
}

// freshDB replaces the index database by an empty one.
func (s *store) freshDB() (dbMeta, error) {
	if s.db != nil {
		closeBolt(s.db)
		s.db = nil
	}
	if err := removeFile(s.dbPath); err != nil {
		return dbMeta{}, fmt.Errorf("cache directory: index: %w", err)
	}
	db, err := openBolt(s.dbPath)
	if err != nil {
		return dbMeta{}, fmt.Errorf("cache directory: index: %w", err)
	}
	err = guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketKeys, bucketAge, bucketSize, bucketMeta} {
				if _, err := tx.CreateBucket(b); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(metaFormat, u64(indexFormat))
		})
	})
	if err != nil {
		closeBolt(db)
		return dbMeta{}, fmt.Errorf("cache directory: index: %w", err)
	}
	s.db = db
	return dbMeta{}, nil
}

// openBolt opens the bbolt database at path.
func openBolt(path string) (db *bolt.DB, err error) {
	err = guard(func() error {
		// NoSync: see stateName. The lock of the cache directory keeps
		// other processes away, so bbolt's own lock never waits long.
		db, err = bolt.Open(path, 0o644, &bolt.Options{
			Timeout: 10 * time.Second, NoSync: true, NoGrowSync: true,
			FreelistType: bolt.FreelistMapType,
		})
		return err
	})
	return db, err
}

// guard runs fn, which reads the index database, turning a panic of bbolt
// on a page it cannot make sense of, or a fault on a page the file no
// longer holds (it was truncated), into a damageError.
func guard(fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = &damageError{r}
		}
	}()
	return fn()
}

func closeBolt(db *bolt.DB) {
	guard(db.Close)
}

func (s *store) readMeta() (m dbMeta, err error) {
	err = guard(func() error {
		return s.db.View(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketKeys, bucketAge, bucketSize} {
				if tx.Bucket(b) == nil {
					return errors.New("index incomplete")
				}
			}
			mb := tx.Bucket(bucketMeta)
			if mb == nil || getU64(mb, metaFormat) != indexFormat {
				return errors.New("index of another format")
			}
			m = dbMeta{
				complete: getU64(mb, metaComplete) == 1, lost: getU64(mb, metaLost) == 1,
				bytes: int64(getU64(mb, metaBytes)), objects: int64(getU64(mb, metaObjects)),
				jgen: getU64(mb, metaJGen), joff: int64(getU64(mb, metaJOff)),
			}
			return nil
		})
	})
	return m, err
}

// emptyDir reports whether dir has no entries.
func emptyDir(dir string) bool {
	f, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	return len(names) == 0 && errors.Is(err, io.EOF)
}

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

func getU64(b *bolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// view runs fn in a read transaction. A damaged database is rebuilt.
func (s *store) view(fn func(tx *bolt.Tx) error) (err error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return errIndexDamaged
	}
	err = guard(func() error { return s.db.View(fn) })
	var damaged *damageError
	if errors.As(err, &damaged) {
		s.damaged.Store(true)
		s.kick()
		return errIndexDamaged
	}
	return err
}

// writes reports the index's transactions and page writes.
func (s *store) writes() IndexWrites {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	w := IndexWrites{Transactions: s.commits.Load()}
	if s.db != nil {
		st := s.db.Stats()
		w.Pages, w.Time = st.TxStats.GetWrite(), st.TxStats.GetWriteTime()
	}
	return w
}

func (s *store) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// submit queues o for the applier; false once the store is closed.
func (s *store) submit(o *op) bool {
	ok, _ := s.enqueue(o)
	return ok
}

// enqueue queues o for the applier; false once the store is closed. wait
// says the queue is long: a commit or delete then waits for its change
// to be applied, which keeps the queue short when changes come faster
// than the index takes them.
func (s *store) enqueue(o *op) (ok, wait bool) {
	s.qmu.Lock()
	if s.stopping {
		s.qmu.Unlock()
		return false, false
	}
	s.queue = append(s.queue, o)
	wait = len(s.queue) >= queueWait
	s.qmu.Unlock()
	s.kick()
	return true, wait
}

// sync waits until the index holds every change queued before.
func (s *store) sync() {
	s.do(&op{kind: opSync})
}

// do queues o and waits until the index holds it.
func (s *store) do(o *op) error {
	o.done = make(chan error, 1)
	if !s.submit(o) {
		return errClosed
	}
	return <-o.done
}

// use is what the index is told of an object's uses: the last one (Unix
// nanoseconds) and how many there were since it was last told.
type use struct{ t, n int64 }

// add merges u into v.
func (v use) add(u use) use { return use{max(v.t, u.t), v.n + u.n} }

// touch records n uses of the object under key, the last at t (Unix
// nanoseconds), written to the index within a second or so. The uses of
// one key waiting for the applier are merged, so a batch holds one
// change per object however often it was used.
func (s *store) touch(key string, t, n int64) {
	s.qmu.Lock()
	if s.stopping {
		s.qmu.Unlock()
		return
	}
	if s.touches == nil {
		s.touches = map[string]use{}
	}
	old, ok := s.touches[key]
	if !ok && len(s.touches) >= touchQueueMax {
		s.qmu.Unlock()
		return
	}
	s.touches[key] = old.add(use{t, n})
	s.qmu.Unlock()
}

// evict makes room for n more bytes, evicting the least recently used
// objects nobody is reading, and reserves them.
func (s *store) evict(n int64) error {
	err := s.do(&op{kind: opEvict, need: n})
	if errors.Is(err, errClosed) {
		return ErrNoSpace
	}
	return err
}

// run is the applier.
func (s *store) run() {
	defer close(s.stopped)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	gather := time.NewTimer(s.ix.gather)
	gather.Stop()
	var holding, due bool // the gather timer is armed; it fired
	for ticks := 0; ; {
		select {
		case <-s.wake:
		case <-gather.C:
			due = true
		case <-tick.C:
			if ticks++; ticks%dropPagesTicks == 0 {
				s.dropPages()
			}
		}
		s.qmu.Lock()
		if !due && !s.stopping && holdable(s.queue) {
			if !holding {
				holding = true
				gather.Reset(s.ix.gather)
			}
			s.qmu.Unlock()
			continue
		}
		if holding && !due {
			gather.Stop()
		}
		holding, due = false, false
		batch, touches, stop := s.queue, s.touches, s.stopping
		s.queue, s.touches = nil, nil
		s.qmu.Unlock()
		if s.damaged.Load() && !stop {
			s.reset(nil) // before the batch, which may wait for it
		}
		s.process(batch, touches)
		if stop {
			if len(s.retry) > 0 {
				s.process(nil, nil) // one last try
			}
			s.unclean = len(s.retry) > 0
			for _, o := range s.retry {
				s.ix.j.done(o.j)
			}
			return
		}
	}
}

// process applies a batch, or keeps it for another try when the
// database fails.
func (s *store) process(batch []*op, touches map[string]use) {
	if len(s.retry) > 0 {
		batch = append(s.retry, batch...)
		s.retry = nil
	}
	for k, u := range s.retryTouches {
		if touches == nil {
			touches = map[string]use{}
		}
		touches[k] = touches[k].add(u)
	}
	s.retryTouches = nil
	if len(touches) == 0 && onlySyncs(batch) {
		for _, o := range batch {
			o.finish(nil)
		}
		return
	}
	err := s.apply(batch, touches)
	var damaged *damageError
	switch {
	case err == nil:
	case errors.As(err, &damaged):
		s.reset(batch)
	default:
		// The files changed; the index will record it on the next try,
		// and until then the journal names the changes. The waiters go
		// on: a commit is durable without its index entry.
		for _, o := range batch {
			if o.kind == opEvict {
				o.need = 0
				o.finish(ErrNoSpace)
			}
			if o.kind == opExpire {
				// The retry only forgets the files removed.
				o.finish(err)
			}
			o.finish(nil)
			if o.kind != opSync {
				s.retry = append(s.retry, o)
			}
		}
		s.retryTouches = touches
	}
}

// holdable says the applier may hold queue for up to gatherWait to
// apply it with the changes that follow: it holds only commits and
// deletes nobody waits for, fewer than gatherMax. A stream of deletes
// (a purge) or commits then shares index transactions: each order's
// pages are written once for many objects instead of once per object
// (about nine pages per object otherwise). A change held is in the
// files and in the journal already, so it is as durable as one applied;
// anything that waits for the index (a sync, an eviction, a long queue)
// ends the hold.
func holdable(queue []*op) bool {
	if len(queue) == 0 || len(queue) >= gatherMax {
		return false
	}
	for _, o := range queue {
		if o.kind != opPut && o.kind != opDel {
			return false
		}
	}
	return true
}

func onlySyncs(batch []*op) bool {
	for _, o := range batch {
		if o.kind != opSync {
			return false
		}
	}
	return true
}

// damageError is a panic of bbolt on a damaged database.
type damageError struct{ v any }

func (e *damageError) Error() string { return fmt.Sprintf("index damaged: %v", e.v) }

// delta is what a transaction changes in the counters.
type delta struct {
	bytes, objects, evictions int64
	granted                   int64 // reservations promised to evict ops
	// landed is the reservations of the commits the transaction
	// records: their bytes are in bytes now, and the reservations are
	// released once it is committed.
	landed int64
}

// applying is a transaction of the applier.
type applying struct {
	s               *store
	keys, age, size *bolt.Bucket
	d               delta
	complete        bool // the index is complete (or becomes so)
	completed       bool // this transaction completes it
	entries         []*jentry
}

// apply writes batch and touches into the index in one transaction, and
// on success updates the counters and releases the waiters.
func (s *store) apply(batch []*op, touches map[string]use) (err error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		// No index (a damaged one could not be replaced): the changes
		// stay in the files alone.
		for _, o := range batch {
			switch o.kind {
			case opPut:
				s.ix.release(o.reservation)
			case opEvict:
				o.finish(ErrNoSpace)
			}
			o.finish(nil)
			s.ix.j.done(o.j)
		}
		return nil
	}
	a := &applying{s: s, complete: s.ix.isComplete()}
	err = guard(func() error {
		return s.db.Update(func(tx *bolt.Tx) error {
			a.keys, a.age, a.size = tx.Bucket(bucketKeys), tx.Bucket(bucketAge), tx.Bucket(bucketSize)
			mb := tx.Bucket(bucketMeta)
			if a.keys == nil || a.age == nil || a.size == nil || mb == nil {
				panic("index buckets missing")
			}
			for _, o := range batch {
				if err := a.op(o, mb); err != nil {
					return err
				}
			}
			for k, u := range touches {
				a.touch(k, u)
			}
			if a.complete && s.ix.maxSize > 0 {
				a.evict(0, nil)
			}
			s.ix.j.mark(a.entries, true)
			gen, off, lost := s.ix.j.position()
			s.ix.mu.Lock()
			bytes, objects := s.ix.bytes+a.d.bytes, s.ix.objects+a.d.objects
			s.ix.mu.Unlock()
			for _, kv := range []struct {
				k []byte
				v uint64
			}{{metaBytes, uint64(bytes)}, {metaObjects, uint64(objects)}, {metaJGen, gen}, {metaJOff, uint64(off)}} {
				if err := mb.Put(kv.k, u64(kv.v)); err != nil {
					return err
				}
			}
			if lost {
				if err := mb.Put(metaLost, u64(1)); err != nil {
					return err
				}
			}
			s.ix.point("apply-commit")
			return nil
		})
	})
	if err != nil {
		s.ix.j.mark(a.entries, false)
		return err
	}
	s.commits.Add(1)
	s.ix.point("apply-committed")
	s.committed(batch, a)
	return nil
}

// committed updates the counters after a transaction, grants the
// reservations eviction made room for, and releases the waiters.
func (s *store) committed(batch []*op, a *applying) {
	ix := s.ix
	ix.mu.Lock()
	ix.bytes += a.d.bytes
	ix.objects += a.d.objects
	ix.evictions += a.d.evictions
	for _, o := range batch {
		switch o.kind {
		case opPut:
			ix.reserved -= o.reservation
			o.reservation = 0
		case opEvict:
			if o.done != nil && !o.finished {
				if ix.bytes+ix.reserved+o.need <= ix.maxSize {
					ix.reserved += o.need
				} else {
					o.finish(ErrNoSpace)
				}
			}
		}
	}
	if a.completed {
		ix.complete = true
		close(ix.indexed)
	}
	ix.mu.Unlock()
	ix.j.done(a.entries...)
	if a.completed {
		ix.j.release()
		s.buildTouch = nil
	}
	if ix.j.rotate() {
		ix.point("journal-rotated")
	}
	for _, o := range batch {
		o.finish(nil)
	}
}

func (a *applying) get(key string) (rec, bool) {
	return decodeRec(a.keys.Get([]byte(key)))
}

// unlink removes the entries of the object under key, whose record is r.
func (a *applying) unlink(key string, r rec) error {
	if err := a.keys.Delete([]byte(key)); err != nil {
		return err
	}
	if err := a.age.Delete(orderKey(r.used, key)); err != nil {
		return err
	}
	if err := a.size.Delete(orderKey(r.fileSize, key)); err != nil {
		return err
	}
	a.d.bytes -= r.fileSize
	a.d.objects--
	return nil
}

// put indexes the object under key with record r, replacing any other.
func (a *applying) put(key string, r rec) error {
	if old, ok := a.get(key); ok {
		if err := a.unlink(key, old); err != nil {
			return err
		}
	}
	if err := a.keys.Put([]byte(key), r.encode()); err != nil {
		return err
	}
	if err := a.age.Put(orderKey(r.used, key), []byte(key)); err != nil {
		return err
	}
	if err := a.size.Put(orderKey(r.fileSize, key), []byte(key)); err != nil {
		return err
	}
	a.d.bytes += r.fileSize
	a.d.objects++
	return nil
}

func (a *applying) del(key string) error {
	if old, ok := a.get(key); ok {
		return a.unlink(key, old)
	}
	return nil
}

func (a *applying) op(o *op, mb *bolt.Bucket) error {
	if o.j != nil {
		a.entries = append(a.entries, o.j)
	}
	switch o.kind {
	case opPut:
		// A new version of the object (a revalidation, a refetch)
		// keeps the count of its key's uses.
		r := o.r
		if old, ok := a.get(o.key); ok {
			r.hits += old.hits
		}
		a.d.landed += o.reservation
		return a.put(o.key, r)
	case opDel:
		return a.del(o.key)
	case opObserve:
		if !o.present {
			return a.del(o.key)
		}
		r := o.r
		old, ok := a.get(o.key)
		if ok && old.ino == r.ino && old.fileSize == r.fileSize {
			return nil // indexed already
		}
		if ok {
			r.used = max(r.used, old.used)
			r.hits += old.hits
		}
		bt := a.s.buildTouch[o.key]
		r.used = max(r.used, bt.t)
		r.hits += bt.n
		return a.put(o.key, r)
	case opEvict:
		// A try that failed removed these files already.
		for _, v := range o.victims {
			if err := a.evicted(v); err != nil {
				return err
			}
		}
		if !o.tried {
			if err := a.evict(o.need, o); err != nil {
				return err
			}
		}
		a.d.granted += o.need
	case opComplete:
		a.complete, a.completed = true, true
		return mb.Put(metaComplete, u64(1))
	case opExpire:
		return a.expire(o)
	}
	return nil
}

// touch records u, uses of the object under key.
func (a *applying) touch(key string, u use) error {
	r, ok := a.get(key)
	if !ok {
		if !a.complete {
			if a.s.buildTouch != nil {
				a.s.buildTouch[key] = a.s.buildTouch[key].add(u)
			}
		} else {
			a.s.checkLater(key)
		}
		return nil
	}
	if u.t <= r.used && u.n <= 0 {
		return nil
	}
	r.hits += max(u.n, 0)
	if u.t > r.used {
		if err := a.age.Delete(orderKey(r.used, key)); err != nil {
			return err
		}
		r.used = u.t
		if err := a.age.Put(orderKey(u.t, key), []byte(key)); err != nil {
			return err
		}
	}
	return a.keys.Put([]byte(key), r.encode())
}

// evict removes least recently used objects nobody is reading until the
// objects, the reservations and need fit the size limit. An object the
// hot set saw used since the index last heard of it is moved to its
// place in the order instead: the order eviction follows is that of
// every use, while the index is written at most once a minute per object.
func (a *applying) evict(need int64, o *op) error {
	ix := a.s.ix
	ix.mu.Lock()
	// A commit of this transaction counts once: by its bytes, not also
	// by its reservation, which is still held until the transaction is
	// committed. Counted twice, the object just committed could be
	// evicted to make room for itself.
	projected := ix.bytes + a.d.bytes + ix.reserved - a.d.landed + a.d.granted + need
	ix.mu.Unlock()
	if projected <= ix.maxSize {
		return nil
	}
	victims, err := a.removeOldest(
		func([]byte) bool { return projected <= ix.maxSize },
		func(_ string, r rec) bool { projected -= r.fileSize; return true })
	if err != nil {
		return err
	}
	for _, v := range victims {
		if o != nil {
			o.victims = append(o.victims, v)
		}
		if err := a.evicted(v); err != nil {
			return err
		}
	}
	if o != nil {
		o.tried = true
	}
	return nil
}

// removeOldest is the one walk eviction and expiry take through the
// order of use, from the least recently used object, until done says
// (given the entry's order key) that it has gone far enough. It drops
// stray entries, leaves objects being read, moves those the hot set used
// since their record to their place in the order, and removes (through
// remove, with their copies in memory) those take accepts. It returns
// what it removed; the caller drops their index entries.
func (a *applying) removeOldest(done func(k []byte) bool, take func(key string, r rec) bool) ([]victim, error) {
	ix := a.s.ix
	type move struct {
		key  string
		used int64
	}
	var moves []move
	var keys []string
	var stray [][]byte
	c := a.age.Cursor()
	for k, v := c.First(); k != nil && !done(k); k, v = c.Next() {
		key := string(v)
		r, ok := a.get(key)
		if !ok || !bytes.Equal(orderKey(r.used, key), k) {
			stray = append(stray, append([]byte(nil), k...))
			continue
		}
		readers, used := ix.hotUse(hexName(key))
		switch {
		case readers > 0:
			continue
		case used > r.used:
			moves = append(moves, move{key, used})
			continue
		}
		if take(key, r) {
			keys = append(keys, key)
		}
	}
	for _, k := range stray {
		if err := a.age.Delete(k); err != nil {
			return nil, err
		}
	}
	for _, m := range moves {
		if err := a.touch(m.key, use{t: m.used}); err != nil {
			return nil, err
		}
	}
	var victims []victim
	for _, key := range keys {
		v, ok := a.remove(key)
		if !ok {
			continue
		}
		ix.hotRemoved(hexName(key)) // no copy in memory outlives the file
		victims = append(victims, v)
	}
	return victims, nil
}

// remove deletes the file of the eviction victim key, unless it is no
// longer the file the index knows (a commit replaced it: its record is
// on its way).
func (a *applying) remove(key string) (victim, bool) {
	ix := a.s.ix
	r, _ := a.get(key)
	name := hexName(key)
	p := ix.path(name)
	mu := ix.stripe(name)
	mu.Lock()
	defer mu.Unlock()
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return victim{key: key}, true // gone already: forget it
	case err != nil:
		return victim{}, false
	case r.ino != 0 && inode(fi) != r.ino:
		return victim{}, false
	}
	j, _ := ix.j.add(key) // without a record the journal says it is lost
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		ix.j.done(j)
		return victim{}, false
	}
	ix.point("evict-removed")
	return victim{key: key, removed: true, j: j}, true
}

// evicted forgets the eviction victim v.
func (a *applying) evicted(v victim) error {
	removed, err := a.forget(v)
	if removed {
		a.d.evictions++
	}
	return err
}

// checkLater queues the key of an object used but not indexed (written
// by a writer that outlived its backend, or put there by hand) to be
// checked and indexed.
func (s *store) checkLater(key string) {
	select {
	case s.lazy <- key:
	default:
	}
}

func (s *store) checkLazily() {
	defer close(s.lazyDone)
	for {
		select {
		case key := <-s.lazy:
			s.observeKey(key)
			s.ix.point("checked")
		case <-s.lazyStop:
			return
		}
	}
}

// reset replaces a damaged database by an empty one and rebuilds it from
// the object files. The waiters of batch are released: their files are
// what the build finds.
func (s *store) reset(batch []*op) {
	s.resets.Add(1)
	for _, o := range batch {
		if o.kind == opEvict {
			o.finish(ErrNoSpace)
		}
		o.finish(nil)
		s.ix.j.done(o.j)
		for _, v := range o.victims {
			s.ix.j.done(v.j)
		}
	}
	s.stopBuild()
	s.dbMu.Lock()
	_, err := s.freshDB()
	s.dbMu.Unlock()
	s.damaged.Store(false)
	ix := s.ix
	ix.mu.Lock()
	ix.bytes, ix.objects = 0, 0
	if ix.complete {
		ix.complete = false
		ix.indexed = make(chan struct{})
	}
	ix.mu.Unlock()
	if err != nil {
		return // s.db is nil: the index stays incomplete
	}
	s.buildTouch = map[string]use{}
	s.startBuild(nil, true)
}

// close stops the goroutines, writes what the hot set knows of recent
// uses and leaves the index synced and marked clean.
func (s *store) close() error {
	close(s.lazyStop)
	<-s.lazyDone
	s.stopBuild()
	for k, u := range s.ix.hotUses() {
		s.touch(k, u.t, u.n)
	}
	s.qmu.Lock()
	s.stopping = true
	s.qmu.Unlock()
	s.kick()
	<-s.stopped
	s.stopBuild() // one a last reset may have started
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	var err error
	synced := !s.ix.noSync
	if s.db != nil {
		if synced {
			err = s.db.Sync()
		}
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
		s.db = nil
	}
	if jerr := s.ix.j.close(); err == nil {
		err = jerr
	}
	if err != nil || s.unclean {
		return err // the state stays unclean: the next start checks
	}
	return writeState(s.root, indexState{Clean: true, Synced: synced, Boot: s.boot})
}
