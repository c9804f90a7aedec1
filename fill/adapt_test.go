package fill_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// link paces the bodies of every response it wraps at rate bytes per
// second, in 16 KiB writes on an absolute schedule: each response alone
// (perConn, an origin that caps each connection) or all of them together
// (a link, disk or CPU that is the limit whatever the connections).
type link struct {
	rate    float64
	perConn bool

	mu    sync.Mutex
	start time.Time
	sent  int64
}

type pacedWriter struct {
	http.ResponseWriter
	l     *link
	own   *link // the response's own schedule, when perConn
	close <-chan struct{}
}

func (l *link) hook(done <-chan struct{}) testutil.Hook {
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if f == nil {
			return false
		}
		pw := &pacedWriter{ResponseWriter: w, l: l, close: done}
		if l.perConn {
			pw.own = &link{rate: l.rate, start: time.Now()}
		}
		testutil.ServeFile(pw, r, f)
		return true
	}
}

// due books n bytes on l's schedule and returns when they may leave.
func (l *link) due(n int) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.start.IsZero() || l.start.Add(time.Duration(float64(l.sent)/l.rate*float64(time.Second))).Before(now.Add(-50*time.Millisecond)) {
		// Idle for a while: the schedule starts again, without a burst.
		l.start, l.sent = now, 0
	}
	at := l.start.Add(time.Duration(float64(l.sent) / l.rate * float64(time.Second)))
	l.sent += int64(n)
	return at
}

func (p *pacedWriter) Write(b []byte) (int, error) {
	sched := p.l
	if p.own != nil {
		sched = p.own
	}
	written := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), 16<<10)]
		if d := time.Until(sched.due(len(chunk))); d > 0 {
			select {
			case <-time.After(d):
			case <-p.close:
			}
		}
		n, err := p.ResponseWriter.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p.ResponseWriter.(http.Flusher).Flush()
		b = b[n:]
	}
	return written, nil
}

// concurrent wraps hook, recording the most requests in progress at once.
func concurrent(hook testutil.Hook, most *atomic.Int64) testutil.Hook {
	var now atomic.Int64
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		c := now.Add(1)
		defer now.Add(-1)
		for m := most.Load(); c > m && !most.CompareAndSwap(m, c); m = most.Load() {
		}
		return hook(w, r, f)
	}
}

// A segmented fill adds connections while they add to the rate: from an
// origin that sends each response at 512 KiB/s, it goes on to use all
// eight that Connections allows; from one whose 2 MiB/s are shared by all
// its responses, it never uses more than the two it starts with and the
// four of a doubling that did not pay. Either way each byte leaves the
// origin once, and the object is stored whole. Nobody reads the fill
// while it runs, so no reader's range-first fetch adds a connection. The
// rates are low, and the rate is measured over a second, so that the
// link, not the CPU, limits the fill even under the race detector on a
// busy machine: a fill whose CPU is the limit sees its rate move with the
// machine's load, not with its connections.
func TestAdaptiveConnections(t *testing.T) {
	for _, tc := range []struct {
		name     string
		link     *link
		size     int
		min, max int64
	}{
		{"capped per connection", &link{rate: 512 << 10, perConn: true}, 14 << 20, 8, 8},
		{"shared link", &link{rate: 2 << 20}, 8 << 20, 2, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fill.SetAdaptWindow(t, time.Second)
			o := testutil.NewOrigin(t)
			data := testutil.Payload(60, tc.size)
			o.Put("/big.bin", data)
			done := make(chan struct{})
			defer close(done)
			var most atomic.Int64
			o.SetHook(concurrent(tc.link.hook(done), &most))
			store := memory.New()
			g := fill.NewGroup(store, fill.Options{Connections: 8, SegmentSize: 256 << 10, SpoolDir: t.TempDir()})
			f, _ := g.Miss("example.com/big.bin", originSource(o, "/big.bin"))
			f.Release() // the fill stores the object for nobody in particular
			if err := f.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := g.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			if m := most.Load(); m < tc.min || m > tc.max {
				t.Errorf("at most %d requests at once; want %d to %d", m, tc.min, tc.max)
			}
			o.CheckFetchedOnce(t, "/big.bin", int64(tc.size))
			obj, err := store.Open(context.Background(), "example.com/big.bin")
			if err != nil {
				t.Fatalf("the object is not stored: %v", err)
			}
			defer obj.Close()
			if got, _ := io.ReadAll(obj); testutil.SHA256(got) != testutil.SHA256(data) {
				t.Errorf("stored %d bytes; want the object", len(got))
			}
		})
	}
}
