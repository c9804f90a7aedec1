package file

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

// payloadFor is the body stored under key in these tests: its content
// and size follow from the key, so that any object found can be checked.
func payloadFor(key string) []byte {
	h := sha256.Sum256([]byte(key))
	seed := binary.BigEndian.Uint64(h[:8])
	return testutil.Payload(seed, 100+int(seed%3000))
}

func putKey(b *Backend, key string) error {
	data := payloadFor(key)
	ctx := context.Background()
	w, err := b.Create(ctx, key, storage.Info{Size: int64(len(data)), ETag: `"e"`})
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Commit(ctx)
}

func mustNew(t *testing.T, dir string, opts Options) *Backend {
	t.Helper()
	b, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// seed stores keys in a new cache in dir and closes it.
func seed(t *testing.T, dir string, keys []string) {
	t.Helper()
	b, err := New(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := putKey(b, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func keysN(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return keys
}

func waitIndexed(t *testing.T, b *Backend) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.WaitIndexed(ctx); err != nil {
		t.Fatalf("index not complete after a minute: %v", err)
	}
}

func listAll(t *testing.T, b *Backend, prefix string) []storage.Info {
	t.Helper()
	var all []storage.Info
	token := ""
	for page := 0; page < 10000; page++ {
		objs, next, err := b.List(context.Background(), prefix, token, 100)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		all = append(all, objs...)
		if next == "" {
			return all
		}
		token = next
	}
	t.Fatalf("List(%q) did not end", prefix)
	return nil
}

// onDisk returns the objects whose files are whole, by key, with their
// file sizes; it fails on a damaged file.
func onDisk(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	found := map[string]int64{}
	filepath.WalkDir(filepath.Join(dir, objectsDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			t.Errorf("object file %s: %v", p, err)
			return nil
		}
		defer f.Close()
		fi, _ := f.Stat()
		m, err := readMeta(f, fi.Size())
		if err != nil || hexName(m.Key) != d.Name() {
			t.Errorf("object file %s is damaged: %v", p, err)
			return nil
		}
		found[m.Key] = fi.Size()
		return nil
	})
	return found
}

// checkConsistent opens the cache in dir, waits for its index and checks
// it against the files: every whole object listed once, nothing else,
// the counters right, every object served whole, no temporary file left.
func checkConsistent(t *testing.T, dir string, opts Options) (*Backend, map[string]int64) {
	t.Helper()
	b := mustNew(t, dir, opts)
	waitIndexed(t, b)
	files := onDisk(t, dir)
	var listed []string
	for _, o := range listAll(t, b, "") {
		listed = append(listed, o.Key)
		if size, ok := files[o.Key]; !ok {
			t.Errorf("listed %q, which has no file", o.Key)
		} else if o.Size != int64(len(payloadFor(o.Key))) || size <= o.Size {
			t.Errorf("listed %q with size %d; want %d", o.Key, o.Size, len(payloadFor(o.Key)))
		}
	}
	var want []string
	var bytes int64
	for k, size := range files {
		want = append(want, k)
		bytes += size
	}
	slices.Sort(want)
	if !slices.Equal(listed, want) {
		t.Errorf("listing has %d objects, the disk %d whole ones; listed %q; on disk %q", len(listed), len(want), listed, want)
	}
	if st := b.Stats(); st.Objects != int64(len(files)) || st.Bytes != bytes {
		t.Errorf("Stats = %+v; want %d objects, %d bytes", st, len(files), bytes)
	}
	for _, k := range want {
		if got := readKey(t, b, k); !bytesEqual(got, payloadFor(k)) {
			t.Errorf("%q served %d bytes, not its body", k, len(got))
		}
	}
	if n := testutil.CountFiles(t, filepath.Join(dir, tmpDir)); n != 0 {
		t.Errorf("%d temporary files left", n)
	}
	return b, files
}

func bytesEqual(a, b []byte) bool { return bytes.Equal(a, b) }

func readKey(t *testing.T, b *Backend, key string) []byte {
	t.Helper()
	o, err := b.Open(context.Background(), key)
	if err != nil {
		t.Errorf("Open(%q): %v", key, err)
		return nil
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Errorf("reading %q: %v", key, err)
	}
	return data
}

// A start with an index left clean opens no object file: the index is
// complete at once, and listing reads no trailer.
func TestStartReadsNoObjectFile(t *testing.T) {
	dir := t.TempDir()
	keys := keysN("example.com/start/", 50)
	seed(t, dir, keys)
	var trailers atomic.Int64
	b := mustNew(t, dir, Options{testHook: func(p string) {
		if p == "trailer" {
			trailers.Add(1)
		}
	}})
	if !b.Indexed() {
		t.Fatal("index not complete right after a clean start")
	}
	if got := listAll(t, b, ""); len(got) != len(keys) {
		t.Fatalf("listed %d objects; want %d", len(got), len(keys))
	}
	if st := b.Stats(); st.Objects != int64(len(keys)) {
		t.Errorf("Stats.Objects = %d; want %d", st.Objects, len(keys))
	}
	if n := trailers.Load(); n != 0 {
		t.Errorf("start and listing read %d trailers; want 0", n)
	}
}

// A deleted, damaged or untrusted index is rebuilt from the files in the
// background; the objects are served meanwhile.
func TestIndexRebuiltWhenLostOrDamaged(t *testing.T) {
	garbage := func(p string, off int64, n int) {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		f.WriteAt(bytes.Repeat([]byte{0xa5}, n), off)
	}
	for _, c := range []struct {
		name   string
		damage func(dir string)
	}{
		{"index deleted", func(dir string) { os.Remove(filepath.Join(dir, dbName)) }},
		{"index overwritten", func(dir string) { garbage(filepath.Join(dir, dbName), 0, 64<<10) }},
		{"index pages overwritten", func(dir string) { garbage(filepath.Join(dir, dbName), 2*4096, 64<<10) }},
		{"index truncated", func(dir string) { os.Truncate(filepath.Join(dir, dbName), 5000) }},
		{"index emptied", func(dir string) { os.Truncate(filepath.Join(dir, dbName), 0) }},
		{"state deleted", func(dir string) { os.Remove(filepath.Join(dir, stateName)) }},
		{"state garbage", func(dir string) { os.WriteFile(filepath.Join(dir, stateName), []byte("{garbage"), 0o644) }},
		{"left by a process of another boot", func(dir string) {
			writeState(dir, indexState{Boot: "another boot"})
		}},
		{"left by a dead process, journal garbage", func(dir string) {
			writeState(dir, indexState{Boot: bootID()})
			os.WriteFile(filepath.Join(dir, journalName), []byte("not a journal at all"), 0o644)
		}},
		{"left by a dead process, journal deleted", func(dir string) {
			writeState(dir, indexState{Boot: bootID()})
			os.Remove(filepath.Join(dir, journalName))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			keys := keysN("example.com/rebuild/", 40)
			seed(t, dir, keys)
			c.damage(dir)
			b := mustNew(t, dir, Options{})
			// Served at once, whether or not indexed yet.
			for _, k := range keys {
				if got := readKey(t, b, k); !bytes.Equal(got, payloadFor(k)) {
					t.Fatalf("%q: %d bytes served before the rebuild; want its body", k, len(got))
				}
			}
			waitIndexed(t, b)
			b.Close()
			b2, files := checkConsistent(t, dir, Options{})
			if len(files) != len(keys) || !b2.Indexed() {
				t.Errorf("%d objects after the rebuild, indexed %v; want %d, true", len(files), b2.Indexed(), len(keys))
			}
		})
	}
}

// A database found damaged while serving (bbolt panics on a page it
// cannot read) is replaced and rebuilt.
func TestIndexDamagedWhileServing(t *testing.T) {
	dir := t.TempDir()
	keys := keysN("example.com/runtime/", 30)
	seed(t, dir, keys)
	b := mustNew(t, dir, Options{})
	err := b.ix.st.view(func(*bolt.Tx) error { panic("unreadable page") })
	if !errors.Is(err, errIndexDamaged) {
		t.Fatalf("view of a damaged index: %v; want errIndexDamaged", err)
	}
	if err := b.ix.st.do(&op{kind: opSync}); err != nil {
		t.Fatal(err) // the rebuild has started once this returns
	}
	waitIndexed(t, b)
	if got := listAll(t, b, ""); len(got) != len(keys) {
		t.Fatalf("listed %d objects after the rebuild; want %d", len(got), len(keys))
	}
	if n := b.ix.st.resets.Load(); n != 1 {
		t.Errorf("%d rebuilds; want 1", n)
	}
	if st := b.Stats(); st.Objects != int64(len(keys)) {
		t.Errorf("Stats.Objects = %d; want %d", st.Objects, len(keys))
	}
}

// While the index is being built, objects are served from their hashed
// paths, listings wait, nothing is evicted and a new object is stored
// only beside the objects indexed so far; once built, eviction brings the
// cache within its limit, least recently used first.
func TestServeWhileIndexing(t *testing.T) {
	dir := t.TempDir()
	b, err := New(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 20, 10000
	var keys []string
	base := time.Now().Add(-time.Hour)
	for i := range n {
		k := fmt.Sprintf("example.com/lru/%02d", i)
		keys = append(keys, k)
		if err := putBody(b, k, testutil.Payload(uint64(i), size)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	for i, k := range keys {
		// Older uses first: the order a rebuild finds.
		p, _ := b.Path(k)
		mt := base.Add(time.Duration(i) * time.Minute)
		os.Chtimes(p, mt, mt)
	}
	os.Remove(filepath.Join(dir, dbName))

	entered := make(chan struct{})
	gate := testutil.NewGate(t)
	var once sync.Once
	const limit = 12 * (size + 200)
	b2 := mustNew(t, dir, Options{MaxSize: limit, testHook: func(p string) {
		if p == "walk" {
			once.Do(func() { close(entered) })
			gate.Wait()
		}
	}})
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the build did not start")
	}
	if b2.Indexed() {
		t.Fatal("Indexed() = true while the build is held")
	}
	ctx := context.Background()
	for i, k := range keys {
		if got := readKey(t, b2, k); !bytes.Equal(got, testutil.Payload(uint64(i), size)) {
			t.Fatalf("%q during the build: %d bytes; want its body", k, len(got))
		}
	}
	if st := b2.Stats(); st.Objects != 0 || st.Evictions != 0 {
		t.Errorf("Stats during the build = %+v; want nothing indexed, nothing evicted", st)
	}
	lctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, _, err = b2.List(lctx, "", "", 10)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("List during the build: %v; want it to wait (DeadlineExceeded)", err)
	}
	// Room beside what is indexed (nothing yet): a new object is stored.
	if err := putBody(b2, "example.com/lru/new", testutil.Payload(99, size)); err != nil {
		t.Fatalf("new object during the build: %v", err)
	}
	// One that needs an eviction is not.
	if w, err := b2.Create(ctx, "example.com/lru/big", storage.Info{Size: limit - size}); !errors.Is(err, ErrNoSpace) {
		t.Errorf("Create needing eviction during the build: %v; want ErrNoSpace", err)
		if err == nil {
			w.Close()
		}
	}
	if got := testutil.CountFiles(t, filepath.Join(dir, objectsDir)); got != n+1 {
		t.Errorf("%d object files during the build; want %d (nothing evicted)", got, n+1)
	}

	gate.Open()
	waitIndexed(t, b2)
	if got := testutil.DirBytes(filepath.Join(dir, objectsDir)); got > limit {
		t.Errorf("after the build the cache holds %d bytes; limit %d", got, limit)
	}
	if st := b2.Stats(); st.Evictions == 0 || st.Bytes > limit {
		t.Errorf("Stats after the build = %+v; want evictions, at most %d bytes", st, limit)
	}
	// The objects were all read during the build, in key order, after
	// their files' times: that is the order of use.
	for _, k := range []string{keys[0], keys[1], keys[2]} {
		if _, err := b2.Stat(ctx, k); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("least recently used %q survived: %v", k, err)
		}
	}
	for _, k := range []string{keys[n-1], keys[n-2], "example.com/lru/new"} {
		if _, err := b2.Stat(ctx, k); err != nil {
			t.Errorf("recently used %q evicted: %v", k, err)
		}
	}
	b2.Close()
	checkConsistentBodies(t, dir)
}

func putBody(b *Backend, key string, data []byte) error {
	ctx := context.Background()
	w, err := b.Create(ctx, key, storage.Info{Size: int64(len(data))})
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Commit(ctx)
}

// checkConsistentBodies checks listing and counters against the files,
// for objects whose bodies are not payloadFor.
func checkConsistentBodies(t *testing.T, dir string) {
	t.Helper()
	b := mustNew(t, dir, Options{})
	waitIndexed(t, b)
	files := onDisk(t, dir)
	var want []string
	var total int64
	for k, s := range files {
		want = append(want, k)
		total += s
	}
	slices.Sort(want)
	var got []string
	for _, o := range listAll(t, b, "") {
		got = append(got, o.Key)
	}
	if !slices.Equal(got, want) {
		t.Errorf("listed %q; on disk %q", got, want)
	}
	if st := b.Stats(); st.Objects != int64(len(files)) || st.Bytes != total {
		t.Errorf("Stats = %+v; want %d objects, %d bytes", st, len(files), total)
	}
	b.Close()
}

// The order of use survives a restart through the index, not the files'
// times: an object read since it was stored outlives one that was not.
func TestUseOrderSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := mustNew(t, dir, Options{NoSync: true})
	keys := []string{"example.com/use/a", "example.com/use/b", "example.com/use/c"}
	for i, k := range keys {
		if err := putBody(b, k, testutil.Payload(uint64(i), 100000)); err != nil {
			t.Fatal(err)
		}
	}
	readKey(t, b, keys[0]) // a is now the most recently used
	b.Close()
	// File times that say the opposite.
	for i, k := range keys {
		p, _ := b.Path(k)
		mt := time.Now().Add(-time.Duration(i) * time.Hour)
		os.Chtimes(p, mt, mt)
	}
	b2 := mustNew(t, dir, Options{MaxSize: 250000})
	ctx := context.Background()
	if _, err := b2.Stat(ctx, keys[1]); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("least recently used %q survived a shrinking limit: %v", keys[1], err)
	}
	for _, k := range []string{keys[0], keys[2]} {
		if _, err := b2.Stat(ctx, k); err != nil {
			t.Errorf("%q evicted: %v", k, err)
		}
	}
}

// A page of a listing, and a purge by prefix, read index entries in
// proportion to what they return, whatever else the cache holds, and
// open no object file.
func TestListAndPurgeCostWhatTheyReturn(t *testing.T) {
	dir := t.TempDir()
	var keys []string
	keys = append(keys, keysN("example.com/big/", 2000)...)
	keys = append(keys, keysN("example.com/small/", 300)...)
	keys = append(keys, keysN("other.org/", 700)...)
	seed(t, dir, keys)
	var trailers atomic.Int64
	b := mustNew(t, dir, Options{testHook: func(p string) {
		if p == "trailer" {
			trailers.Add(1)
		}
	}})
	ctx := context.Background()
	for _, c := range []struct {
		prefix string
		limit  int
		want   int
	}{
		{"example.com/small/", 100, 100},
		{"", 100, 100},
		{"other.org/06", 100, 100},
		{"example.com/small/029", 100, 10},
	} {
		before := b.ix.visits.Load()
		objs, _, err := b.List(ctx, c.prefix, "", c.limit)
		if err != nil || len(objs) != c.want {
			t.Fatalf("List(%q, %d): %d objects, %v; want %d", c.prefix, c.limit, len(objs), err, c.want)
		}
		if v := b.ix.visits.Load() - before; v > int64(c.want)+1 {
			t.Errorf("List(%q, %d) read %d index entries; want at most %d", c.prefix, c.limit, v, c.want+1)
		}
	}
	// A purge: list and delete, page by page.
	before := b.ix.visits.Load()
	purged, token := 0, ""
	for range 100 {
		objs, next, err := b.List(ctx, "example.com/small/", token, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if err := b.Delete(ctx, o.Key); err != nil {
				t.Fatal(err)
			}
			purged++
		}
		if token = next; token == "" {
			break
		}
	}
	if purged != 300 {
		t.Fatalf("purged %d objects; want 300", purged)
	}
	if v := b.ix.visits.Load() - before; v > 300+3 {
		t.Errorf("the purge of 300 objects read %d index entries; want at most %d", v, 303)
	}
	if n := trailers.Load(); n != 0 {
		t.Errorf("listing and purging read %d trailers; want 0", n)
	}
	if st := b.Stats(); st.Objects != int64(len(keys)-300) {
		t.Errorf("Stats.Objects after the purge = %d; want %d", st.Objects, len(keys)-300)
	}
	if got := listAll(t, b, "example.com/"); len(got) != 2000 {
		t.Errorf("%d objects left under example.com/; want 2000", len(got))
	}
}

// Largest names the largest objects from the index, also through the
// instrumenting decorator.
func TestLargest(t *testing.T) {
	b := mustNew(t, t.TempDir(), Options{})
	for i, n := range []int{500, 70000, 1200, 30000, 9000} {
		if err := putBody(b, fmt.Sprintf("example.com/size/%d", i), testutil.Payload(uint64(i), n)); err != nil {
			t.Fatal(err)
		}
	}
	l := storage.Instrument(b, nil).(storage.LargestLister)
	objs, complete, err := l.Largest(context.Background(), 3)
	if err != nil || !complete {
		t.Fatalf("Largest: complete %v, %v", complete, err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, fmt.Sprintf("%s=%d", o.Key, o.Size))
		if o.StoredAt.IsZero() {
			t.Errorf("%s has no StoredAt", o.Key)
		}
	}
	want := []string{"example.com/size/1=70000", "example.com/size/3=30000", "example.com/size/4=9000"}
	if !slices.Equal(got, want) {
		t.Errorf("Largest(3) = %q; want %q", got, want)
	}
}

// A writer that commits after its backend was closed publishes its
// object; the next process serves it, and indexes it when it is used.
func TestCommitAfterClose(t *testing.T) {
	dir := t.TempDir()
	b, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := "example.com/late"
	data := payloadFor(key)
	w, err := b.Create(ctx, key, storage.Info{Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	b.Close()
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit after Close: %v", err)
	}
	w.Close()
	if _, err := b.Create(ctx, "example.com/other", storage.Info{Size: 1}); err == nil {
		t.Error("Create after Close succeeded")
	}

	checked := make(chan struct{}, 1)
	b2 := mustNew(t, dir, Options{testHook: func(p string) {
		if p == "checked" {
			checked <- struct{}{}
		}
	}})
	if got := listAll(t, b2, ""); len(got) != 0 {
		t.Fatalf("listed %d objects before the late one was used; want 0", len(got))
	}
	if got := readKey(t, b2, key); !bytes.Equal(got, data) {
		t.Fatalf("late object served %d bytes", len(got))
	}
	// The use reaches the index with its next batch.
	b2.ix.st.touch(key, time.Now().UnixNano(), 1)
	b2.ix.st.kick()
	select {
	case <-checked:
	case <-time.After(30 * time.Second):
		t.Fatal("the late object was not checked")
	}
	if err := b2.ix.st.do(&op{kind: opSync}); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, b2, ""); len(got) != 1 || got[0].Key != key {
		t.Errorf("listing after the use = %v; want the late object", got)
	}
}

// The journal starts over once the index covers it, so it stays small.
func TestJournalStaysSmall(t *testing.T) {
	dir := t.TempDir()
	var rotations atomic.Int64
	b := mustNew(t, dir, Options{NoSync: true, testHook: func(p string) {
		if p == "journal-rotated" {
			rotations.Add(1)
		}
	}})
	long := string(bytes.Repeat([]byte("x"), 2000))
	for i := range 1200 {
		k := fmt.Sprintf("example.com/j/%d/%s", i, long)
		if err := putBody(b, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			if err := b.Delete(context.Background(), k); err != nil {
				t.Fatal(err)
			}
		}
	}
	fi, err := os.Stat(filepath.Join(dir, journalName))
	if err != nil {
		t.Fatal(err)
	}
	if rotations.Load() == 0 || fi.Size() > 2*journalRotate {
		t.Errorf("journal of %d bytes after %d rotations; want rotations, at most %d bytes", fi.Size(), rotations.Load(), 2*journalRotate)
	}
	b.Close()
	b2, files := checkConsistentKeys(t, dir)
	if len(files) != 600 || b2.Stats().Objects != 600 {
		t.Errorf("%d objects after the restart; want 600", len(files))
	}
}

// checkConsistentKeys checks listing and counters against the files.
func checkConsistentKeys(t *testing.T, dir string) (*Backend, map[string]int64) {
	t.Helper()
	checkConsistentBodies(t, dir)
	b := mustNew(t, dir, Options{})
	return b, onDisk(t, dir)
}

// The digest kept in an object's metadata (storage.DigestHeader) is in
// the index: a listing shows it without reading the object's trailer,
// whether it was given at Create, completed by UpdateInfo, recorded
// later by Refresh, or found by a rebuild of the index.
func TestIndexHoldsDigest(t *testing.T) {
	dir := t.TempDir()
	var trailers atomic.Int64
	opts := Options{testHook: func(p string) {
		if p == "trailer" {
			trailers.Add(1)
		}
	}}
	b := mustNew(t, dir, opts)
	ctx := context.Background()
	digest := func(key string) string {
		sum := sha256.Sum256(payloadFor(key))
		return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
	}
	put := func(key string, at, update http.Header) {
		t.Helper()
		data := payloadFor(key)
		w, err := b.Create(ctx, key, storage.Info{Size: int64(len(data)), ETag: `"e"`, Header: at})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if update != nil {
			if err := w.(storage.InfoUpdater).UpdateInfo(storage.Info{ETag: `"e"`, Header: update}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const (
		atCreate = "example.com/digest/at-create"
		updated  = "example.com/digest/updated"
		later    = "example.com/digest/later"
		none     = "example.com/digest/none"
	)
	put(atCreate, http.Header{storage.DigestHeader: {digest(atCreate)}}, nil)
	put(updated, nil, http.Header{storage.DigestHeader: {digest(updated)}, "X-Other": {"x"}})
	put(later, nil, nil)
	put(none, nil, nil)
	info, err := b.Stat(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	info.Header = http.Header{storage.DigestHeader: {digest(later)}}
	if err := b.Refresh(ctx, later, info); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	want := map[string]string{atCreate: digest(atCreate), updated: digest(updated), later: digest(later), none: ""}
	check := func(b *Backend, when string) {
		t.Helper()
		before := trailers.Load()
		objs := listAll(t, b, "example.com/digest/")
		if len(objs) != len(want) {
			t.Fatalf("%s: listed %d objects; want %d", when, len(objs), len(want))
		}
		for _, o := range objs {
			if got := o.Header.Get(storage.DigestHeader); got != want[o.Key] {
				t.Errorf("%s: %q listed with digest %q; want %q", when, o.Key, got, want[o.Key])
			}
			if o.Header.Get("X-Other") != "" {
				t.Errorf("%s: %q listed with header %v; want the digest alone", when, o.Key, o.Header)
			}
		}
		if n := trailers.Load() - before; n != 0 {
			t.Errorf("%s: the listing read %d trailers; want 0", when, n)
		}
	}
	check(b, "after the commits")
	b.Close()
	b = mustNew(t, dir, opts)
	check(b, "after a restart")
	b.Close()
	os.Remove(filepath.Join(dir, dbName))
	b = mustNew(t, dir, opts)
	waitIndexed(t, b)
	check(b, "after a rebuild")
}

// TestChangesShareTransactions checks the applier's hold: commits and
// deletes nobody waits for are applied together, yet a change is applied
// on its own when no other follows, and anything that waits for the
// index ends the hold at once.
func TestChangesShareTransactions(t *testing.T) {
	dir := t.TempDir()
	keys := keysN("example.com/purge/", 200)
	seed(t, dir, keys)
	committed := make(chan struct{}, 1000)
	b := mustNew(t, dir, Options{testHook: func(p string) {
		if p == "apply-committed" {
			committed <- struct{}{}
		}
	}})
	ctx := context.Background()
	if err := b.WaitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	b.Stats()
	for len(committed) > 0 {
		<-committed
	}

	// One delete and nothing after it: the index takes it without a
	// sync (it is not held for ever waiting for company).
	if err := b.Delete(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	select {
	case <-committed:
	case <-time.After(10 * time.Second):
		t.Fatal("a lone delete was not applied to the index within 10 s")
	}
	if objs, _, err := b.List(ctx, keys[0], "", 1); err != nil || len(objs) != 0 {
		t.Fatalf("List after the lone delete: %v, %v; want nothing", objs, err)
	}

	// A purge, each unlink slow (as in a large file system), with a hold
	// that only a sync or gatherMax ends: the deletes share one
	// transaction, and every one is in the index when Stats returns.
	dir = t.TempDir()
	seed(t, dir, keys)
	b = mustNew(t, dir, Options{testGather: time.Hour, testHook: func(p string) {
		if p == "delete-removed" {
			time.Sleep(time.Millisecond) // a slow unlink, not a synchronisation
		}
	}})
	if err := b.WaitIndexed(ctx); err != nil {
		t.Fatal(err)
	}
	b.Stats()
	before := b.IndexWrites()
	for _, k := range keys {
		if err := b.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Objects != 0 {
		t.Fatalf("Stats after the purge: %d objects; want 0", st.Objects)
	}
	after := b.IndexWrites()
	if tx := after.Transactions - before.Transactions; tx != 1 {
		t.Fatalf("the purge of %d objects took %d index transactions; want 1", len(keys), tx)
	}
	if pages := after.Pages - before.Pages; pages > 20 {
		t.Errorf("the purge of %d objects wrote %d index pages; want at most 20", len(keys), pages)
	}
	t.Logf("purge of %d objects: %d pages written", len(keys), after.Pages-before.Pages)
}
