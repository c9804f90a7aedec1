package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

// idleCount returns how many descriptors the backend keeps open for the
// next Opens.
func idleCount(b *Backend) int {
	b.ix.mu.Lock()
	defer b.ix.mu.Unlock()
	return b.ix.idleFiles
}

// readAll opens key and reads it whole through Read, then checks ReadAt
// and Seek on the same object.
func readAll(t *testing.T, b *Backend, key string) ([]byte, error) {
	t.Helper()
	o, err := b.Open(context.Background(), key)
	if err != nil {
		return nil, err
	}
	defer o.Close()
	got, err := io.ReadAll(o)
	if err != nil {
		return nil, err
	}
	if len(got) > 1 {
		p := make([]byte, 1)
		if _, err := o.(io.ReaderAt).ReadAt(p, int64(len(got)-1)); err != nil || p[0] != got[len(got)-1] {
			t.Errorf("%s: ReadAt of the last byte: %q, %v; want %q", key, p, err, got[len(got)-1:])
		}
	}
	if n, err := o.Seek(0, io.SeekEnd); err != nil || n != int64(len(got)) {
		t.Errorf("%s: Seek to the end: %d, %v; want %d", key, n, err, len(got))
	}
	return got, nil
}

// The descriptor a hit leaves open for the next one is never used once
// its object changed: a replaced object is served with its new bytes
// and metadata, a deleted or evicted one is not found, whether the
// descriptor was idle at the change or in use by a reader then.
func TestKeptDescriptorsFollowTheObject(t *testing.T) {
	ctx := context.Background()
	v1, v2 := testutil.Payload(1, 30000), testutil.Payload(2, 20000)
	for _, c := range []struct {
		name   string
		change func(b *Backend, key string) error
		want   []byte // nil: not found
	}{
		{"replaced", func(b *Backend, key string) error { return putBody(b, key, v2) }, v2},
		{"deleted", func(b *Backend, key string) error { return b.Delete(ctx, key) }, nil},
		{"evicted", func(b *Backend, key string) error {
			// Objects that need the room push the least recently used out.
			for i := range 4 {
				if err := putBody(b, fmt.Sprintf("example.com/other/%d", i), v2); err != nil {
					return err
				}
			}
			return nil
		}, nil},
		{"refreshed", func(b *Backend, key string) error {
			return b.Refresh(ctx, key, storage.Info{Size: int64(len(v1)), ContentType: "text/new"})
		}, v1},
	} {
		for _, inUse := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, in use %v", c.name, inUse), func(t *testing.T) {
				// No memory copies: every hit reads the file.
				b := mustNew(t, t.TempDir(), Options{NoSync: true, MemoryCacheSize: -1, MaxSize: 70000})
				const key = "example.com/obj"
				if err := putBody(b, key, v1); err != nil {
					t.Fatal(err)
				}
				for range 2 {
					if got, err := readAll(t, b, key); err != nil || !bytes.Equal(got, v1) {
						t.Fatalf("hit before the change: %d bytes, %v", len(got), err)
					}
				}
				if n := idleCount(b); n != 1 {
					t.Fatalf("%d descriptors kept after two hits; want 1", n)
				}
				var held storage.Object
				if inUse {
					var err error
					if held, err = b.Open(ctx, key); err != nil {
						t.Fatal(err)
					}
				}
				if c.name == "evicted" && inUse {
					// An object being read is not evicted: nothing to see.
					held.Close()
					held = nil
				}
				if err := c.change(b, key); err != nil {
					t.Fatal(err)
				}
				if held != nil {
					// The reader that opened it before the change reads
					// what it opened, then gives the descriptor back.
					if got, err := io.ReadAll(held); err != nil || !bytes.Equal(got, v1) {
						t.Errorf("reader opened before the change: %d bytes, %v; want the old %d", len(got), err, len(v1))
					}
					held.Close()
				}
				if n := idleCount(b); n != 0 {
					t.Errorf("%d descriptors of the old file kept after the change; want 0", n)
				}
				for i := range 2 {
					got, err := readAll(t, b, key)
					switch {
					case c.want == nil && !errors.Is(err, storage.ErrNotFound):
						t.Errorf("hit %d after the change: %d bytes, %v; want ErrNotFound", i, len(got), err)
					case c.want != nil && (err != nil || !bytes.Equal(got, c.want)):
						t.Errorf("hit %d after the change: %d bytes, %v; want %d", i, len(got), err, len(c.want))
					}
				}
				if c.name == "refreshed" {
					info, err := b.Stat(ctx, key)
					o, err2 := b.Open(ctx, key)
					if err != nil || err2 != nil {
						t.Fatal(err, err2)
					}
					if got := o.Info().ContentType; got != "text/new" || info.ContentType != "text/new" {
						t.Errorf("metadata after the refresh: Open %q, Stat %q; want text/new", got, info.ContentType)
					}
					o.Close()
				}
			})
		}
	}
}

// An Open that read a file's stat just before a commit replaced the file
// serves what it opened, but leaves nothing of the old file behind: the
// next Open reads the new object, from memory or from a kept descriptor.
func TestOpenRacingACommitKeepsNothingOld(t *testing.T) {
	ctx := context.Background()
	v1, v2 := testutil.Payload(1, 3000), testutil.Payload(2, 2000)
	for _, memory := range []int64{0, -1} {
		t.Run(fmt.Sprintf("memory %d", memory), func(t *testing.T) {
			var hold sync.Once
			stopped, release := make(chan struct{}), make(chan struct{})
			var armed bool
			var mu sync.Mutex
			b := mustNew(t, t.TempDir(), Options{NoSync: true, MemoryCacheSize: memory, testHook: func(p string) {
				mu.Lock()
				a := armed
				mu.Unlock()
				if p == "open-statted" && a {
					hold.Do(func() {
						close(stopped)
						<-release
					})
				}
			}})
			const key = "example.com/raced"
			if err := putBody(b, key, v1); err != nil {
				t.Fatal(err)
			}
			// Nothing of the object in the hot set: the next Open reads
			// the file's stat.
			b.ix.hotRemoved(hashKey(key))
			mu.Lock()
			armed = true
			mu.Unlock()
			type result struct {
				data []byte
				err  error
			}
			first := make(chan result, 1)
			go func() {
				o, err := b.Open(ctx, key)
				if err != nil {
					first <- result{nil, err}
					return
				}
				data, err := io.ReadAll(o)
				o.Close()
				first <- result{data, err}
			}()
			<-stopped
			if err := putBody(b, key, v2); err != nil {
				t.Fatal(err)
			}
			close(release)
			if r := <-first; r.err != nil || !bytes.Equal(r.data, v1) {
				t.Errorf("the Open that raced the commit: %d bytes, %v; want the old %d", len(r.data), r.err, len(v1))
			}
			for i := range 3 {
				got, err := readAll(t, b, key)
				if err != nil || !bytes.Equal(got, v2) {
					t.Errorf("hit %d after the commit: %d bytes, %v; want the new %d", i, len(got), err, len(v2))
				}
			}
		})
	}
}

// The descriptors kept open are bounded, in all and per object, and
// closed with the backend.
func TestKeptDescriptorsBounded(t *testing.T) {
	ctx := context.Background()
	b, err := New(t.TempDir(), Options{NoSync: true, MemoryCacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.ix.mu.Lock()
	b.ix.maxIdle = 12
	b.ix.mu.Unlock()
	keys := keysN("example.com/bound/", 5)
	for _, k := range keys {
		if err := putKey(b, k); err != nil {
			t.Fatal(err)
		}
	}
	// Many readers of one object at once, then of each.
	for _, k := range keys {
		var open []storage.Object
		for range idlePerObject + 3 {
			o, err := b.Open(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			open = append(open, o)
		}
		for _, o := range open {
			if got, err := io.ReadAll(o); err != nil || !bytes.Equal(got, payloadFor(k)) {
				t.Errorf("%s: %d bytes, %v", k, len(got), err)
			}
			o.Close()
		}
		b.ix.mu.Lock()
		n, per := b.ix.idleFiles, len(b.ix.hot[hashKey(k)].idle)
		b.ix.mu.Unlock()
		if n > 12 || per > idlePerObject {
			t.Errorf("after %s: %d kept in all, %d for it; want at most 12 and %d", k, n, per, idlePerObject)
		}
	}
	// The most recently used object's stay.
	b.ix.mu.Lock()
	last := len(b.ix.hot[hashKey(keys[len(keys)-1])].idle)
	b.ix.mu.Unlock()
	if last != idlePerObject {
		t.Errorf("the last object read keeps %d descriptors; want %d", last, idlePerObject)
	}
	// Every hit served from them is right.
	for _, k := range keys {
		if got, err := readAll(t, b, k); err != nil || !bytes.Equal(got, payloadFor(k)) {
			t.Errorf("%s: %d bytes, %v", k, len(got), err)
		}
	}
	held, err := b.Open(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	held.Close() // after Close: closed, not kept
	if n := idleCount(b); n != 0 {
		t.Errorf("%d descriptors kept after Close; want 0", n)
	}
}

// A commit replacing an object whose own commit the index has not yet
// recorded (both in one transaction of the applier) does not make the
// size limit evict the object just committed: each commit counts once,
// by its bytes, not also by the reservation it still held.
func TestReplacementInOneIndexTransactionIsNotEvicted(t *testing.T) {
	// The applier holds commits until something else is queued (Stats
	// queues a sync), so both commits land in one transaction.
	b := mustNew(t, t.TempDir(), Options{NoSync: true, MaxSize: 70000, testGather: time.Hour})
	const key = "example.com/replaced"
	v1, v2 := testutil.Payload(1, 30000), testutil.Payload(2, 20000)
	for _, v := range [][]byte{v1, v2} {
		if err := putBody(b, key, v); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Evictions != 0 || st.Objects != 1 {
		t.Errorf("Stats = %+v; want 1 object, no eviction", st)
	}
	if got, err := readAll(t, b, key); err != nil || !bytes.Equal(got, v2) {
		t.Errorf("the replacement: %d bytes, %v; want %d", len(got), err, len(v2))
	}
}

// Bodies kept in memory that are in use are not traded for others: when
// the objects read are more than the memory holds, the ones in memory
// stay, the others are served from their files, until a body has gone
// unused for memHold.
func TestMemoryKeepsBodiesInUse(t *testing.T) {
	clk := newTestClock()
	b := mustNew(t, t.TempDir(), Options{NoSync: true, Now: clk.Now, MemoryCacheSize: 10000, MemoryObjectSize: 4000})
	keys := []string{"example.com/mem/a", "example.com/mem/b", "example.com/mem/c"}
	for i, k := range keys {
		if err := putBody(b, k, testutil.Payload(uint64(i), 4000)); err != nil {
			t.Fatal(err)
		}
	}
	inMemory := func(key string) bool {
		t.Helper()
		o, err := b.Open(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		got, err := io.ReadAll(o)
		if err != nil || !bytes.Equal(got, testutil.Payload(uint64(slices.Index(keys, key)), 4000)) {
			t.Errorf("%s: %d bytes, %v", key, len(got), err)
		}
		_, ok := o.(storage.InMemory)
		return ok
	}
	// a and b fill the memory (two reads each: the first keeps the body).
	for _, k := range keys[:2] {
		inMemory(k)
		if !inMemory(k) {
			t.Fatalf("%s not kept in memory with room for it", k)
		}
	}
	for i := range 3 {
		clk.Add(memHold / 4)
		if inMemory(keys[2]) {
			t.Fatalf("read %d of c: from memory; want from its file while a and b are in use", i)
		}
		for _, k := range keys[:2] {
			if !inMemory(k) {
				t.Fatalf("read %d: %s dropped from memory for c", i, k)
			}
		}
	}
	// a goes unused for memHold: c takes its place.
	clk.Add(memHold / 2)
	inMemory(keys[1])
	clk.Add(memHold/2 + time.Second)
	inMemory(keys[2])
	if !inMemory(keys[2]) {
		t.Error("c not kept in memory once a went unused")
	}
	if inMemory(keys[0]) {
		t.Error("a still in memory; want it dropped for c")
	}
	if !inMemory(keys[1]) {
		t.Error("b dropped; want a, the least recently used, dropped")
	}
}
