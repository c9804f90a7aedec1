package fill_test

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// busy keeps n goroutines spinning on the CPU until the test ends (60 s
// at most), so that the fills of a test run on a loaded machine: their
// goroutines wait for a CPU while the origin's bytes pile up in the
// sockets.
func busy(t *testing.T, n int) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for range n {
		wg.Go(func() {
			x := uint64(1)
			for i := 0; ; i++ {
				x = x*6364136223846793005 + 1442695040888963407
				if i%(1<<16) == 0 {
					select {
					case <-stop:
						return
					default:
					}
					if time.Now().After(deadline) {
						return
					}
				}
			}
		})
	}
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
}

// handlers counts the origin's responses in progress: idle waits until
// none is (20 s at most), so that the origin's byte count is final.
type handlers struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to zero
}

func (h *handlers) wrap(hook testutil.Hook) testutil.Hook {
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		h.mu.Lock()
		if h.n == 0 {
			h.zero = make(chan struct{})
		}
		h.n++
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			h.n--
			if h.n == 0 {
				close(h.zero)
			}
			h.mu.Unlock()
		}()
		return hook(w, r, f)
	}
}

func (h *handlers) idle(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	n, zero := h.n, h.zero
	h.mu.Unlock()
	if n == 0 {
		return
	}
	select {
	case <-zero:
	case <-time.After(20 * time.Second):
		t.Fatal("the origin still sends after 20 s")
	}
}

// Every segmented fill takes at most the object's size plus 64 KiB from
// the origin, on a loaded machine too: busy loops take every CPU while
// objects are fetched in 1 MiB segments over four connections from an
// origin that sends as fast as it can. The first response must not be
// cut where a segment fetched elsewhere begins: every byte the origin had
// sent beyond it by then (its socket buffers, megabytes on loopback) was
// fetched for nothing.
func TestSegmentedFillOverFetchUnderLoad(t *testing.T) {
	busy(t, 2*runtime.GOMAXPROCS(0))
	o := testutil.NewOrigin(t)
	var hs handlers
	o.SetHook(hs.wrap(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool { return false }))
	const size = 24 << 20
	g := fill.NewGroup(memory.New(), fill.Options{Connections: 4, SegmentSize: 1 << 20, SpoolDir: t.TempDir()})
	defer g.Shutdown(context.Background())
	worst := int64(0)
	for i := range 6 {
		path := "/pkg" + strconv.Itoa(i) + ".tar"
		data := testutil.Payload(uint64(40+i), size)
		o.Put(path, data)
		before := o.BodyBytes.Load()
		f, _ := g.Miss("example.com"+path, originSource(o, path))
		if got := readAll(t, f); testutil.SHA256(got) != testutil.SHA256(data) {
			t.Fatalf("%s: read %d bytes; want the object", path, len(got))
		}
		if err := f.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		f.Release()
		hs.idle(t)
		sent := o.BodyBytes.Load() - before
		o.CheckFetchedOnce(t, path, size)
		worst = max(worst, sent-size)
		if sent > size+64<<10 {
			t.Errorf("%s: the origin sent %d bytes for a %d-byte object (+%d); want at most +%d", path, sent, size, sent-size, 64<<10)
		}
	}
	t.Logf("most sent beyond an object: %d bytes", worst)
}
