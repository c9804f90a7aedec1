package fill_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// originSource fetches path from the test origin o (GET, and HEAD for a
// segmented fill's digests).
func originSource(o *testutil.Origin, path string) fill.Source {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:    &tls.Config{RootCAs: o.CertPool()},
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
	}}
	u := o.URL + path
	send := func(ctx context.Context, method string, h http.Header) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range h {
			req.Header[k] = v
		}
		return client.Do(req)
	}
	return fill.NewSource(u, send)
}

// inFlight wraps hook: it records the most requests the origin served at
// once, and holds every response's body (not its header) until n requests
// are in (20 s at most), so the count does not depend on how fast the
// machine is.
func inFlight(t *testing.T, hook testutil.Hook, n int64, most *atomic.Int64) testutil.Hook {
	var now atomic.Int64
	allIn := testutil.NewGate(t)
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		c := now.Add(1)
		defer now.Add(-1)
		for m := most.Load(); c > m && !most.CompareAndSwap(m, c); m = most.Load() {
		}
		if c >= n {
			allIn.Open()
		}
		return hook(&stallWriter{ResponseWriter: w, left: 0, gate: allIn.Chan()}, r, f)
	}
}

// A 16 MiB object from an origin that caps each connection is fetched as
// segments over several connections at once (two at first: whether more
// follow depends on the rates measured, see TestAdaptiveConnections), read
// whole and correct by 20 readers of the one fill, stored, and each byte
// range leaves the origin once. Both kinds of storage writers: one that is the spool and takes
// bytes at any offset (local disk), and one fed in order from a spool file
// (an in-memory store, standing for S3).
func TestSegmentedFill(t *testing.T) {
	stores := map[string]func(t *testing.T) storage.Backend{
		"file": func(t *testing.T) storage.Backend {
			b, err := file.New(t.TempDir(), file.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		},
		"fed": func(t *testing.T) storage.Backend { return noSpool{memory.New()} },
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			o := testutil.NewOrigin(t)
			data := testutil.Payload(20, 16<<20)
			o.Put("/model.bin", data)
			fast := make(chan struct{})
			var most atomic.Int64
			o.SetHook(inFlight(t, testutil.Throttled(4<<20, fast), 2, &most))
			store := newStore(t)
			g := fill.NewGroup(store, fill.Options{Connections: 4, SegmentSize: 1 << 20, SpoolDir: t.TempDir()})
			const readers = 20
			want := testutil.SHA256(data)
			var wg sync.WaitGroup
			for i := range readers {
				f, joined := g.Miss("example.com/model.bin", originSource(o, "/model.bin"))
				if joined != (i > 0) {
					t.Fatalf("reader %d joined = %v", i, joined)
				}
				wg.Go(func() {
					defer f.Release()
					if _, err := f.Header(context.Background()); err != nil {
						t.Errorf("reader %d: %v", i, err)
						return
					}
					h := sha256.New()
					n, err := io.CopyBuffer(h, f.NewReader(context.Background()), make([]byte, 256<<10))
					if err != nil || hex.EncodeToString(h.Sum(nil)) != want {
						t.Errorf("reader %d: %d bytes, err %v, wrong sha256", i, n, err)
					}
				})
			}
			wg.Wait()
			if err := g.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			close(fast)
			ranged := o.CheckFetchedOnce(t, "/model.bin", int64(len(data)))
			if ranged < 3 || most.Load() < 2 {
				t.Errorf("%d ranged requests, at most %d at once; want at least 3 and 2", ranged, most.Load())
			}
			info, err := store.Stat(context.Background(), "example.com/model.bin")
			if err != nil || info.Size != int64(len(data)) {
				t.Fatalf("stored %+v, %v; want the object", info, err)
			}
			obj, err := store.Open(context.Background(), "example.com/model.bin")
			if err != nil {
				t.Fatal(err)
			}
			defer obj.Close()
			if got, _ := io.ReadAll(obj); testutil.SHA256(got) != testutil.SHA256(data) {
				t.Fatal("stored object differs from the origin's")
			}
		})
	}
}

// rangeFirstOrigin serves path from a capped origin whose other responses
// stall after their first 64 KiB until the Range request starting at want
// arrives (for at most 20 s): the fill must ask for want before the rest.
// With holdWhole, the fill's first request is not answered at all, headers included, until then. sentBefore holds the
// body bytes the origin had sent when it did (-1 before).
func rangeFirstOrigin(t *testing.T, o *testutil.Origin, want int64, holdWhole bool) (sentBefore *atomic.Int64, fast chan struct{}) {
	sentBefore = &atomic.Int64{}
	sentBefore.Store(-1)
	fast = make(chan struct{})
	seen := testutil.NewGate(t)
	throttled := testutil.Throttled(16<<20, fast)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if strings.HasPrefix(r.Header.Get("Range"), "bytes="+strconv.FormatInt(want, 10)+"-") {
			sentBefore.CompareAndSwap(-1, o.BodyBytes.Load())
			seen.Open()
			return throttled(w, r, f)
		}
		if holdWhole && isFirst(r) {
			select {
			case <-seen.Chan():
			case <-time.After(20 * time.Second):
			}
		}
		return throttled(&stallWriter{ResponseWriter: w, left: 64 << 10, gate: seen.Chan()}, r, f)
	})
	return sentBefore, fast
}

// isFirst reports whether r is a fill's first request: without If-Range,
// for the whole object or from its first byte.
func isFirst(r *http.Request) bool {
	rg := r.Header.Get("Range")
	return r.Header.Get("If-Range") == "" && (rg == "" || strings.HasPrefix(rg, "bytes=0-"))
}

// stallWriter passes left bytes, then waits for gate (20 s at most) once.
type stallWriter struct {
	http.ResponseWriter
	left int
	gate <-chan struct{}
}

func (s *stallWriter) Flush() { s.ResponseWriter.(http.Flusher).Flush() }

func (s *stallWriter) Write(p []byte) (int, error) {
	if s.left >= 0 && len(p) > s.left {
		n, err := s.ResponseWriter.Write(p[:s.left])
		if err != nil {
			return n, err
		}
		s.ResponseWriter.(http.Flusher).Flush()
		select {
		case <-s.gate:
		case <-time.After(20 * time.Second):
		}
		p, s.left = p[s.left:], -1
		m, err := s.ResponseWriter.Write(p)
		return n + m, err
	}
	if s.left >= 0 {
		s.left -= len(p)
	}
	return s.ResponseWriter.Write(p)
}

// Range-first: a reader that wants the last MiB of a cold 32 MiB object
// gets it from a Range request of its own, made before the bytes ahead of
// it: the origin holds every other response after its first 64 KiB until
// that request arrives.
func TestRangeFirst(t *testing.T) {
	o := testutil.NewOrigin(t)
	const size = 32 << 20
	data := testutil.Payload(21, size)
	o.Put("/big.iso", data)
	want := int64(size - 1<<20)
	sentBefore, fast := rangeFirstOrigin(t, o, want, false)
	g := fill.NewGroup(memory.New(), fill.Options{Connections: 4, SegmentSize: 4 << 20, SpoolDir: t.TempDir()})
	defer g.Shutdown(context.Background())
	f, _ := g.Miss("example.com/big.iso", originSource(o, "/big.iso"))
	defer f.Release()
	readFrom(t, f, want, data)
	if sent := sentBefore.Load(); sent < 0 || sent > 4*64<<10 {
		t.Fatalf("the origin had sent %d of %d bytes when the Range request for the last MiB arrived; want it asked for before the rest", sent, size)
	}
	close(fast)
}

// The fill aborts and stores nothing when a segment's answer does not fit
// the object the first response described: a changed object, an origin
// that ignores Range, one that lies in Content-Range. Readers never get a
// clean end.
func TestSegmentedFillRefusesInconsistentOrigins(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request, f *testutil.File)
	}{
		{"changed ETag", func(w http.ResponseWriter, r *http.Request, f *testutil.File) {
			g := *f
			g.ETag = `"other"`
			testutil.ServeFile(w, r.WithContext(r.Context()), &g) // If-Range fails: 200 with the new ETag
		}},
		{"changed ETag in a 206", func(w http.ResponseWriter, r *http.Request, f *testutil.File) {
			r.Header.Del("If-Range")
			g := *f
			g.ETag = `"other"`
			testutil.ServeFile(w, r, &g)
		}},
		{"Range ignored", func(w http.ResponseWriter, r *http.Request, f *testutil.File) {
			r.Header.Del("Range")
			testutil.ServeFile(w, r, f)
		}},
		{"Content-Range lies", func(w http.ResponseWriter, r *http.Request, f *testutil.File) {
			var a, b int64
			fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b)
			// One byte off: later, or earlier at the end of the object.
			shift := int64(1)
			if b+1 >= int64(len(f.Data)) {
				shift = -1
			}
			w.Header().Set("ETag", f.ETag)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a+shift, b+shift, len(f.Data)))
			w.Header().Set("Content-Length", strconv.FormatInt(b-a+1, 10))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(f.Data[a+shift : b+shift+1])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testutil.NewOrigin(t)
			data := testutil.Payload(22, 16<<20)
			o.Put("/x.bin", data)
			o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
				if r.Header.Get("If-Range") == "" {
					return false // the first request
				}
				tc.answer(w, r, f)
				return true
			})
			store := memory.New()
			g := fill.NewGroup(store, fill.Options{Connections: 4, SegmentSize: 1 << 20, SpoolDir: t.TempDir()})
			f, _ := g.Miss("example.com/x.bin", originSource(o, "/x.bin"))
			defer f.Release()
			if _, err := f.Header(context.Background()); err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(f.NewReader(context.Background()))
			if err == nil {
				t.Fatalf("reader got a clean %d-byte body; want an error", len(got))
			}
			if err := f.Wait(context.Background()); !errors.Is(err, fill.ErrOriginChanged) {
				t.Errorf("fill error %v; want ErrOriginChanged", err)
			}
			if store.Len() != 0 {
				t.Fatal("an inconsistent object was stored")
			}
		})
	}
}

// Without byte ranges (no Accept-Ranges) or without a validator, and with
// one connection, a large object is fetched with one request, as before.
func TestSegmentedFillFallsBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conns int
		tweak func(w http.ResponseWriter, f *testutil.File)
	}{
		{"no Accept-Ranges", 4, func(w http.ResponseWriter, f *testutil.File) {}},
		{"no validator", 4, func(w http.ResponseWriter, f *testutil.File) { w.Header().Set("Accept-Ranges", "bytes") }},
		{"one connection", 1, func(w http.ResponseWriter, f *testutil.File) {
			w.Header().Set("Accept-Ranges", "bytes")
			w.Header().Set("ETag", f.ETag)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testutil.NewOrigin(t)
			data := testutil.Payload(23, 4<<20)
			o.Put("/y.bin", data)
			o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
				tc.tweak(w, f)
				w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
				w.Write(f.Data)
				return true
			})
			store := memory.New()
			g := fill.NewGroup(store, fill.Options{Connections: tc.conns, SegmentSize: 1 << 20})
			f, _ := g.Miss("example.com/y.bin", originSource(o, "/y.bin"))
			defer f.Release()
			if got := readAll(t, f); testutil.SHA256(got) != testutil.SHA256(data) {
				t.Fatalf("read %d bytes; want the object", len(got))
			}
			if n := o.CheckFetchedOnce(t, "/y.bin", int64(len(data))); n != 0 {
				t.Fatalf("%d ranged requests; want none", n)
			}
		})
	}
}

// A cold miss that wants a byte far into the object (Source.Want) asks for
// it beside its first request, without waiting for that request's answer:
// the origin answers the first request only once the wanted range has
// been asked for, so it has sent no byte by then (a fill that waited for
// the first response would ask for the range only after 20 s and many
// bytes). No byte is fetched twice.
func TestRangeFirstOnAColdMiss(t *testing.T) {
	o := testutil.NewOrigin(t)
	const size = 32 << 20
	data := testutil.Payload(24, size)
	o.Put("/z.iso", data)
	want := int64(size - 1<<20)
	sentBefore, fast := rangeFirstOrigin(t, o, want, true)
	g := fill.NewGroup(memory.New(), fill.Options{Connections: 4, SegmentSize: 4 << 20, SpoolDir: t.TempDir()})
	src := originSource(o, "/z.iso")
	src.Want = want
	f, _ := g.Miss("example.com/z.iso", src)
	defer f.Release()
	readFrom(t, f, want, data)
	if sent := sentBefore.Load(); sent != 0 {
		t.Fatalf("the origin had sent %d bytes when the wanted range was asked for; want it asked for at once, before any", sent)
	}
	close(fast)
	if err := f.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	o.CheckFetchedOnce(t, "/z.iso", size)
}

// readFrom reads f from off to the end and checks the bytes against data.
func readFrom(t *testing.T, f *fill.Fill, off int64, data []byte) {
	t.Helper()
	if _, err := f.Header(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := f.NewReader(context.Background())
	if _, err := r.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || testutil.SHA256(got) != testutil.SHA256(data[off:]) {
		t.Fatalf("bytes from %d: %d bytes, err %v; want the right bytes", off, len(got), err)
	}
}

// rangedSource serves data from memory as an origin that serves byte
// ranges under a strong ETag does, recording the Range of every request.
type rangedSource struct {
	data []byte
	mu   sync.Mutex
	got  []string // the Range header of each request, "" for none
}

func (s *rangedSource) source() fill.Source {
	file := &testutil.File{Data: s.data, ETag: `"` + testutil.SHA256(s.data)[:16] + `"`}
	return fill.Source{URL: "mem://ranged", Get: func(ctx context.Context, h http.Header) (*http.Response, error) {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		for k, v := range h {
			req.Header[k] = v
		}
		s.mu.Lock()
		s.got = append(s.got, h.Get("Range"))
		s.mu.Unlock()
		rec := httptest.NewRecorder()
		testutil.ServeFile(rec, req, file)
		return rec.Result(), nil
	}}
}

// A reader that asks for a byte ahead of the prefix again and again, from
// the moment the fill starts, reaches segmented fills while they start
// their fetchers and while those run: every fill completes with the right
// bytes and asks for no byte twice. Under -race it also checks that a
// fetcher a reader starts is ordered with the fill's wait for its
// fetchers: when a reader could start one before the first ones were
// counted, the race detector reported this test (in most runs, not all:
// the reader has to arrive in that window).
func TestSegmentedFillWantedWhileStarting(t *testing.T) {
	data := testutil.Payload(25, 64<<10)
	far := int64(len(data) - 100)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	g := fill.NewGroup(memory.New(), fill.Options{Connections: 4, SegmentSize: 4 << 10, SpoolDir: t.TempDir()})
	for i := range 100 {
		src := &rangedSource{data: data}
		f, _ := g.Miss("example.com/w"+strconv.Itoa(i), src.source())
		asking := make(chan struct{})
		go func() {
			defer close(asking)
			// With a done context Available never blocks: it asks for
			// the byte (once the fill is segmented) and returns. It asks
			// without pause, to meet the fill while it starts its
			// fetchers, yielding now and then so that a single CPU
			// still runs the fill.
			for n := 0; ; n++ {
				select {
				case <-f.Done():
					return
				default:
				}
				if _, err := f.Available(cancelled, far); err == nil {
					return // the byte has arrived
				}
				if n%64 == 63 {
					runtime.Gosched()
				}
			}
		}()
		if got := readAll(t, f); !bytes.Equal(got, data) {
			t.Fatalf("fill %d: read %d bytes; want the object", i, len(got))
		}
		<-asking
		if err := f.Wait(context.Background()); err != nil {
			t.Fatalf("fill %d: %v", i, err)
		}
		f.Release()
		if err := g.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		src.mu.Lock()
		checkRangesOnce(t, src.got, int64(len(data)))
		src.mu.Unlock()
	}
}

// checkRangesOnce checks requests (the Range headers an origin got, ""
// for none) as Origin.CheckFetchedOnce does: one first request, for the
// whole object or from its first byte, and ranges that do not overlap.
func checkRangesOnce(t *testing.T, requests []string, size int64) {
	t.Helper()
	whole := 0
	var ranges [][2]int64
	for _, rg := range requests {
		if rg == "" || strings.HasPrefix(rg, "bytes=0-") {
			whole++
		}
		if rg == "" {
			continue
		}
		var a, b int64
		if _, err := fmt.Sscanf(rg, "bytes=%d-%d", &a, &b); err != nil || a > b || a >= size {
			t.Errorf("Range %q; want bytes=A-B within the object", rg)
			continue
		}
		for _, c := range ranges {
			if a <= c[1] && c[0] <= b {
				t.Errorf("ranges %d-%d and %d-%d overlap: bytes fetched twice", a, b, c[0], c[1])
			}
		}
		ranges = append(ranges, [2]int64{a, b})
	}
	if whole != 1 {
		t.Errorf("%d first requests; want 1", whole)
	}
}
