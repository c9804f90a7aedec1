package fill_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
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

// memSource serves data from memory, counting calls; each response body is
// a pipe the test can feed, or the whole data when feed is nil.
type memSource struct {
	data  []byte
	calls atomic.Int64
	feed  func(w *io.PipeWriter, data []byte)
}

func (s *memSource) source() fill.Source {
	return fill.Source{URL: "mem://object", Get: func(ctx context.Context, h http.Header) (*http.Response, error) {
		s.calls.Add(1)
		resp := &http.Response{
			StatusCode:    http.StatusOK,
			Header:        http.Header{"Etag": {`"v1"`}, "Content-Type": {"application/x-test"}},
			ContentLength: int64(len(s.data)),
		}
		if s.feed == nil {
			resp.Body = io.NopCloser(bytes.NewReader(s.data))
			return resp, nil
		}
		pr, pw := io.Pipe()
		go s.feed(pw, s.data)
		resp.Body = pr
		return resp, nil
	}}
}

func readAll(t *testing.T, f *fill.Fill) []byte {
	t.Helper()
	info, err := f.Header(context.Background())
	if err != nil {
		t.Fatalf("Header: %v", err)
	}
	_ = info
	b, err := io.ReadAll(f.NewReader(context.Background()))
	if err != nil {
		t.Fatalf("reading fill: %v", err)
	}
	return b
}

func TestFillStoresAndServes(t *testing.T) {
	store := memory.New()
	g := fill.NewGroup(store, fill.Options{})
	src := &memSource{data: testutil.Payload(1, 1<<20)}
	f, joined := g.Miss("example.com/a", src.source())
	defer f.Release()
	if joined {
		t.Fatal("first Get joined")
	}
	if got := readAll(t, f); !bytes.Equal(got, src.data) {
		t.Fatalf("read %d bytes; want the data", len(got))
	}
	<-f.Done()
	if f.Err() != nil || !f.Stored() {
		t.Fatalf("Err %v, Stored %v; want nil, true", f.Err(), f.Stored())
	}
	info, err := store.Stat(context.Background(), "example.com/a")
	if err != nil || info.Size != int64(len(src.data)) || info.ETag != `"v1"` || info.ContentType != "application/x-test" {
		t.Fatalf("stored %+v, %v", info, err)
	}
	// A second miss finds the object stored, serves it from storage and
	// does not call the origin.
	f2, _ := g.Miss("example.com/a", src.source())
	defer f2.Release()
	if got := readAll(t, f2); !bytes.Equal(got, src.data) {
		t.Fatalf("second fill read %d bytes; want the stored data", len(got))
	}
	if f2.Wait(context.Background()) != nil || !f2.Stored() {
		t.Fatalf("second fill: Err %v, Stored %v; want nil, true", f2.Err(), f2.Stored())
	}
	if src.calls.Load() != 1 {
		t.Fatalf("origin calls %d; want 1", src.calls.Load())
	}
}

// noSpool hides the storage.Spooler of a backend's writers, forcing the
// fill to keep its own spool file.
type noSpool struct{ storage.Backend }

func (n noSpool) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	w, err := n.Backend.Create(ctx, key, info)
	return struct{ storage.Writer }{w}, err
}

// failing fails every call but Stat (which says "not found").
type failing struct{ storage.Backend }

func (failing) Stat(context.Context, string) (storage.Info, error) {
	return storage.Info{}, storage.ErrNotFound
}
func (failing) Create(context.Context, string, storage.Info) (storage.Writer, error) {
	return nil, errors.New("disk on fire")
}

func TestFillSeparateSpool(t *testing.T) {
	store := memory.New()
	g := fill.NewGroup(noSpool{store}, fill.Options{SpoolDir: t.TempDir()})
	src := &memSource{data: testutil.Payload(2, 3<<20+7)}
	f, _ := g.Miss("example.com/b", src.source())
	defer f.Release()
	if got := readAll(t, f); !bytes.Equal(got, src.data) {
		t.Fatalf("read %d bytes; want the data", len(got))
	}
	<-f.Done()
	if !f.Stored() || store.Len() != 1 {
		t.Fatalf("Stored %v, objects %d; want stored", f.Stored(), store.Len())
	}
}

func TestFillStorageFailureStillServes(t *testing.T) {
	g := fill.NewGroup(failing{memory.New()}, fill.Options{SpoolDir: t.TempDir()})
	src := &memSource{data: testutil.Payload(3, 500000)}
	f, _ := g.Miss("example.com/c", src.source())
	defer f.Release()
	if got := readAll(t, f); !bytes.Equal(got, src.data) {
		t.Fatalf("read %d bytes; want the data", len(got))
	}
	<-f.Done()
	if f.Err() != nil || f.Stored() {
		t.Fatalf("Err %v, Stored %v; want nil, false", f.Err(), f.Stored())
	}
}

func TestFillShortBodyIsNotStored(t *testing.T) {
	store := memory.New()
	g := fill.NewGroup(store, fill.Options{})
	data := testutil.Payload(4, 100000)
	src := &memSource{data: data, feed: func(w *io.PipeWriter, data []byte) {
		w.Write(data[:50000])
		w.CloseWithError(io.ErrUnexpectedEOF)
	}}
	f, _ := g.Miss("example.com/d", src.source())
	defer f.Release()
	f.Header(context.Background())
	_, err := io.ReadAll(f.NewReader(context.Background()))
	if !errors.Is(err, fill.ErrShortBody) {
		t.Fatalf("read error = %v; want ErrShortBody", err)
	}
	if store.Len() != 0 {
		t.Fatal("a short body was stored")
	}
}

func TestShutdownAbortsAndForbidsNewFills(t *testing.T) {
	store := memory.New()
	g := fill.NewGroup(store, fill.Options{})
	block := make(chan struct{})
	defer close(block)
	src := &memSource{data: testutil.Payload(5, 100000), feed: func(w *io.PipeWriter, data []byte) {
		w.Write(data[:1000])
		<-block
		w.Close()
	}}
	f, _ := g.Miss("example.com/e", src.source())
	defer f.Release()
	f.Header(context.Background())
	// The pipe ignores the context: Shutdown must still end the fill, by
	// closing the body.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Shutdown(ctx) }()
	<-f.Done()
	if !errors.Is(f.Err(), fill.ErrShutdown) {
		t.Fatalf("fill error = %v; want ErrShutdown", f.Err())
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if store.Len() != 0 {
		t.Fatal("an aborted fill was stored")
	}
	f2, _ := g.Miss("example.com/f", (&memSource{data: []byte("x")}).source())
	defer f2.Release()
	if _, err := f2.Header(context.Background()); !errors.Is(err, fill.ErrShutdown) {
		t.Fatalf("fill after Shutdown: %v; want ErrShutdown", err)
	}
}

func TestStatusError(t *testing.T) {
	g := fill.NewGroup(memory.New(), fill.Options{})
	src := fill.Source{Get: func(ctx context.Context, h http.Header) (*http.Response, error) {
		return &http.Response{StatusCode: 404, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(nil))}, nil
	}}
	f, _ := g.Miss("example.com/missing", src)
	defer f.Release()
	_, err := f.Header(context.Background())
	var se *fill.StatusError
	if !errors.As(err, &se) || se.Code != 404 || !errors.Is(err, fill.ErrNotOK) {
		t.Fatalf("Header error = %v; want a 404 StatusError", err)
	}
}

func TestReaderWaitsForBytes(t *testing.T) {
	g := fill.NewGroup(memory.New(), fill.Options{})
	data := testutil.Payload(6, 300000)
	step := make(chan struct{})
	src := &memSource{data: data, feed: func(w *io.PipeWriter, data []byte) {
		for i := 0; i < len(data); i += 100000 {
			<-step
			w.Write(data[i : i+100000])
		}
		w.Close()
	}}
	f, _ := g.Miss("example.com/g", src.source())
	defer f.Release()
	step <- struct{}{}
	f.Header(context.Background())
	r := f.NewReader(context.Background())
	if r.Size() != int64(len(data)) {
		t.Fatalf("Size %d; want %d", r.Size(), len(data))
	}
	// Seek past what has arrived, then read: the read returns once the
	// bytes are there.
	r.Seek(250000, io.SeekStart)
	got := make(chan []byte)
	go func() { b, _ := io.ReadAll(r); got <- b }()
	step <- struct{}{}
	step <- struct{}{}
	if b := <-got; !bytes.Equal(b, data[250000:]) {
		t.Fatalf("read %d bytes from 250000; want %d", len(b), len(data)-250000)
	}
	// A reader whose context ends stops waiting.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.NewReader(ctx).Read(make([]byte, 10)); err != nil {
		// All bytes are in by now, so the read may succeed; it must not
		// hang either way.
		t.Logf("read with cancelled context: %v", err)
	}
}

func TestJoinCounts(t *testing.T) {
	g := fill.NewGroup(memory.New(), fill.Options{})
	block := make(chan struct{})
	src := &memSource{data: []byte("hello"), feed: func(w *io.PipeWriter, data []byte) {
		<-block
		w.Write(data)
		w.Close()
	}}
	var fills []*fill.Fill
	for i := range 10 {
		f, joined := g.Miss("example.com/h", src.source())
		if joined != (i > 0) {
			t.Fatalf("Get %d joined = %v", i, joined)
		}
		fills = append(fills, f)
	}
	if g.InProgress() != 1 {
		t.Fatalf("InProgress = %d; want 1", g.InProgress())
	}
	close(block)
	for _, f := range fills {
		if got := readAll(t, f); string(got) != "hello" {
			t.Fatalf("got %q", got)
		}
		f.Release()
	}
	if err := g.Wait(context.Background()); err != nil || g.InProgress() != 0 || src.calls.Load() != 1 {
		t.Fatalf("after the fill: Wait %v, InProgress %d, origin calls %d", err, g.InProgress(), src.calls.Load())
	}
}

// BenchmarkFanOut streams one fill of a 64 MiB object from an in-memory
// origin to N readers at once, through the local-disk backend (the spool is
// the object's temporary file, read back from the page cache).
func BenchmarkFanOut(b *testing.B) {
	data := testutil.Payload(7, 64<<20)
	for _, readers := range []int{1, 20, 100} {
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			store, err := file.New(b.TempDir(), file.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			b.SetBytes(int64(len(data)) * int64(readers))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				g := fill.NewGroup(store, fill.Options{})
				src := &memSource{data: data, feed: func(w *io.PipeWriter, data []byte) {
					for off := 0; off < len(data); off += 256 << 10 {
						w.Write(data[off:min(off+256<<10, len(data))])
					}
					w.Close()
				}}
				key := "example.com/" + strconv.Itoa(i)
				var wg sync.WaitGroup
				for range readers {
					f, _ := g.Miss(key, src.source())
					wg.Go(func() {
						defer f.Release()
						f.Header(context.Background())
						n, err := io.CopyBuffer(io.Discard, f.NewReader(context.Background()), make([]byte, 32<<10))
						if err != nil || n != int64(len(data)) {
							b.Errorf("reader got %d bytes, %v", n, err)
						}
					})
				}
				wg.Wait()
			}
		})
	}
}
