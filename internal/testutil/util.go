package testutil

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

// Gate is a one-time barrier: Wait blocks until Open. A test's origin
// hooks wait on gates to hold a response at a chosen point.
type Gate struct {
	ch   chan struct{}
	once sync.Once
}

// NewGate returns a closed gate that is opened when the test ends, so no
// hook stays blocked.
func NewGate(t testing.TB) *Gate {
	g := &Gate{ch: make(chan struct{})}
	t.Cleanup(g.Open)
	return g
}

// Open lets every waiter through; later calls do nothing.
func (g *Gate) Open() { g.once.Do(func() { close(g.ch) }) }

// Wait blocks until the gate is open.
func (g *Gate) Wait() { <-g.ch }

// Chan returns a channel closed when the gate opens.
func (g *Gate) Chan() <-chan struct{} { return g.ch }

// IsOpen reports whether Open was called.
func (g *Gate) IsOpen() bool {
	select {
	case <-g.ch:
		return true
	default:
		return false
	}
}

// CountFiles counts the regular files under dir.
func CountFiles(t testing.TB, dir string) int {
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

// ReadFiles returns the contents of the regular files under dir, by path.
func ReadFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("reading %s: %v", p, err)
			}
			out[p] = b
		}
		return nil
	})
	return out
}

// DirBytes sums the sizes of the regular files under dir.
func DirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// RawStatus writes req verbatim on a new connection to addr and returns
// the response's status code, or 0 when the server closed the connection
// without one. The request is written concurrently: a server may answer
// (431, say) before reading all of it.
func RawStatus(t testing.TB, addr, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go c.Write([]byte(req))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// GetMany starts n concurrent GETs, the i-th of url(i), with client, and
// returns a function that waits for them all. It checks each one against
// want, the SHA-256 of the expected body, and reports every client whose
// request failed, whose status was not 200 or whose body differs.
func GetMany(t testing.TB, client *http.Client, n int, url func(i int) string, want string) (wait func()) {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			resp, err := client.Get(url(i))
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			// Hashed as it streams in: many large bodies read whole into
			// growing buffers cost seconds under the race detector.
			h := sha256.New()
			_, err = io.Copy(h, resp.Body)
			got := hex.EncodeToString(h.Sum(nil))
			switch {
			case err != nil || resp.StatusCode != http.StatusOK:
				errs[i] = fmt.Errorf("status %d, %v", resp.StatusCode, err)
			case got != want:
				errs[i] = fmt.Errorf("body sha256 %s; want %s", got, want)
			}
		})
	}
	return func() {
		t.Helper()
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		}
	}
}

// PeakHeap runs f and returns the largest growth of live heap objects over
// the value before f, sampled every millisecond.
func PeakHeap(f func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var peak uint64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, read())
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	return max(peak, base) - base
}
