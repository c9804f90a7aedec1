package file_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/httpmirror/httpmirror/storage/storagetest"
)

func newBackend(t *testing.T) *file.Backend {
	t.Helper()
	b, err := file.New(t.TempDir(), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return newBackend(t) })
}

func TestLockExcludesSecondBackend(t *testing.T) {
	dir := t.TempDir()
	b, err := file.New(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(dir, file.Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second New on a locked directory: error = %v; want an in-use error", err)
	}
	b.Close()
	b2, err := file.New(dir, file.Options{})
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	b2.Close()
}

func TestRelativeRootRefused(t *testing.T) {
	if _, err := file.New("relative/dir", file.Options{}); err == nil {
		t.Fatal("New with a relative path succeeded")
	}
}

func TestUnwritableRootRefused(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permission bits; use a path under a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o644)
		if _, err := file.New(filepath.Join(f, "cache"), file.Options{}); err == nil {
			t.Fatal("New under a regular file succeeded")
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if _, err := file.New(filepath.Join(dir, "cache"), file.Options{}); err == nil {
		t.Fatal("New in a read-only directory succeeded")
	}
}

func TestLeftoversRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	b, err := file.New(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w, err := b.Create(ctx, "example.com/partial.bin", storage.Info{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testutil.Payload(1, 4096))
	// Simulate a crash: the writer is never closed, the lock is dropped.
	b.Close()
	if n := testutil.CountFiles(t, filepath.Join(dir, "tmp")); n != 1 {
		t.Fatalf("tmp holds %d files before restart; want 1", n)
	}

	b2, err := file.New(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if n := testutil.CountFiles(t, filepath.Join(dir, "tmp")); n != 0 {
		t.Errorf("tmp holds %d files after restart; want 0", n)
	}
	if _, err := b2.Stat(ctx, "example.com/partial.bin"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("partial object: Stat error = %v; want ErrNotFound", err)
	}
}

func TestDamagedObjectIsNotServed(t *testing.T) {
	b := newBackend(t)
	ctx := context.Background()
	key := "example.com/damaged.bin"
	data := testutil.Payload(2, 10000)
	w, _ := b.Create(ctx, key, storage.Info{Size: int64(len(data))})
	w.Write(data)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p, _ := b.Path(key)

	for name, damage := range map[string]func(){
		"truncated":    func() { os.Truncate(p, 5000) },
		"bad trailer":  func() { f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0); f.Write([]byte("garbage!")); f.Close() },
		"empty":        func() { os.Truncate(p, 0) },
		"wrong length": func() { os.WriteFile(p, append(data[:100], make([]byte, 16)...), 0o644) },
	} {
		t.Run(name, func(t *testing.T) {
			damage()
			if _, err := b.Open(ctx, key); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Open of a damaged object: error = %v; want ErrNotFound", err)
			}
		})
	}
}

func TestObjectSupportsSendfile(t *testing.T) {
	b := newBackend(t)
	ctx := context.Background()
	key := "example.com/sendfile.bin"
	w, _ := b.Create(ctx, key, storage.Info{Size: 5})
	w.Write([]byte("hello"))
	w.Commit(ctx)
	w.Close()
	o, err := b.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, ok := o.(syscall.Conn); !ok {
		t.Fatal("file object does not implement syscall.Conn; net/http cannot use sendfile")
	}
}

func TestPathInsideRoot(t *testing.T) {
	b := newBackend(t)
	for _, key := range []string{"example.com/a", "example.com/../../etc/passwd", "h/" + strings.Repeat("x", 60000)} {
		p, err := b.Path(key)
		if err != nil {
			continue
		}
		rel, err := filepath.Rel(b.Root(), p)
		if err != nil || strings.HasPrefix(rel, "..") {
			t.Errorf("Path(%q) = %q escapes root %q", key, p, b.Root())
		}
	}
}

func put(t *testing.T, b *file.Backend, key string, data []byte) error {
	t.Helper()
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

func TestEvictionKeepsUnderLimit(t *testing.T) {
	dir := t.TempDir()
	const limit = 1 << 20
	b, err := file.New(dir, file.Options{MaxSize: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const n = 30 // 30 × 100 KB ≈ 3 × the limit
	for i := range n {
		if err := put(t, b, fmt.Sprintf("example.com/%d", i), testutil.Payload(uint64(i), 100000)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		// Keep object 0 in use: read it after every put.
		if o, err := b.Open(ctx, "example.com/0"); err == nil {
			o.Close()
		}
		if got := testutil.DirBytes(filepath.Join(dir, "objects")); got > limit {
			t.Fatalf("after %d objects the cache holds %d bytes; limit %d", i+1, got, limit)
		}
	}
	st := b.Stats()
	if st.Bytes > limit || st.Evictions == 0 {
		t.Fatalf("Stats = %+v; want at most %d bytes and some evictions", st, limit)
	}
	// The most recently used survive: object 0 (read all along) and the
	// last ones written; the early ones are gone.
	for _, i := range []int{0, n - 1, n - 2, n - 3} {
		if _, err := b.Stat(ctx, fmt.Sprintf("example.com/%d", i)); err != nil {
			t.Errorf("recently used object %d evicted: %v", i, err)
		}
	}
	for _, i := range []int{1, 2, 3} {
		if _, err := b.Stat(ctx, fmt.Sprintf("example.com/%d", i)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("least recently used object %d still present (err %v)", i, err)
		}
	}
}

func TestEvictionSparesOpenObjects(t *testing.T) {
	dir := t.TempDir()
	const limit = 500000
	b, err := file.New(dir, file.Options{MaxSize: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	first := testutil.Payload(1, 200000)
	if err := put(t, b, "example.com/streamed", first); err != nil {
		t.Fatal(err)
	}
	o, err := b.Open(ctx, "example.com/streamed")
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 1000)
	io.ReadFull(o, head)
	for i := range 10 {
		put(t, b, fmt.Sprintf("example.com/other%d", i), testutil.Payload(uint64(10+i), 100000))
	}
	rest, err := io.ReadAll(o)
	o.Close()
	if err != nil || !bytes.Equal(append(head, rest...), first) {
		t.Fatalf("object read while the cache churned: %d bytes, %v", len(head)+len(rest), err)
	}
	if _, err := b.Stat(ctx, "example.com/streamed"); err != nil {
		t.Fatalf("an open object was evicted: %v", err)
	}
	if got := testutil.DirBytes(filepath.Join(dir, "objects")); got > limit {
		t.Fatalf("cache holds %d bytes; limit %d", got, limit)
	}
}

func TestNoSpace(t *testing.T) {
	b, err := file.New(t.TempDir(), file.Options{MaxSize: 100000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := put(t, b, "example.com/huge", make([]byte, 200000)); !errors.Is(err, file.ErrNoSpace) {
		t.Fatalf("object larger than the cache: %v; want ErrNoSpace", err)
	}
	// Unknown length: the writer fails once the body outgrows the cache.
	ctx := context.Background()
	w, err := b.Create(ctx, "example.com/stream", storage.Info{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var werr error
	for i := 0; i < 10 && werr == nil; i++ {
		_, werr = w.Write(make([]byte, 50000))
	}
	if !errors.Is(werr, file.ErrNoSpace) {
		t.Fatalf("unknown-length body past the limit: %v; want ErrNoSpace", werr)
	}
	w.Close()
	if st := b.Stats(); st.Bytes != 0 {
		t.Fatalf("after the failed writes Stats.Bytes = %d; want 0", st.Bytes)
	}
}

func TestEvictionOrderSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b, err := file.New(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	for i, key := range []string{"example.com/old", "example.com/mid", "example.com/new"} {
		put(t, b, key, testutil.Payload(uint64(i), 100000))
		p, _ := b.Path(key)
		mt := old.Add(time.Duration(i) * time.Hour)
		os.Chtimes(p, mt, mt)
	}
	b.Close()
	// Reopened with room for two: the oldest goes.
	b2, err := file.New(dir, file.Options{MaxSize: 250000})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	ctx := context.Background()
	if _, err := b2.Stat(ctx, "example.com/old"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("oldest object survived a shrinking limit: %v", err)
	}
	for _, key := range []string{"example.com/mid", "example.com/new"} {
		if _, err := b2.Stat(ctx, key); err != nil {
			t.Errorf("%s evicted: %v", key, err)
		}
	}
	if st := b2.Stats(); st.Objects != 2 || st.Bytes > 250000 {
		t.Errorf("Stats = %+v; want 2 objects within the limit", st)
	}
}

// An object evicted while its body is kept in memory (small, read once)
// is gone from memory too: it is not served after its file was removed.
func TestEvictionDropsTheCopyInMemory(t *testing.T) {
	dir := t.TempDir()
	const limit = 64 << 10
	b, err := file.New(dir, file.Options{MaxSize: limit, MemoryObjectSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	small := testutil.Payload(1, 4000)
	if err := put(t, b, "example.com/small", small); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second read is served from memory
		o, err := b.Open(ctx, "example.com/small")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(o); err != nil || !bytes.Equal(got, small) {
			t.Fatalf("read small: %d bytes, %v", len(got), err)
		}
		o.Close()
	}
	// Bigger objects, never read, push it out: it is the least recently
	// used.
	for i := range 8 {
		if err := put(t, b, fmt.Sprintf("example.com/big/%d", i), testutil.Payload(uint64(i+2), 20000)); err != nil {
			t.Fatalf("put big %d: %v", i, err)
		}
	}
	if b.Stats().Evictions == 0 {
		t.Fatal("nothing was evicted")
	}
	if _, err := os.Stat(mustPath(t, b, "example.com/small")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the small object's file is still there (%v): pick a smaller limit", err)
	}
	if o, err := b.Open(ctx, "example.com/small"); !errors.Is(err, storage.ErrNotFound) {
		if err == nil {
			o.Close()
		}
		t.Fatalf("Open of the evicted object: %v; want ErrNotFound", err)
	}
}

func mustPath(t *testing.T, b *file.Backend, key string) string {
	t.Helper()
	p, err := b.Path(key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// What a power cut can leave of a file whose writes were lost after its
// commit returned (the file cut short, or its blocks read back as zeros):
// the restarted backend serves none of it, and the object can be stored
// again. Small objects (whose body waits in memory until Commit) and
// larger ones (written to a temporary file as they arrive) alike.
func TestLostWriteAfterCommitIsNotServed(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{10 << 10, 200 << 10} {
		for name, lose := range map[string]func(p string, size int64){
			"cut short": func(p string, size int64) { os.Truncate(p, size/2) },
			"empty":     func(p string, size int64) { os.Truncate(p, 0) },
			"zeroed": func(p string, size int64) {
				os.WriteFile(p, make([]byte, size), 0o644)
			},
			"end zeroed": func(p string, size int64) {
				f, _ := os.OpenFile(p, os.O_WRONLY, 0)
				f.WriteAt(make([]byte, 4096), size-4096)
				f.Close()
			},
		} {
			t.Run(fmt.Sprintf("%d bytes, %s", size, name), func(t *testing.T) {
				dir := t.TempDir()
				key := "example.com/lost.bin"
				data := testutil.Payload(uint64(size), size)
				put := func(b *file.Backend) {
					w, err := b.Create(ctx, key, storage.Info{Size: int64(size), ETag: `"v1"`})
					if err != nil {
						t.Fatal(err)
					}
					defer w.Close()
					w.Write(data)
					if err := w.Commit(ctx); err != nil {
						t.Fatal(err)
					}
				}
				b, err := file.New(dir, file.Options{})
				if err != nil {
					t.Fatal(err)
				}
				put(b)
				p, _ := b.Path(key)
				fi, err := os.Stat(p)
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
				lose(p, fi.Size())

				b2, err := file.New(dir, file.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer b2.Close()
				if o, err := b2.Open(ctx, key); !errors.Is(err, storage.ErrNotFound) {
					if err == nil {
						o.Close()
					}
					t.Fatalf("Open after the lost write: error = %v; want ErrNotFound", err)
				}
				if _, err := b2.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("Stat after the lost write: error = %v; want ErrNotFound", err)
				}
				// The refetch stores it again.
				put(b2)
				o, err := b2.Open(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				defer o.Close()
				got, err := io.ReadAll(o)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("stored again: %d bytes, err %v; want the %d bytes written", len(got), err, len(data))
				}
			})
		}
	}
}

// A small object's writer keeps its body in memory: no file exists until
// Commit, which makes it beside the object, and Cancel leaves nothing.
func TestSmallObjectWaitsInMemoryUntilCommit(t *testing.T) {
	b := newBackend(t)
	ctx := context.Background()
	root := b.Root()
	data := testutil.Payload(7, 16<<10)
	files := func() int {
		return testutil.CountFiles(t, filepath.Join(root, "tmp")) + testutil.CountFiles(t, filepath.Join(root, "objects"))
	}
	w, err := b.Create(ctx, "example.com/cancelled.bin", storage.Info{Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if n := files(); n != 0 {
		t.Errorf("%d files while a small object is written; want none", n)
	}
	got := make([]byte, len(data))
	if n, err := w.(storage.Spooler).ReadAt(got, 0); n != len(data) || !bytes.Equal(got, data) {
		t.Errorf("ReadAt of the written body: %d bytes, %v", n, err)
	}
	w.Cancel(ctx)
	w.Close()
	if n := files(); n != 0 {
		t.Errorf("%d files after Cancel; want none", n)
	}

	w, _ = b.Create(ctx, "example.com/small.bin", storage.Info{Size: int64(len(data))})
	w.Write(data)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if n := files(); n != 1 {
		t.Errorf("%d files after Commit; want the object's", n)
	}
	o, err := b.Open(ctx, "example.com/small.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if got, _ := io.ReadAll(o); !bytes.Equal(got, data) {
		t.Errorf("stored body differs")
	}
}
