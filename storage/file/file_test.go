package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/httpmirror/httpmirror/storage/storagetest"
)

func newBackend(t *testing.T) *file.Backend {
	t.Helper()
	b, err := file.New(t.TempDir())
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
	b, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := file.New(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second New on a locked directory: error = %v; want an in-use error", err)
	}
	b.Close()
	b2, err := file.New(dir)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	b2.Close()
}

func TestRelativeRootRefused(t *testing.T) {
	if _, err := file.New("relative/dir"); err == nil {
		t.Fatal("New with a relative path succeeded")
	}
}

func TestUnwritableRootRefused(t *testing.T) {
	if os.Geteuid() == 0 {
		// root ignores permission bits; use a path under a regular file instead.
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o644)
		if _, err := file.New(filepath.Join(f, "cache")); err == nil {
			t.Fatal("New under a regular file succeeded")
		}
		return
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if _, err := file.New(filepath.Join(dir, "cache")); err == nil {
		t.Fatal("New in a read-only directory succeeded")
	}
}

func TestLeftoversRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	b, err := file.New(dir)
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
	if n := countFiles(t, filepath.Join(dir, "tmp")); n != 1 {
		t.Fatalf("tmp holds %d files before restart; want 1", n)
	}

	b2, err := file.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if n := countFiles(t, filepath.Join(dir, "tmp")); n != 0 {
		t.Errorf("tmp holds %d files after restart; want 0", n)
	}
	if _, err := b2.Stat(ctx, "example.com/partial.bin"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("partial object: Stat error = %v; want ErrNotFound", err)
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
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
