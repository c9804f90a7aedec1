package file

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// The crash tests run a workload in a child process (this test binary,
// TestCrashChild) and kill it with SIGKILL at a chosen point of the
// index's work, or after some progress; then a new backend must start,
// serve only whole objects and, once its index is complete, list exactly
// the objects on disk with the right counters.

const (
	envDir   = "FILE_CRASH_DIR"
	envPoint = "FILE_CRASH_POINT"
	envAfter = "FILE_CRASH_AFTER"
	envWork  = "FILE_CRASH_WORK"
)

// crashLimit is the size limit of the evict workload: about 40 objects.
const crashLimit = 40 * 1700

// TestCrashChild is the child process of the crash tests; it does nothing
// in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envDir)
	if dir == "" {
		t.Skip("the child process of the crash tests")
	}
	point, work := os.Getenv(envPoint), os.Getenv(envWork)
	after, _ := strconv.Atoi(os.Getenv(envAfter))
	var hits atomic.Int64
	opts := Options{NoSync: true, testHook: func(p string) {
		if p == point && hits.Add(1) == int64(after) {
			fmt.Println("killed at", p)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}}
	if work == "evict" {
		opts.MaxSize = crashLimit
	}
	b, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	switch work {
	case "fill", "evict", "long":
		// Writers in parallel; the parent may also kill us at any time.
		var wg sync.WaitGroup
		var n atomic.Int64
		writers := 4
		if point != "" {
			writers = 1 // the last key announced is the one at the point
		}
		for w := range writers {
			wg.Go(func() {
				for i := range 3000 {
					key := fmt.Sprintf("example.com/%s/%d/%04d", work, w, i)
					if work == "long" { // the journal fills up quickly
						key += "/" + strings.Repeat("x", 1500)
					}
					fmt.Println("commit", key)
					if err := putKey(b, key); err == nil {
						fmt.Println("committed", key)
					} else if !errors.Is(err, storage.ErrNoSpace) {
						fmt.Println("error", err)
					}
					fmt.Println("progress", n.Add(1))
					if i%7 == 0 { // some hits, to move the order of use
						if o, err := b.Open(ctx, fmt.Sprintf("example.com/%s/%d/%04d", work, w, i/2)); err == nil {
							o.Close()
						}
					}
				}
			})
		}
		wg.Wait()
	case "purge":
		for {
			objs, _, err := b.List(ctx, "example.com/seed/", "", 10)
			if err != nil || len(objs) == 0 {
				break
			}
			for _, o := range objs {
				fmt.Println("delete", o.Key)
				if b.Delete(ctx, o.Key) == nil {
					fmt.Println("deleted", o.Key)
				}
			}
		}
	case "rebuild":
		b.WaitIndexed(ctx)
	case "hits":
		// Reads of the seeded objects, their uses sent to the index in
		// batches as the hot set does once a minute per object; killed
		// mid-way, at most the uses since the last batch are lost.
		b.WaitIndexed(ctx)
		keys := keysN("example.com/seed/", 10)
		for round := 1; round <= 100000; round++ {
			for _, k := range keys {
				if o, err := b.Open(ctx, k); err == nil {
					o.Close()
				}
			}
			fmt.Println("opened", round)
			if round%5 == 0 {
				for k, u := range b.ix.hotUses() {
					b.ix.st.touch(k, u.t, u.n)
				}
				b.ix.st.sync()
				fmt.Println("batched", round)
			}
			fmt.Println("progress", round)
		}
	}
	fmt.Println("finished without reaching", point)
	os.Exit(3)
}

// crashChild runs the child on dir and returns its output lines once it
// was killed; with killAfter > 0, the parent kills it after that many
// progress lines.
func crashChild(t *testing.T, dir, work, point string, after, killAfter int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envDir+"="+dir, envWork+"="+work, envPoint+"="+point, envAfter+"="+strconv.Itoa(after))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		lines = append(lines, line)
		if n, ok := strings.CutPrefix(line, "progress "); ok && killAfter > 0 {
			if i, _ := strconv.Atoi(n); i == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &ee) {
		t.Fatalf("child: %v (deadline: %v); output %q", err, ctx.Err(), tail(lines))
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed: %v; output %q", err, tail(lines))
	}
	return lines
}

func tail(lines []string) []string {
	return lines[max(0, len(lines)-5):]
}

// last returns the last line's argument after prefix.
func last(lines []string, prefix string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if k, ok := strings.CutPrefix(lines[i], prefix+" "); ok {
			return k
		}
	}
	return ""
}

func TestCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	seeded := keysN("example.com/seed/", 30)
	for _, c := range []struct {
		name, work, point string
		after             int
		// present says whether the key the child was working on when it
		// died must be stored afterwards (nil: no expectation).
		present *bool
		rebuild bool // the index is deleted before the child starts
		// leftover: the child leaves a half-made file beside the
		// objects, which the restart must remove.
		leftover bool
	}{
		{name: "fill: written beside the object, before the rename", work: "fill", point: "commit-written", after: 20, present: ptr(false), leftover: true},
		{name: "fill: written beside the object, index rebuilt", work: "fill", point: "commit-written", after: 20, present: ptr(false), leftover: true, rebuild: true},
		{name: "fill: journaled, before the rename", work: "fill", point: "commit-journaled", after: 20, present: ptr(false)},
		{name: "fill: renamed, before the index", work: "fill", point: "commit-renamed", after: 20, present: ptr(true)},
		{name: "fill: index transaction not committed", work: "fill", point: "apply-commit", after: 25},
		{name: "fill: index transaction committed", work: "fill", point: "apply-committed", after: 25},
		{name: "fill: journal started over", work: "long", point: "journal-rotated", after: 1},
		{name: "eviction: file removed, index not updated", work: "evict", point: "evict-removed", after: 15},
		{name: "eviction: index transaction not committed", work: "evict", point: "apply-commit", after: 80},
		{name: "purge: file removed, index not updated", work: "purge", point: "delete-removed", after: 12, present: ptr(false)},
		{name: "rebuild: during the walk", work: "rebuild", point: "walk", after: 5, rebuild: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			seed(t, dir, seeded)
			if c.rebuild && !c.leftover {
				os.Remove(filepath.Join(dir, dbName))
			}
			lines := crashChild(t, dir, c.work, c.point, c.after, 0)
			if last(lines, "killed at") != c.point {
				t.Fatalf("child not killed at %s: %q", c.point, tail(lines))
			}
			if c.leftover {
				if n := len(leftovers(t, dir)); n != 1 {
					t.Fatalf("%d half-made files beside the objects after the crash; want 1", n)
				}
				if c.rebuild {
					// As after a power cut: no index to trust.
					os.Remove(filepath.Join(dir, dbName))
				}
			}
			b, files := checkConsistent(t, dir, Options{MaxSize: limitFor(c.work)})
			if got := leftovers(t, dir); len(got) != 0 {
				t.Errorf("half-made files left beside the objects after the restart: %q", got)
			}
			checkReturned(t, lines, files, c.work != "evict")
			if c.present != nil {
				key := last(lines, "commit")
				if c.work == "purge" {
					key = last(lines, "delete")
				}
				if _, ok := files[key]; ok != *c.present {
					t.Errorf("%q stored after the crash: %v; want %v", key, ok, *c.present)
				}
			}
			if c.work == "evict" {
				if st := b.Stats(); st.Bytes > crashLimit {
					t.Errorf("Stats.Bytes = %d after the restart; limit %d", st.Bytes, crashLimit)
				}
			}
			// And once more, from the index the restart left.
			b.Close()
			checkConsistent(t, dir, Options{MaxSize: limitFor(c.work)})
		})
	}
}

// checkReturned checks that what the child's commits and deletes that
// returned did holds after the crash: every object committed is stored
// (unless evictions may have removed it since), every one deleted is gone.
func checkReturned(t *testing.T, lines []string, files map[string]int64, committed bool) {
	t.Helper()
	for _, line := range lines {
		if k, ok := strings.CutPrefix(line, "committed "); ok && committed {
			if _, ok := files[k]; !ok {
				t.Errorf("%q, whose commit returned, is not stored after the crash", k)
			}
		}
		if k, ok := strings.CutPrefix(line, "deleted "); ok {
			if _, ok := files[k]; ok {
				t.Errorf("%q, whose delete returned, is stored after the crash", k)
			}
		}
	}
}

func limitFor(work string) int64 {
	if work == "evict" {
		return crashLimit
	}
	return 0
}

func ptr[T any](v T) *T { return &v }

// leftovers returns the files beside the objects that are not object
// files: temporary files of commits.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	var found []string
	filepath.WalkDir(filepath.Join(dir, objectsDir), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !isHashName(d.Name()) {
			found = append(found, d.Name())
		}
		return nil
	})
	return found
}

// Killed at whatever point it reached, several writers filling and
// evicting at once leave a cache that restarts consistent.
func TestCrashDuringFills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, c := range []struct {
		work  string
		after int
	}{{"fill", 40}, {"fill", 250}, {"evict", 60}, {"evict", 300}} {
		t.Run(fmt.Sprintf("%s after %d", c.work, c.after), func(t *testing.T) {
			dir := t.TempDir()
			seed(t, dir, keysN("example.com/seed/", 10))
			lines := crashChild(t, dir, c.work, "", 0, c.after)
			b, files := checkConsistent(t, dir, Options{MaxSize: limitFor(c.work)})
			checkReturned(t, lines, files, c.work != "evict")
			b.Close()
			checkConsistent(t, dir, Options{MaxSize: limitFor(c.work)})
		})
	}
}

// Killed between two batches of uses, a cache keeps the hit counts of
// every batch written and loses at most the uses since the last one, and
// nothing else: every object is there, whole.
func TestCrashKeepsBatchedHits(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, after := range []int{12, 33, 61} {
		t.Run(fmt.Sprint("after ", after), func(t *testing.T) {
			dir := t.TempDir()
			keys := keysN("example.com/seed/", 10)
			seed(t, dir, keys)
			lines := crashChild(t, dir, "hits", "", 0, after)
			batched, _ := strconv.Atoi(last(lines, "batched"))
			opened, _ := strconv.Atoi(last(lines, "opened"))
			if batched == 0 || opened < after {
				t.Fatalf("child batched %d, opened %d rounds; output %q", batched, opened, tail(lines))
			}
			b, files := checkConsistent(t, dir, Options{})
			if len(files) != len(keys) {
				t.Errorf("%d objects after the crash; want %d", len(files), len(keys))
			}
			for _, o := range listAll(t, b, "") {
				if o.Hits < int64(batched) || o.Hits > int64(opened)+1 {
					t.Errorf("%s: %d hits after the crash; want from %d (batched) to %d (opened)", o.Key, o.Hits, batched, opened+1)
				}
			}
			b.Close()
		})
	}
}
