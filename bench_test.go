package httpmirror_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/httpmirror/httpmirror"
)

// discardWriter is a ResponseWriter that throws the body away, so the
// benchmark measures the handler, not a client.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(io.Discard, struct{ io.Reader }{r})
}

// BenchmarkHitHandler measures the hit path inside the handler: resolve,
// open the stored object, answer with ServeContent. allocs/op is what one
// hit costs beyond net/http's own per-request work.
func BenchmarkHitHandler(b *testing.B) {
	for _, size := range []int{4 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			o := newOrigin(b)
			o.Put("/f", payload(1, size))
			m := newBenchMirror(b, o)
			req := httptest.NewRequest("GET", "/"+o.HostPort()+"/f", nil)
			w := &discardWriter{h: http.Header{}}
			m.h.ServeHTTP(w, req) // fill
			if w.code != 0 && w.code != 200 {
				b.Fatalf("warm-up status %d", w.code)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w.code = 0
				clear(w.h)
				m.h.ServeHTTP(w, req)
			}
			if w.code != 0 && w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
			if o.Gets.Load() != 1 {
				b.Fatalf("origin GETs %d; want 1", o.Gets.Load())
			}
		})
	}
}

// BenchmarkHitLoopback measures whole hits over a loopback TCP connection,
// where the body goes through sendfile.
func BenchmarkHitLoopback(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			o := newOrigin(b)
			o.Put("/f", payload(1, size))
			m := newBenchMirror(b, o)
			srv := httptest.NewServer(m.h)
			defer srv.Close()
			u := srv.URL + "/" + o.HostPort() + "/f"
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			fetch := func() {
				resp, err := client.Get(u)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != int64(size) {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
				}
			}
			fetch()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				fetch()
			}
		})
	}
}

// newBenchMirror is newMirror without logging.
func newBenchMirror(b *testing.B, o *testOrigin) *testMirror {
	b.Helper()
	return newMirror(b, o, func(m *httpmirror.MirrorHandler) { m.Logger = nil })
}
