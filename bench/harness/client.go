package main

// The measuring clients: plain net/http clients that time the first and last
// body byte of each download and check what they received.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// object is one file the origin serves, as the clients expect it.
type object struct {
	name string
	size int64
	path string
	// samples holds the expected bytes at sampleStep intervals (and at the
	// end), so every download is checked at almost no cost.
	samples map[int64][]byte
}

const (
	sampleStep = 1 << 20
	sampleLen  = 64
)

// newObject describes the object called name of size bytes, reading its
// samples from the data file.
func newObject(data *os.File, name string, size int64) (*object, error) {
	o := &object{name: name, size: size, path: objectPath(name, size), samples: map[int64][]byte{}}
	start := objectStart(name)
	add := func(off int64) error {
		n := min(sampleLen, size-off)
		if n <= 0 {
			return nil
		}
		b := make([]byte, n)
		if _, err := data.ReadAt(b, start+off); err != nil {
			return err
		}
		o.samples[off] = b
		return nil
	}
	for off := int64(0); off < size; off += sampleStep {
		if err := add(off); err != nil {
			return nil, err
		}
	}
	if err := add(max(0, size-sampleLen)); err != nil {
		return nil, err
	}
	return o, nil
}

// checkChunk compares the part of p (which holds the object's bytes from
// off) that overlaps the samples.
func (o *object) checkChunk(p []byte, off int64) error {
	end := off + int64(len(p))
	first := off - off%sampleStep
	for s := first; s < end; s += sampleStep {
		if err := o.checkSample(p, off, s); err != nil {
			return err
		}
	}
	if last := max(0, o.size-sampleLen); last%sampleStep != 0 && last+sampleLen > off && last < end {
		return o.checkSample(p, off, last)
	}
	return nil
}

func (o *object) checkSample(p []byte, off, s int64) error {
	want, ok := o.samples[s]
	if !ok {
		return nil
	}
	lo, hi := max(s, off), min(s+int64(len(want)), off+int64(len(p)))
	if lo >= hi {
		return nil
	}
	if !bytes.Equal(p[lo-off:hi-off], want[lo-s:hi-s]) {
		return fmt.Errorf("wrong bytes at offset %d", lo)
	}
	return nil
}

// verifyFull compares a whole body with the data file (used outside the
// timed runs).
func verifyFull(data *os.File, o *object, body io.Reader) error {
	start := objectStart(o.name)
	got := make([]byte, 1<<20)
	want := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(body, got)
		if n > 0 {
			if off+int64(n) > o.size {
				return fmt.Errorf("body longer than %d bytes", o.size)
			}
			if _, err := data.ReadAt(want[:n], start+off); err != nil {
				return err
			}
			if !bytes.Equal(got[:n], want[:n]) {
				return fmt.Errorf("wrong bytes in [%d, %d)", off, off+int64(n))
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if off != o.size {
		return fmt.Errorf("got %d bytes; want %d", off, o.size)
	}
	return nil
}

// result is one client's download.
type result struct {
	status int
	bytes  int64
	ttfb   time.Duration // request sent → first body byte
	ttlb   time.Duration // request sent → last body byte
	cache  string        // X-Cache-Status (nginx only)
	err    error
}

// newClient returns a client with a connection pool of its own.
func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		ReadBufferSize:      64 << 10,
	}}
}

// newOriginClient is newClient for HTTPS straight to the origin.
func newOriginClient(roots *x509.CertPool) *http.Client {
	c := newClient(1)
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	return c
}

// fetch downloads o from base, timing it and checking length and samples.
func fetch(ctx context.Context, c *http.Client, base string, o *object, limit time.Duration) result {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var r result
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+o.path, nil)
	if err != nil {
		r.err = err
		return r
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	r.status = resp.StatusCode
	r.cache = resp.Header.Get("X-Cache-Status")
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		r.err = fmt.Errorf("status %d", resp.StatusCode)
		return r
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if r.bytes == 0 {
				r.ttfb = time.Since(start)
			}
			if cerr := o.checkChunk(buf[:n], r.bytes); cerr != nil && r.err == nil {
				r.err = cerr
			}
			r.bytes += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			r.err = err
			break
		}
	}
	r.ttlb = time.Since(start)
	if r.err == nil && r.bytes != o.size {
		r.err = fmt.Errorf("got %d bytes; want %d", r.bytes, o.size)
	}
	return r
}

// burst starts n clients at the same instant, each on a connection of its
// own that is already open (warmed with a request for warm), and returns
// their results and the wall time until the last one finished.
func burst(ctx context.Context, base string, n int, o, warm *object, limit time.Duration) ([]result, time.Duration, error) {
	clients := make([]*http.Client, n)
	for i := range clients {
		clients[i] = newClient(1)
		if r := fetch(ctx, clients[i], base, warm, 10*time.Second); r.err != nil {
			return nil, 0, fmt.Errorf("opening connection %d: %w", i, r.err)
		}
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	results := make([]result, n)
	var ready, wg sync.WaitGroup
	gate := make(chan struct{})
	ready.Add(n)
	wg.Add(n)
	for i := range clients {
		go func() {
			defer wg.Done()
			ready.Done()
			<-gate
			results[i] = fetch(ctx, clients[i], base, o, limit)
		}()
	}
	ready.Wait()
	start := time.Now()
	close(gate)
	wg.Wait()
	return results, time.Since(start), nil
}

// firstErr returns the first failed result's error, with how many failed.
func firstErr(rs []result) error {
	var first error
	n := 0
	for _, r := range rs {
		if r.err != nil {
			n++
			if first == nil {
				first = r.err
			}
		}
	}
	if first == nil {
		return nil
	}
	return fmt.Errorf("%d of %d downloads failed, first: %w", n, len(rs), first)
}

// wrkResult is what one wrk run reported.
type wrkResult struct {
	rps     float64
	mibps   float64 // with runWrkScript only
	non2xx  int64
	sockErr string
	out     string
}

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+([0-9]+)`)
	wrkSock   = regexp.MustCompile(`Socket errors:[^\n]*`)
)

// runWrk runs wrk against url and parses its summary.
func runWrk(ctx context.Context, bin, url string, threads, conns int, d time.Duration) (wrkResult, error) {
	return runWrkArgs(ctx, bin, url, threads, conns, d)
}

// runWrkArgs is runWrk with more arguments for wrk.
func runWrkArgs(ctx context.Context, bin, url string, threads, conns int, d time.Duration, extra ...string) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := append([]string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns),
		"-d" + strconv.Itoa(secs) + "s", "--timeout", "10s"}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	out, err := cmd.CombinedOutput()
	var w wrkResult
	w.out = string(out)
	if err != nil {
		return w, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := wrkRPS.FindStringSubmatch(w.out)
	if m == nil {
		return w, errors.New("wrk printed no Requests/sec:\n" + w.out)
	}
	w.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkNon2xx.FindStringSubmatch(w.out); m != nil {
		w.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	w.sockErr = wrkSock.FindString(w.out)
	return w, nil
}
