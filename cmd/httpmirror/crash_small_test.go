package main_test

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// objectFiles returns the files under the cache's objects directory: the
// stored objects (named by a hash: 64 characters) and any other file.
func objectFiles(t *testing.T, cache string) (objects, others []string) {
	t.Helper()
	filepath.WalkDir(filepath.Join(cache, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if len(d.Name()) == 64 {
				objects = append(objects, p)
			} else {
				others = append(others, p)
			}
		}
		return nil
	})
	return objects, others
}

// waitObjects waits (up to 30s) until the cache holds n object files and
// nothing else beside them, and returns them.
func waitObjects(t *testing.T, cache string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		objs, others := objectFiles(t, cache)
		if len(objs) == n && len(others) == 0 {
			return objs
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache holds %d objects and %q after 30s; want %d objects and nothing else", len(objs), others, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// getWant fetches url, failing the test unless the answer is want with
// status 200.
func getWant(t *testing.T, url string, want []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || testutil.SHA256(body) != testutil.SHA256(want) {
		t.Fatalf("GET %s: status %d, %d bytes, err %v; want the %d bytes of the object", url, resp.StatusCode, len(body), err, len(want))
	}
}

// A mirror killed with SIGKILL during a burst of misses of small files
// (whose bodies wait in memory until their commits) leaves no file a
// restarted mirror would serve wrongly, and nothing half-made beside the
// objects once it has checked what the dead process was changing: every
// file comes back whole, from the cache or fetched again.
func TestCrashDuringSmallFills(t *testing.T) {
	o := testutil.NewOrigin(t)
	const n = 200
	files := make([][]byte, n)
	for i := range files {
		files[i] = testutil.Payload(uint64(i), 16<<10)
		o.Put(fmt.Sprintf("/s/%d", i), files[i])
	}
	cache := t.TempDir()
	args := mirrorArgs(t, o, cache)
	p := start(t, args...)

	// Eight clients take the files in turn; the mirror is killed once a
	// quarter of them have arrived, with commits in flight.
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	var count atomic.Int64
	quarter := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				resp, err := http.Get(p.url(o, fmt.Sprintf("/s/%d", i)))
				if err != nil {
					continue // the mirror is gone
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 && count.Add(1) == n/4 {
					close(quarter)
				}
			}
		})
	}
	select {
	case <-quarter:
	case <-p.done:
		t.Fatalf("the mirror exited during the burst: %v", p.err)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	wg.Wait()

	p2 := start(t, args...)
	for i := range n {
		getWant(t, p2.url(o, fmt.Sprintf("/s/%d", i)), files[i])
	}
	gets := map[string]int{}
	for _, r := range o.Received() {
		gets[r.URL.Path]++
	}
	for path, g := range gets {
		if g > 2 {
			t.Errorf("origin saw %d GETs of %s; want at most 2 (before the crash and after)", g, path)
		}
	}
	// Every file is stored once the fills are done, and nothing else is
	// left beside them.
	waitObjects(t, cache, n)
}

// What a power cut leaves of files whose writes were lost (cut short, or
// read back as zeros) is never served after the restart: the mirror
// fetches those objects again and serves the right bytes.
func TestLostWriteAfterCommit(t *testing.T) {
	o := testutil.NewOrigin(t)
	small := testutil.Payload(1, 16<<10)
	large := testutil.Payload(2, 300<<10)
	o.Put("/small.bin", small)
	o.Put("/large.bin", large)
	cache := t.TempDir()
	args := mirrorArgs(t, o, cache)
	p := start(t, args...)
	getWant(t, p.url(o, "/small.bin"), small)
	smallFile := waitObjects(t, cache, 1)[0]
	getWant(t, p.url(o, "/large.bin"), large)
	var largeFile string
	for _, f := range waitObjects(t, cache, 2) {
		if f != smallFile {
			largeFile = f
		}
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done

	// The small file reads back as zeros, the large one is cut short.
	fi, err := os.Stat(smallFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(smallFile, make([]byte, fi.Size()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(largeFile, int64(len(large))/2); err != nil {
		t.Fatal(err)
	}

	p2 := start(t, args...)
	getWant(t, p2.url(o, "/small.bin"), small)
	getWant(t, p2.url(o, "/large.bin"), large)
	if g := o.Gets.Load(); g != 4 {
		t.Errorf("origin saw %d GETs; want 4 (each file before the crash and again after)", g)
	}
}
