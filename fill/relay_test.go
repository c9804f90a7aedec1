package fill_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// relayMark marks the test's relayed responses (another party's copy).
const relayMark = "X-Test-Relayed"

var relayOpts = fill.Options{Relayed: func(resp *http.Response) bool { return resp.Header.Get(relayMark) != "" }}

// step is one answer of a scripted source: the object's bytes from the
// request's Range start, cut after cut bytes (with an error) when cut is
// not negative, marked relayed or not.
type step struct {
	relayed bool
	cut     int
}

// scripted answers the fill's requests with its steps in order, recording
// the Range and If-Range of each.
type scripted struct {
	data  []byte
	steps []step

	mu   sync.Mutex
	asks []string
}

func (s *scripted) source() fill.Source {
	return fill.Source{URL: "mem://object", Get: func(ctx context.Context, h http.Header) (*http.Response, error) {
		s.mu.Lock()
		i := len(s.asks)
		s.asks = append(s.asks, h.Get("Range")+" "+h.Get("If-Range"))
		s.mu.Unlock()
		if i >= len(s.steps) {
			return nil, errors.New("no more answers")
		}
		st := s.steps[i]
		var from int64
		resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Etag": {`"v1"`}}}
		if r := h.Get("Range"); r != "" {
			fmt.Sscanf(r, "bytes=%d-", &from)
			resp.StatusCode = http.StatusPartialContent
			resp.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(s.data)-1, len(s.data)))
		}
		if st.relayed {
			resp.Header.Set(relayMark, "1")
		}
		rest := s.data[from:]
		resp.ContentLength = int64(len(rest))
		if st.cut < 0 {
			resp.Body = io.NopCloser(bytes.NewReader(rest))
			return resp, nil
		}
		pr, pw := io.Pipe()
		go func() {
			pw.Write(rest[:st.cut])
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}()
		resp.Body = pr
		return resp, nil
	}}
}

func (s *scripted) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asks...)
}

// A relayed body that breaks is resumed even without Retry; once the
// origin itself answers the resume (the fill took the fetch over), the
// object is stored whole, the bytes that arrived before included, with
// its SHA-256.
func TestRelayedBodyTakenOverIsStored(t *testing.T) {
	store := memory.New()
	g := fill.NewGroup(store, relayOpts)
	data := testutil.Payload(7, 1<<20)
	src := &scripted{data: data, steps: []step{{relayed: true, cut: 300 << 10}, {relayed: false, cut: -1}}}
	f, _ := g.Miss("example.com/relayed", src.source())
	defer f.Release()
	if got := readAll(t, f); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes; want the object's %d", len(got), len(data))
	}
	<-f.Done()
	if f.Err() != nil || !f.Stored() {
		t.Fatalf("Err %v, Stored %v; want nil, true", f.Err(), f.Stored())
	}
	want := []string{" ", fmt.Sprintf("bytes=%d- \"v1\"", 300<<10)}
	if got := src.requests(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests %q; want %q", got, want)
	}
	obj, err := store.Open(context.Background(), "example.com/relayed")
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, _ := io.ReadAll(obj)
	if !bytes.Equal(b, data) {
		t.Errorf("stored %d bytes; want the object", len(b))
	}
	sum := sha256.Sum256(data)
	if got := obj.Info().Header.Get(policy.DigestHeader); got != policy.FormatSHA256(sum[:]) {
		t.Errorf("stored digest %q; want %q", got, policy.FormatSHA256(sum[:]))
	}
}

// Relayed bodies are resumed as long as each brings bytes, and are never
// stored; a relayed resume that brings nothing counts against Retry.
func TestRelayedBodiesResumedWhileTheyProgress(t *testing.T) {
	data := testutil.Payload(8, 256<<10)
	for _, tc := range []struct {
		name   string
		steps  []step
		wantOK bool
	}{
		{"relayed to the end", []step{{true, 1000}, {true, 5000}, {true, -1}}, true},
		{"a relayed resume brings nothing", []step{{true, 1000}, {true, 0}, {true, -1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := memory.New()
			g := fill.NewGroup(store, relayOpts)
			src := &scripted{data: data, steps: tc.steps}
			f, _ := g.Miss("example.com/r", src.source())
			defer f.Release()
			got, _ := io.ReadAll(f.NewReader(context.Background()))
			<-f.Done()
			if ok := f.Err() == nil && bytes.Equal(got, data); ok != tc.wantOK {
				t.Fatalf("whole %v (err %v, %d bytes); want %v", ok, f.Err(), len(got), tc.wantOK)
			}
			if f.Stored() {
				t.Errorf("a relayed object was stored")
			}
			if _, err := store.Stat(context.Background(), "example.com/r"); err == nil {
				t.Errorf("the store holds the relayed object")
			}
		})
	}
}

// brittle is a store whose writers fail once they took limit bytes.
type brittle struct {
	storage.Backend
	limit int64
}

func (b brittle) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	w, err := b.Backend.Create(ctx, key, info)
	if err != nil {
		return nil, err
	}
	return &brittleWriter{Writer: w, left: b.limit}, nil
}

type brittleWriter struct {
	storage.Writer
	left int64
}

func (w *brittleWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, errors.New("disk on fire")
	}
	w.left -= int64(len(p))
	return w.Writer.Write(p)
}

// A fill that takes a relayed fetch over and cannot store the object
// (the store refuses it, or fails while taking the prefix) still serves
// every byte to its readers, and stores nothing.
func TestRelayedTakeoverStoreFails(t *testing.T) {
	data := testutil.Payload(9, 1<<20)
	for name, store := range map[string]storage.Backend{
		"refused":        failing{memory.New()},
		"fails mid-feed": brittle{memory.New(), 100 << 10},
	} {
		t.Run(name, func(t *testing.T) {
			g := fill.NewGroup(store, relayOpts)
			src := &scripted{data: data, steps: []step{{relayed: true, cut: 300 << 10}, {relayed: false, cut: -1}}}
			f, _ := g.Miss("example.com/s", src.source())
			defer f.Release()
			if got := readAll(t, f); !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes; want the object's %d", len(got), len(data))
			}
			<-f.Done()
			if f.Err() != nil || f.Stored() {
				t.Fatalf("Err %v, Stored %v; want nil, false", f.Err(), f.Stored())
			}
			if _, err := store.Stat(context.Background(), "example.com/s"); err == nil {
				t.Errorf("the store holds the object")
			}
		})
	}
}
