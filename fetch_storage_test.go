package httpmirror_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/prometheus/client_golang/prometheus"
)

// countingHandler counts log records at error level whose message starts
// with a prefix, and passes every record on.
type countingHandler struct {
	slog.Handler
	prefix string
	n      *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError && strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(a), h.prefix, h.n}
}

func (h countingHandler) WithGroup(g string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(g), h.prefix, h.n}
}

// failAfter is a local-disk store whose writes fail with ENOSPC once a
// writer has taken `room` bytes, as a disk that fills up mid-download.
type failAfter struct {
	*file.Backend
	room int64
	full atomic.Bool
}

func (b *failAfter) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	w, err := b.Backend.Create(ctx, key, info)
	if err != nil {
		return nil, err
	}
	return &failingWriter{FileSpooler: w.(storage.FileSpooler), Writer: w, b: b}, nil
}

type failingWriter struct {
	storage.FileSpooler
	storage.Writer
	b *failAfter
	n int64
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.b.full.Load() || w.n+int64(len(p)) > w.b.room {
		w.b.full.Store(true)
		return 0, fmt.Errorf("write: %w", syscall.ENOSPC)
	}
	n, err := w.Writer.Write(p)
	w.n += int64(n)
	return n, err
}

// The cache disk fills up while a file downloads: every client of that
// download still gets the whole file (the spool moves to the spool
// directory), nothing broken is stored, readiness fails while writes
// fail, the failure is logged once, and a later write that fits brings
// readiness back.
func TestStorageWriteFailureKeepsClientsWhole(t *testing.T) {
	o := newOrigin(t)
	data := payload(98, 3<<20)
	o.Put("/a.bin", data)
	o.Put("/b.bin", payload(99, 3<<20))
	small := payload(100, 10<<10)
	o.Put("/small.bin", small)
	joined := newGate(t)
	o.SetHook(stallingHook(1<<20, nil, joined))
	fb, err := file.New(t.TempDir(), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	store := &failAfter{Backend: fb, room: 2 << 20}
	var errorsLogged atomic.Int64
	reg := prometheus.NewRegistry()
	m := newMirror(t, o, withStore(store), func(h *httpmirror.MirrorHandler) {
		h.Metrics = httpmirror.NewMetrics(reg)
		h.SpoolDir = t.TempDir()
		h.Logger = slog.New(countingHandler{h.Logger.Handler(), "storage", &errorsLogged})
	})
	if err := m.h.Check(context.Background()); err != nil {
		t.Fatalf("Check before any failure: %v", err)
	}
	// The origin holds the body at 1 MiB until all five clients are in.
	openWhenEntered(m, 5, joined)
	testutil.GetMany(t, http.DefaultClient, 5, func(int) string { return m.url(o, "/a.bin") }, sha(data))()
	waitFills(t, m)
	if r := get(t, m.url(o, "/b.bin")); r.StatusCode != 200 || r.err != nil || len(r.body) != 3<<20 {
		t.Fatalf("second file on the full disk: status %d, %d bytes, err %v", r.StatusCode, len(r.body), r.err)
	}
	waitFills(t, m)
	if n := countFiles(t, fb.Root()+"/objects"); n != 0 {
		t.Fatalf("%d objects stored on the full disk; want none", n)
	}
	if err := m.h.Check(context.Background()); err == nil {
		t.Fatal("Check while writes fail = nil; want an error")
	}
	if n := errorsLogged.Load(); n != 1 {
		t.Errorf("%d error-level storage log lines for two failed fills; want 1", n)
	}
	// Counted: two fills not stored, two failed writers.
	if got := gathered(t, reg, "httpmirror_fills_total", map[string]string{"result": "not_stored"}); got != 2 {
		t.Errorf("fills_total{result=not_stored} = %v; want 2", got)
	}
	if got := gathered(t, reg, "httpmirror_storage_errors_total", map[string]string{"op": "write"}); got != 2 {
		t.Errorf("storage_errors_total{op=write} = %v; want 2", got)
	}
	// Room again: the next write commits, and readiness comes back.
	store.full.Store(false)
	o.SetHook(nil)
	if r := get(t, m.url(o, "/small.bin")); r.StatusCode != 200 || sha(r.body) != sha(small) {
		t.Fatalf("small file after the disk has room: status %d", r.StatusCode)
	}
	waitFills(t, m)
	if err := m.h.Check(context.Background()); err != nil {
		t.Fatalf("Check after a successful write: %v", err)
	}
}

// openWhenEntered opens g once n requests have entered the mirror.
func openWhenEntered(m *testMirror, n int64, g *testutil.Gate) {
	var entered atomic.Int64
	inner := m.Config.Handler
	m.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if entered.Add(1) == n {
			g.Open()
		}
		inner.ServeHTTP(w, r)
	})
}

// tmpfs mounts a tmpfs of size bytes for the test, which removes it at
// the end. Mounting needs root: other users skip.
func tmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a full-disk test mounts a small tmpfs, which needs root; run the tests as root to include it")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); skipping the full-disk test", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// The cache on a real, small tmpfs: files larger than the disk are served
// whole to several concurrent clients, with the spool on another file
// system or, when the spool directory is on the same full disk, by
// continuing each client's transfer from the origin.
func TestFullDiskTmpfs(t *testing.T) {
	for _, spoolOnDisk := range []bool{false, true} {
		t.Run(fmt.Sprintf("spool-on-full-disk=%v", spoolOnDisk), func(t *testing.T) {
			disk := tmpfs(t, 4<<20)
			o := newOrigin(t)
			files := map[string][]byte{"/a.bin": payload(101, 6<<20), "/b.bin": payload(102, 6<<20)}
			for p, d := range files {
				o.Put(p, d)
			}
			fb, err := file.New(disk+"/cache", file.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer fb.Close()
			spool := t.TempDir()
			if spoolOnDisk {
				spool = disk
			}
			m := newMirror(t, o, withStore(fb), func(h *httpmirror.MirrorHandler) { h.SpoolDir = spool })
			var wg sync.WaitGroup
			for p, d := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					wait := testutil.GetMany(t, http.DefaultClient, 3, func(int) string { return m.url(o, p) }, sha(d))
					wait()
				}()
			}
			wg.Wait()
			waitFills(t, m)
			if n := countFiles(t, disk+"/cache/objects"); n != 0 {
				t.Fatalf("%d objects on the full disk; want none", n)
			}
			if err := m.h.Check(context.Background()); err == nil {
				t.Fatal("Check with the cache disk full = nil; want an error")
			}
			if r := get(t, m.url(o, "/a.bin")); r.StatusCode != 200 || r.err != nil || sha(r.body) != sha(files["/a.bin"]) {
				t.Fatalf("another request on the full disk: status %d, %d bytes, err %v", r.StatusCode, len(r.body), r.err)
			}
		})
	}
}

// An object larger than --cache-max-size is the limit at work, not a
// fault: it is served, not stored, and nothing is logged at error level.
func TestObjectOverCacheLimitIsNotAnError(t *testing.T) {
	o := newOrigin(t)
	data := payload(104, 1<<20)
	o.Put("/big.bin", data)
	fb, err := file.New(t.TempDir(), file.Options{MaxSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	var errorsLogged atomic.Int64
	m := newMirror(t, o, withStore(fb), func(h *httpmirror.MirrorHandler) {
		h.Logger = slog.New(countingHandler{h.Logger.Handler(), "", &errorsLogged})
	})
	if r := get(t, m.url(o, "/big.bin")); r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Fatalf("status %d; want 200 with the file", r.StatusCode)
	}
	waitFills(t, m)
	if n := errorsLogged.Load(); n != 0 {
		t.Errorf("%d error-level log lines for an object over the cache limit; want 0", n)
	}
	if err := m.h.Check(context.Background()); err != nil {
		t.Errorf("Check after an object over the limit: %v; want nil (the store is fine)", err)
	}
}
