// Package testutil has the test origin that httpmirror's tests run against:
// an HTTPS server on 127.0.0.1 serving files with full HTTP semantics and
// recording every request it receives.
package testutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// File is one file an Origin serves.
type File struct {
	Data    []byte
	ETag    string
	ModTime time.Time
	Type    string
	Header  http.Header
}

// Hook may answer a request itself by returning true. f is the file at the
// request's path, or nil.
type Hook func(w http.ResponseWriter, r *http.Request, f *File) bool

// Origin is an HTTPS origin on 127.0.0.1.
type Origin struct {
	*httptest.Server

	mu       sync.Mutex
	files    map[string]*File
	requests []*http.Request
	hook     Hook

	// Gets and Heads count the GET and HEAD requests received.
	Gets  atomic.Int64
	Heads atomic.Int64
	// BodyBytes counts the response body bytes sent.
	BodyBytes atomic.Int64
}

// countingWriter counts the body bytes of a response.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countingWriter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

// NewOrigin starts an origin that is closed when the test ends.
func NewOrigin(t testing.TB) *Origin {
	t.Helper()
	o := &Origin{files: map[string]*File{}}
	o.Server = httptest.NewUnstartedServer(http.HandlerFunc(o.serve))
	// Tests provoke failed handshakes and aborted responses on purpose.
	o.Server.Config.ErrorLog = log.New(io.Discard, "", 0)
	o.Server.StartTLS()
	t.Cleanup(o.Close)
	return o
}

func (o *Origin) serve(rw http.ResponseWriter, r *http.Request) {
	w := countingWriter{rw, &o.BodyBytes}
	switch r.Method {
	case http.MethodGet:
		o.Gets.Add(1)
	case http.MethodHead:
		o.Heads.Add(1)
	}
	o.mu.Lock()
	o.requests = append(o.requests, r.Clone(context.Background()))
	f := o.files[r.URL.Path]
	hook := o.hook
	o.mu.Unlock()
	if hook != nil && hook(w, r, f) {
		return
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	ServeFile(w, r, f)
}

// ServeFile answers r with f, with Range, conditional requests and HEAD.
func ServeFile(w http.ResponseWriter, r *http.Request, f *File) {
	for k, v := range f.Header {
		w.Header()[k] = v
	}
	if f.ETag != "" {
		w.Header().Set("ETag", f.ETag)
	}
	if f.Type != "" {
		w.Header().Set("Content-Type", f.Type)
	}
	http.ServeContent(w, r, "", f.ModTime, bytes.NewReader(f.Data))
}

// Put makes the origin serve data at path, with a strong ETag derived from
// the content, a fixed modification time and type
// application/octet-stream. The returned File may be adjusted before the
// first request for it.
func (o *Origin) Put(path string, data []byte) *File {
	f := &File{
		Data:    data,
		ETag:    `"` + SHA256(data)[:16] + `"`,
		ModTime: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Type:    "application/octet-stream",
	}
	o.mu.Lock()
	o.files[path] = f
	o.mu.Unlock()
	return f
}

// SetHook installs h for the following requests.
func (o *Origin) SetHook(h Hook) {
	o.mu.Lock()
	o.hook = h
	o.mu.Unlock()
}

// Received returns clones of the requests the origin got.
func (o *Origin) Received() []*http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*http.Request(nil), o.requests...)
}

// HostPort is the origin's address, as a mirror path segment.
func (o *Origin) HostPort() string { return strings.TrimPrefix(o.URL, "https://") }

// CertPool trusts the origin's certificate.
func (o *Origin) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(o.Certificate())
	return p
}

// WriteCA writes the origin's certificate as PEM into dir and returns the
// file's path.
func (o *Origin) WriteCA(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "origin-ca.pem")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.Certificate().Raw})
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// SHA256 returns the hex SHA-256 of b.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Payload returns n deterministic pseudo-random bytes: the same for the
// same seed, and Payload(seed, m) is a prefix of Payload(seed, n) for m < n.
// ChaCha8 fills the slice a block at a time; a loop that stores each byte
// costs a race-detector check per byte, seconds for the larger objects the
// tests use under -race.
func Payload(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// CheckFetchedOnce checks that the origin sent each byte of the file at
// path (of size bytes) at most once, whether the mirror fetched it over one
// connection or in parallel segments: exactly one first GET, the one
// without If-Range for the whole file or from its first byte (its first
// segment only), and ranged GETs whose ranges do not overlap each other or the first's.
// It returns the number of ranged GETs besides the first.
func (o *Origin) CheckFetchedOnce(t testing.TB, path string, size int64) int {
	t.Helper()
	first, ranged := 0, 0
	var ranges [][2]int64
	for _, r := range o.Received() {
		if r.Method != http.MethodGet || r.URL.Path != path {
			continue
		}
		rg := r.Header.Get("Range")
		if r.Header.Get("If-Range") == "" && (rg == "" || strings.HasPrefix(rg, "bytes=0-")) {
			first++
		} else {
			ranged++
		}
		if rg == "" {
			continue
		}
		var a, b int64
		if _, err := fmt.Sscanf(rg, "bytes=%d-%d", &a, &b); err != nil || a > b || a >= size {
			t.Errorf("GET %s with Range %q; want bytes=A-B within the file", path, rg)
			continue
		}
		b = min(b, size-1) // the origin answers the part that exists
		for _, c := range ranges {
			if a <= c[1] && c[0] <= b {
				t.Errorf("GET %s ranges %d-%d and %d-%d overlap: bytes fetched twice", path, a, b, c[0], c[1])
			}
		}
		ranges = append(ranges, [2]int64{a, b})
	}
	if first != 1 {
		t.Errorf("origin saw %d first GETs (without If-Range) of %s; want 1", first, path)
	}
	return ranged
}

// Throttled returns a hook that serves every file like ServeFile, but
// sends each response's body at most rate bytes per second, as origins
// (CDNs, object stores) that cap each connection do. done, when closed,
// makes the remaining responses go at full speed.
func Throttled(rate int64, done <-chan struct{}) Hook {
	return func(w http.ResponseWriter, r *http.Request, f *File) bool {
		if f == nil {
			return false
		}
		ServeFile(&throttledWriter{ResponseWriter: w, rate: rate, start: time.Now(), done: done}, r, f)
		return true
	}
}

type throttledWriter struct {
	http.ResponseWriter
	rate  int64
	start time.Time
	sent  int64
	done  <-chan struct{}
}

// Write sends p in slices of a fiftieth of a second's worth (64 KiB at
// most), pausing so the average stays at the rate: a rate measured over a
// fraction of a second is about the rate.
func (t *throttledWriter) Write(p []byte) (int, error) {
	slice := min(max(t.rate/50, 1), 64<<10)
	var n int
	for len(p) > 0 {
		m := int(min(int64(len(p)), slice))
		k, err := t.ResponseWriter.Write(p[:m])
		n += k
		t.sent += int64(k)
		if err != nil {
			return n, err
		}
		t.ResponseWriter.(http.Flusher).Flush()
		p = p[m:]
		if due := t.start.Add(time.Duration(float64(t.sent) / float64(t.rate) * float64(time.Second))); time.Until(due) > 0 {
			select {
			case <-time.After(time.Until(due)):
			case <-t.done:
			}
		}
	}
	return n, nil
}
