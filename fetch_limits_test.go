package httpmirror_test

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/prometheus/client_golang/prometheus"
)

// --max-object-size: a file announced larger than the bound is proxied to
// its client whole and never stored; one without a length is cut off past
// the bound.
func TestMaxObjectSize(t *testing.T) {
	o := newOrigin(t)
	big := payload(94, 3<<20)
	small := payload(95, 100<<10)
	o.Put("/big.bin", big)
	o.Put("/small.bin", small)
	o.Put("/stream.bin", big)
	reg := prometheus.NewRegistry()
	m := newMirror(t, o, func(h *httpmirror.MirrorHandler) {
		h.MaxObjectSize = 1 << 20
		h.Metrics = httpmirror.NewMetrics(reg)
	})
	for i := range 2 {
		r := get(t, m.url(o, "/big.bin"))
		if r.StatusCode != 200 || r.err != nil || sha(r.body) != sha(big) {
			t.Fatalf("large file, request %d: status %d, %d bytes, err %v; want the whole file", i, r.StatusCode, len(r.body), r.err)
		}
	}
	if r := get(t, m.url(o, "/small.bin")); r.StatusCode != 200 || sha(r.body) != sha(small) {
		t.Fatalf("small file: status %d", r.StatusCode)
	}
	waitFills(t, m)
	if n := countFiles(t, m.root+"/objects"); n != 1 {
		t.Fatalf("%d objects stored; want 1 (the small file only)", n)
	}
	if got := gathered(t, reg, "httpmirror_fills_total", map[string]string{"result": "too_large"}); got != 2 {
		t.Errorf("fills_total{result=too_large} = %v; want 2 (one per request of the large file)", got)
	}
	// No length: chunked, cut off past the bound.
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path != "/stream.bin" {
			return false
		}
		for off := 0; off < len(f.Data); off += 64 << 10 {
			w.Write(f.Data[off : off+64<<10])
			w.(http.Flusher).Flush()
		}
		return true
	})
	r := get(t, m.url(o, "/stream.bin"))
	if r.err == nil {
		t.Fatalf("a body without length past the bound ended cleanly after %d bytes; want an aborted transfer", len(r.body))
	}
	waitFills(t, m)
	if n := countFiles(t, m.root+"/objects"); n != 1 {
		t.Fatalf("%d objects stored; want 1", n)
	}
}

// A fill whose object will not be stored stops when its last client
// leaves: nobody would get the bytes, and each such request could
// otherwise pull a whole large file and fill the temporary disk. The
// origin sees its request cancelled without sending the rest.
func TestUnstoredFillStopsWhenClientsLeave(t *testing.T) {
	for _, tc := range []struct {
		name      string
		header    http.Header
		cacheSize int64
	}{
		{"no-store", http.Header{"Cache-Control": {"no-store"}}, 0},
		{"private", http.Header{"Cache-Control": {"private"}}, 0},
		{"over the cache size", nil, 256 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t)
			data := payload(93, 4<<20)
			o.Put("/big.bin", data).Header = tc.header
			cancelled := make(chan struct{})
			never := newGate(t)
			o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
				for k, v := range f.Header {
					w.Header()[k] = v
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
				w.Write(f.Data[:64<<10])
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					close(cancelled)
				case <-never.Chan():
					w.Write(f.Data[64<<10:])
				}
				return true
			})
			store, err := file.New(t.TempDir(), file.Options{MaxSize: tc.cacheSize})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			reg := prometheus.NewRegistry()
			m := newMirror(t, o, withStore(store), func(h *httpmirror.MirrorHandler) { h.Metrics = httpmirror.NewMetrics(reg) })
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", m.url(o, "/big.bin"), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			cancel() // the only client leaves
			resp.Body.Close()
			select {
			case <-cancelled:
			case <-time.After(20 * time.Second):
				t.Fatal("the origin was still asked for the body 20s after the last client left")
			}
			waitFills(t, m)
			if got := gathered(t, reg, "httpmirror_fills_total", map[string]string{"result": "abandoned"}); got != 1 {
				t.Errorf("fills_total{result=abandoned} = %v; want 1", got)
			}
		})
	}
}
