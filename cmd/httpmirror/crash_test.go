package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// A mirror killed with SIGKILL in the middle of a fill leaves nothing a
// restarted mirror would serve: the next request refetches the object and
// returns the right bytes.
func TestCrashDuringFill(t *testing.T) {
	o := testutil.NewOrigin(t)
	data := testutil.Payload(2, 8<<20)
	o.Put("/big.bin", data)
	release := testutil.NewGate(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if o.Gets.Load() > 1 {
			return false // after the restart: serve normally
		}
		// First fill: half the body, then stall until the test is done
		// with the crashed process.
		w.Header().Set("Content-Length", fmt.Sprint(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		w.Write(f.Data[:len(f.Data)/2])
		w.(http.Flusher).Flush()
		release.Wait()
		return true
	})

	cache := t.TempDir()
	args := mirrorArgs(t, o, cache)
	p := start(t, args...)
	resp, err := http.Get(p.url(o, "/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	// Once a megabyte has come through, the fill is writing its temporary
	// file.
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CountFiles(t, filepath.Join(cache, "tmp")); n == 0 {
		t.Fatalf("no temporary file during the fill")
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	resp.Body.Close()
	release.Open()

	if n := testutil.CountFiles(t, filepath.Join(cache, "objects")); n != 0 {
		t.Fatalf("%d object files after the crash; want none", n)
	}

	p2 := start(t, args...)
	if n := testutil.CountFiles(t, filepath.Join(cache, "tmp")); n != 0 {
		t.Errorf("%d leftover temporary files after restart; want none", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p2.url(o, "/big.bin"), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || testutil.SHA256(body) != testutil.SHA256(data) {
		t.Fatalf("after restart: status %d, %d bytes, err %v; want the whole object", resp.StatusCode, len(body), err)
	}
	if n := o.Gets.Load(); n != 2 {
		t.Errorf("origin saw %d GETs; want 2 (the crashed fill and the refetch)", n)
	}
}

func TestSignalsStopCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := start(t, "--storage-url", "file://"+t.TempDir())
			p.cmd.Process.Signal(sig)
			p.waitExitOK(t)
		})
	}
}
