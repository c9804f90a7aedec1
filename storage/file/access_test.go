package file

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// testClock is a clock tests move by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *testClock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// listed returns the listing of key.
func listed(t *testing.T, b *Backend, key string) storage.Info {
	t.Helper()
	for _, o := range listAll(t, b, key) {
		if o.Key == key {
			return o
		}
	}
	t.Fatalf("%s not listed", key)
	return storage.Info{}
}

func openClose(t *testing.T, b *Backend, key string) {
	t.Helper()
	o, err := b.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%s): %v", key, err)
	}
	o.Close()
}

// Every Open counts as a hit, whether the body comes from memory or from
// the file; the listing shows them at once, and the index keeps them
// across a restart. Stat and Reread do not count.
func TestHitsCountedAndKeptAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clk := newTestClock()
	b := mustNew(t, dir, Options{NoSync: true, Now: clk.Now, MemoryObjectSize: 1 << 10})
	small, large := "example.com/hits/small", "example.com/hits/large"
	if err := putBody(b, small, []byte("tiny")); err != nil { // served from memory
		t.Fatal(err)
	}
	if err := putBody(b, large, make([]byte, 64<<10)); err != nil { // from the file
		t.Fatal(err)
	}
	storedAt := clk.Now()
	if got := listed(t, b, small); got.Hits != 0 || !got.LastAccess.Equal(storedAt) {
		t.Errorf("never read: hits %d, last access %v; want 0, the store time %v", got.Hits, got.LastAccess, storedAt)
	}
	const n = 25
	var last time.Time
	for range n {
		last = clk.Add(time.Second)
		openClose(t, b, small)
		openClose(t, b, large)
	}
	b.Stat(context.Background(), small)
	if o, err := b.Reread(context.Background(), large); err == nil {
		o.Close()
	}
	for _, k := range []string{small, large} {
		if got := listed(t, b, k); got.Hits != n || !got.LastAccess.Equal(last) {
			t.Errorf("%s: hits %d, last access %v; want %d, %v", k, got.Hits, got.LastAccess, n, last)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := mustNew(t, dir, Options{NoSync: true, Now: clk.Now})
	waitIndexed(t, b2)
	for _, k := range []string{small, large} {
		if got := listed(t, b2, k); got.Hits != n || !got.LastAccess.Equal(last) {
			t.Errorf("after a restart %s: hits %d, last access %v; want %d, %v", k, got.Hits, got.LastAccess, n, last)
		}
	}
	// A new version of the object (a refetch) keeps its key's count.
	if err := putBody(b2, large, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	openClose(t, b2, large)
	if got := listed(t, b2, large); got.Hits != n+1 {
		t.Errorf("after a new version and one more read: hits %d; want %d", got.Hits, n+1)
	}
	// A delete ends it.
	b2.Delete(context.Background(), large)
	if err := putBody(b2, large, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, b2, large); got.Hits != 0 {
		t.Errorf("stored again after a delete: hits %d; want 0", got.Hits)
	}
}

// Records written before hits were kept decode with 0 hits and their
// digest, and records without hits are written exactly as before, so an
// index file moves between versions both ways.
func TestRecordFormatCompatible(t *testing.T) {
	digest := "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
	old := rec{fileSize: 10, size: 5, storedAt: 7, used: 9, ino: 3, digest: digest}
	// The layout before hits: 40 bytes, then the digest.
	b := make([]byte, 40)
	for i, v := range []uint64{10, 5, 7, 9, 3} {
		for j := range 8 {
			b[i*8+j] = byte(v >> (56 - 8*j))
		}
	}
	b = append(b, digest...)
	if got := string(old.encode()); got != string(b) {
		t.Errorf("a record without hits is encoded otherwise than before")
	}
	r, ok := decodeRec(b)
	if !ok || r != old {
		t.Errorf("old record decoded as %+v, %v; want %+v", r, ok, old)
	}
	for _, d := range []string{"", digest} {
		want := rec{fileSize: 1, size: 2, storedAt: 3, used: 4, ino: 5, hits: 1<<40 + 7, digest: d}
		if got, ok := decodeRec(want.encode()); !ok || got != want {
			t.Errorf("round trip of %+v gave %+v, %v", want, got, ok)
		}
	}
	for _, bad := range [][]byte{append(b[:40:40], hitsTag, 1, 2), make([]byte, 39)} {
		if _, ok := decodeRec(bad); ok {
			t.Errorf("decodeRec(%x) accepted a truncated record", bad)
		}
	}
	if got := indexedDigest(http.Header{storage.DigestHeader: {"\x00sha"}}); got != "" {
		t.Errorf("a digest starting with the hits tag was indexed: %q", got)
	}
}

// Expire removes the objects not used since the cutoff, and nothing that
// is being read, that keep keeps, or that was used since, as the hot set
// knows it before the index does.
func TestExpire(t *testing.T) {
	dir := t.TempDir()
	clk := newTestClock()
	b := mustNew(t, dir, Options{NoSync: true, Now: clk.Now})
	ctx := context.Background()
	keys := map[string]string{
		"idle":    "example.com/x/idle",
		"idle2":   "example.com/x/idle2",
		"read":    "example.com/x/read",
		"reading": "example.com/x/reading",
		"kept":    "example.com/x/kept",
	}
	for _, k := range keys {
		if err := putBody(b, k, make([]byte, 70<<10)); err != nil {
			t.Fatal(err)
		}
	}
	reader, err := b.Open(ctx, keys["reading"]) // on day 0, and still open
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(10 * 24 * time.Hour)
	openClose(t, b, keys["read"]) // the index is told of it within a minute: the hot set knows now
	now := clk.Add(25 * 24 * time.Hour)
	cutoff := now.Add(-30 * 24 * time.Hour) // idle since before day 5
	n, err := b.Expire(ctx, cutoff, func(k string) bool { return k == keys["kept"] })
	if err != nil || n != 2 {
		t.Fatalf("Expire = %d, %v; want 2 (idle, idle2)", n, err)
	}
	for name, k := range keys {
		_, err := b.Stat(ctx, k)
		gone := name == "idle" || name == "idle2"
		if gone != (err != nil) {
			t.Errorf("%s: Stat = %v; want removed %v", name, err, gone)
		}
	}
	// The reader read on; closed, its object goes at the next sweep.
	if _, err := reader.Read(make([]byte, 10)); err != nil {
		t.Errorf("read of an object open during the sweep: %v", err)
	}
	reader.Close()
	if n, err := b.Expire(ctx, cutoff, nil); err != nil || n != 2 {
		t.Errorf("second sweep = %d, %v; want 2 (reading, kept)", n, err)
	}
	if got := listAll(t, b, ""); len(got) != 1 || got[0].Key != keys["read"] {
		t.Errorf("left %v; want only %s", got, keys["read"])
	}
	if st := b.Stats(); st.Objects != 1 {
		t.Errorf("Stats().Objects = %d; want 1", st.Objects)
	}
}

// A sweep reads the index's entries of what it removes and stops at the
// first object used since the cutoff, whatever the size of the cache, and
// a batch larger than one transaction is removed whole.
func TestExpireCostsWhatItRemoves(t *testing.T) {
	dir := t.TempDir()
	clk := newTestClock()
	b := mustNew(t, dir, Options{NoSync: true, Now: clk.Now})
	ctx := context.Background()
	old := keysN("example.com/old/", expireBatch+40)
	for _, k := range old {
		if err := putKey(b, k); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(time.Hour)
	cutoff := clk.Add(time.Minute)
	fresh := keysN("example.com/fresh/", 2000)
	for _, k := range fresh {
		if err := putKey(b, k); err != nil {
			t.Fatal(err)
		}
	}
	n, err := b.Expire(ctx, cutoff, nil)
	if err != nil || n != len(old) {
		t.Fatalf("Expire = %d, %v; want %d", n, err, len(old))
	}
	if got := len(listAll(t, b, "")); got != len(fresh) {
		t.Errorf("%d objects left; want %d", got, len(fresh))
	}
	// A sweep with nothing idle reads one entry.
	before := b.ix.visits.Load()
	if n, err := b.Expire(ctx, cutoff, nil); err != nil || n != 0 {
		t.Errorf("Expire again = %d, %v; want 0", n, err)
	}
	if v := b.ix.visits.Load() - before; v != 0 {
		t.Errorf("an empty sweep visited %d listing entries", v)
	}
}

// A clock set back neither moves a last access back nor makes anything
// idle.
func TestClockBackwards(t *testing.T) {
	dir := t.TempDir()
	clk := newTestClock()
	b := mustNew(t, dir, Options{NoSync: true, Now: clk.Now})
	key := "example.com/clock/a"
	if err := putBody(b, key, make([]byte, 70<<10)); err != nil {
		t.Fatal(err)
	}
	read := clk.Add(48 * time.Hour)
	openClose(t, b, key)
	clk.Add(-24 * time.Hour * 365) // a year back
	openClose(t, b, key)
	if got := listed(t, b, key); !got.LastAccess.Equal(read) || got.Hits != 2 {
		t.Errorf("last access %v, hits %d; want %v, 2", got.LastAccess, got.Hits, read)
	}
	if n, err := b.Expire(context.Background(), clk.Now().Add(-time.Hour), nil); err != nil || n != 0 {
		t.Errorf("Expire with the clock set back = %d, %v; want 0", n, err)
	}
}
