// Command diskindex measures the local disk store (storage/file) holding
// many objects: how soon a restarted process serves its first hit, how
// soon its index is complete, its resident memory per object, the latency
// of a listing page with and without a prefix, and a purge by prefix of
// 10,000 objects. See docs/benchmarks.md ("The disk index at a million
// objects").
//
// For each count given (-objects 100000,1000000) it builds a cache of
// that many valid objects by writing through the store (Create, Write,
// Commit; not through HTTP), in keys of the form
//
//	mirror.example/pool/BBBB/pkg-NNNNNNN.deb
//
// with 10,000 objects under each pool/BBBB/, and closes it. Then each
// measurement runs in a new child process (this binary), so that start-up
// and memory are those of a fresh process:
//
//   - clean restart: the index was closed cleanly;
//   - restart after kill -9: a child committing objects is killed, the next
//     start checks the keys its journal names;
//   - restart with the index deleted: the index is rebuilt from the files.
//
// Each of these children serves a first hit (an object read whole through
// the store, by its hashed path: the index need not be complete), waits
// for the index, lists pages of 100 under a prefix and of the whole
// cache, and purges the 10,000 objects under one prefix (listing and
// deleting, as the admin API does; each child purges another prefix, so
// the cache loses 10,000 objects each time and nothing is written back).
//
// Memory per object is the resident memory (VmRSS: anonymous memory and
// the pages of the index's mmap the process has touched) of a fresh
// process at idle with the cache open and its index complete, less that
// of the same process over an empty cache, divided by the objects held;
// it is measured again after the listings and the purge. The page cache
// is not dropped (that needs root and disturbs other work on the
// machine): the figures are for a warm directory cache. Dirty pages are
// written back (sync) before each child starts.
//
// Every wait is bounded by -timeout; the work directory (a new one, in
// -dir or $TMPDIR) is removed at the end unless -keep.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
)

const (
	perPool  = 10000 // objects under each pool/BBBB/
	pageSize = 100
)

// prefix is the prefix of the objects of pool p.
func prefix(p int) string { return fmt.Sprintf("mirror.example/pool/%04d/", p) }

func key(i int) string {
	return fmt.Sprintf("mirror.example/pool/%04d/pkg-%07d.deb", i/perPool, i)
}

// body is the body of object i: 256 to 1279 bytes.
func body(i int) []byte {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	b := make([]byte, 256+r.IntN(1024))
	for j := range b {
		b[j] = byte(r.Uint32())
	}
	return b
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "_child" {
		if err := child(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		return
	}
	counts := flag.String("objects", "100000,1000000", "object counts to measure, comma-separated")
	dir := flag.String("dir", "", "where to create the work directory (removed at the end); empty means $TMPDIR")
	keep := flag.Bool("keep", false, "keep the work directory")
	timeout := flag.Duration("timeout", 45*time.Minute, "deadline of the whole run")
	writers := flag.Int("writers", 4, "parallel writers building the cache")
	rebuild := flag.Bool("rebuild", true, "also measure a restart with the index deleted (reads every object's trailer)")
	flag.Parse()
	var ns []int
	for s := range strings.SplitSeq(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 5*perPool {
			fmt.Fprintf(os.Stderr, "diskindex: -objects: %q is not a count of at least %d\n", s, 5*perPool)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	if err := run(ns, *dir, *keep, *timeout, *writers, *rebuild); err != nil {
		fmt.Fprintln(os.Stderr, "diskindex:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// result is what one child measured.
type result struct {
	FirstHit   float64 `json:"firstHitMs"` // from the child's exec to the first hit's last byte
	Open       float64 `json:"openMs"`     // file.New
	Indexed    float64 `json:"indexedMs"`  // from exec to the index complete
	RSS        int64   `json:"rss"`        // VmRSS at idle, bytes
	RSSAnon    int64   `json:"rssAnon"`
	RSSFile    int64   `json:"rssFile"`
	HeapInuse  uint64  `json:"heapInuse"`
	Objects    int64   `json:"objects"`
	PrefixCold float64 `json:"prefixColdMs"` // first page of 100 under a prefix, first listing of the process
	PrefixMed  float64 `json:"prefixMedMs"`  // median of 20 pages under other prefixes
	AllCold    float64 `json:"allColdMs"`    // first page of 100 of the whole cache
	AllMed     float64 `json:"allMedMs"`     // median over 20 pages deep in the listing
	Purge      float64 `json:"purgeMs"`      // list and delete 10,000 objects under a prefix
	Purged     int     `json:"purged"`
	PurgeTx    int64   `json:"purgeTx"`      // index transactions the purge committed
	PurgePages int64   `json:"purgePages"`   // index pages the purge wrote
	PurgeWrite float64 `json:"purgeWriteMs"` // time the index spent writing them
	Unlink     float64 `json:"unlinkMs"`     // mode unlink: os.Remove of 10,000 object files, no index
	RSSAfter   int64   `json:"rssAfter"`     // VmRSS after the listings and the purge
	AfterAnon  int64   `json:"rssAfterAnon"`
	AfterFile  int64   `json:"rssAfterFile"`
	HWM        int64   `json:"hwm"` // VmHWM at the end
}

func run(ns []int, dir string, keep bool, timeout time.Duration, writers int, rebuild bool) (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// A directory of its own, even under -dir: the run removes it whole.
	dir, err = os.MkdirTemp(dir, "httpmirror-diskindex-*")
	if err != nil {
		return err
	}
	if keep {
		defer fmt.Fprintln(os.Stderr, "kept", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	empty := filepath.Join(dir, "empty")
	if err := build(ctx, empty, 0, writers); err != nil {
		return err
	}
	base, err := measure(ctx, self, empty, "restart", 0, 0)
	if err != nil {
		return fmt.Errorf("empty cache: %w", err)
	}
	logf("empty cache: RSS %.1f MiB", mib(base.RSS))

	type row struct {
		n                        int
		build                    time.Duration
		dbSize                   int64
		clean, crashed, rebuilt  result
		unlink                   result
		crashChecked, rebuiltRan bool
	}
	var rows []row
	defer func() {
		fmt.Println()
		fmt.Printf("Empty cache: RSS %.1f MiB (anon %.1f MiB).\n\n", mib(base.RSS), mib(base.RSSAnon))
		fmt.Println("| objects | measure | clean restart | after kill -9 | index deleted |")
		fmt.Println("|--:|---|--:|--:|--:|")
		for _, r := range rows {
			cell := func(ok bool, v float64, f string) string {
				if !ok {
					return "–"
				}
				return fmt.Sprintf(f, v)
			}
			p := func(name string, get func(result) float64, f string) {
				fmt.Printf("| %d | %s | %s | %s | %s |\n", r.n, name, cell(true, get(r.clean), f),
					cell(r.crashChecked, get(r.crashed), f), cell(r.rebuiltRan, get(r.rebuilt), f))
			}
			fmt.Printf("| %d | build through the store | %.0f s (%.0f objects/s), index %.0f MiB | | |\n",
				r.n, r.build.Seconds(), float64(r.n)/r.build.Seconds(), mib(r.dbSize))
			p("first hit served, ms from exec", func(x result) float64 { return x.FirstHit }, "%.1f")
			p("file.New, ms", func(x result) float64 { return x.Open }, "%.1f")
			p("index complete, ms from exec", func(x result) float64 { return x.Indexed }, "%.1f")
			p("RSS at idle, MiB", func(x result) float64 { return mib(x.RSS) }, "%.1f")
			p("RSS over the empty cache, bytes/object", func(x result) float64 {
				return float64(x.RSS-base.RSS) / float64(x.Objects)
			}, "%.1f")
			p("of which anonymous, bytes/object", func(x result) float64 {
				return float64(x.RSSAnon-base.RSSAnon) / float64(x.Objects)
			}, "%.1f")
			p("of which index pages mapped (file), bytes/object", func(x result) float64 {
				return float64(x.RSSFile-base.RSSFile) / float64(x.Objects)
			}, "%.1f")
			p("page of 100 under a prefix, first, ms", func(x result) float64 { return x.PrefixCold }, "%.2f")
			p("page of 100 under a prefix, median of 20, ms", func(x result) float64 { return x.PrefixMed }, "%.2f")
			p("page of 100 of the whole cache, first, ms", func(x result) float64 { return x.AllCold }, "%.2f")
			p("page of 100 of the whole cache, median of 20, ms", func(x result) float64 { return x.AllMed }, "%.2f")
			p("purge of 10,000 under a prefix, ms", func(x result) float64 { return x.Purge }, "%.0f")
			p("purge: index transactions", func(x result) float64 { return float64(x.PurgeTx) }, "%.0f")
			p("purge: index pages written per object purged", func(x result) float64 {
				return float64(x.PurgePages) / float64(max(x.Purged, 1))
			}, "%.2f")
			p("purge: index write time, ms", func(x result) float64 { return x.PurgeWrite }, "%.0f")
			fmt.Printf("| %d | bare os.Remove of 10,000 of the cache's files, no index (the file system's part of a purge), ms | %.0f | | |\n",
				r.n, r.unlink.Unlink)
			p("RSS after listings and purge, MiB", func(x result) float64 { return mib(x.RSSAfter) }, "%.1f")
			p("RSS after listings and purge over the empty cache, bytes/object", func(x result) float64 {
				return float64(x.RSSAfter-base.RSS) / float64(x.Objects)
			}, "%.1f")
			p("of which anonymous, bytes/object", func(x result) float64 {
				return float64(x.AfterAnon-base.RSSAnon) / float64(x.Objects)
			}, "%.1f")
			p("of which index pages mapped (file), bytes/object", func(x result) float64 {
				return float64(x.AfterFile-base.RSSFile) / float64(x.Objects)
			}, "%.1f")
			p("peak RSS (VmHWM), MiB", func(x result) float64 { return mib(x.HWM) }, "%.1f")
		}
	}()

	for _, n := range ns {
		d := filepath.Join(dir, strconv.Itoa(n))
		logf("building %d objects in %s", n, d)
		start := time.Now()
		if err := build(ctx, d, n, writers); err != nil {
			return err
		}
		r := row{n: n, build: time.Since(start)}
		if fi, err := os.Stat(filepath.Join(d, "index.db")); err == nil {
			r.dbSize = fi.Size()
		}
		logf("built %d objects in %v", n, r.build.Round(time.Second))
		if r.clean, err = measure(ctx, self, d, "restart", n, 0); err != nil {
			return fmt.Errorf("%d objects, clean restart: %w", n, err)
		}
		rows = append(rows, r)
		logf("clean restart: %+v", r.clean)

		// kill -9 while committing, then restart.
		if err := crashWriter(ctx, self, d, n); err != nil {
			return fmt.Errorf("%d objects, kill -9: %w", n, err)
		}
		if rows[len(rows)-1].crashed, err = measure(ctx, self, d, "restart", n, 1); err != nil {
			return fmt.Errorf("%d objects, restart after kill -9: %w", n, err)
		}
		rows[len(rows)-1].crashChecked = true
		logf("restart after kill -9: %+v", rows[len(rows)-1].crashed)

		if rebuild {
			if err := os.Remove(filepath.Join(d, "index.db")); err != nil {
				return err
			}
			if rows[len(rows)-1].rebuilt, err = measure(ctx, self, d, "restart", n, 2); err != nil {
				return fmt.Errorf("%d objects, index deleted: %w", n, err)
			}
			rows[len(rows)-1].rebuiltRan = true
			logf("restart with the index deleted: %+v", rows[len(rows)-1].rebuilt)
		}
		// The file system's part of a purge: the files of the last pool
		// (no measurement touched it), removed without the index.
		if rows[len(rows)-1].unlink, err = measure(ctx, self, d, "unlink", n, n/perPool-1); err != nil {
			return fmt.Errorf("%d objects, bare unlink: %w", n, err)
		}
		logf("bare unlink: %.0f ms", rows[len(rows)-1].unlink.Unlink)
		if !keep {
			logf("removing %s", d)
			os.RemoveAll(d)
		}
	}
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// build stores n objects in a new cache in dir and closes it.
func build(ctx context.Context, dir string, n, writers int) error {
	b, err := file.New(dir, file.Options{NoSync: true})
	if err != nil {
		return err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := put(b, key(i), body(i)); err != nil {
					errs <- fmt.Errorf("object %d: %w", i, err)
					return
				}
				if i > 0 && i%100000 == 0 {
					logf("  %d objects", i)
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		return err
	}
	select {
	case err := <-errs:
		return err
	default:
	}
	return ctx.Err()
}

// put stores data under k with the metadata a fill gives a package: an
// ETag, a type, a date and the SHA-256 the fill keeps (which the index
// holds too).
func put(b storage.Backend, k string, data []byte) error {
	ctx := context.Background()
	sum := sha256.Sum256(data)
	w, err := b.Create(ctx, k, storage.Info{Size: int64(len(data)), ETag: `"` + strconv.Itoa(len(data)) + `"`,
		ContentType: "application/vnd.debian.binary-package", LastModified: time.Unix(1700000000, 0),
		Header: http.Header{storage.DigestHeader: {"sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"}}})
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Commit(ctx)
}

// measure runs a child that measures a restart of the cache in dir and
// purges the objects of pool purge.
func measure(ctx context.Context, self, dir, mode string, n, purge int) (result, error) {
	var r result
	// Each measurement starts with no dirty data to write back (the
	// build's, or the previous child's): the purge and the unlinks would
	// otherwise share the disk with the write-back of gigabytes.
	syscall.Sync()
	cmd := exec.CommandContext(ctx, self, "_child", mode, dir, strconv.Itoa(n), strconv.Itoa(purge),
		strconv.FormatInt(time.Now().UnixNano(), 10))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(out, &r)
}

// crashWriter runs a child that commits objects into the cache in dir and
// kills it with SIGKILL after 2000 commits.
func crashWriter(ctx context.Context, self, dir string, n int) error {
	cmd := exec.CommandContext(ctx, self, "_child", "write", dir, strconv.Itoa(n), "0", "0")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "2000" {
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("writer was not killed: %v", err)
}

// child runs a measurement: args are the cache directory, the object
// count, the pool to purge and the parent's clock when it started the
// child.
func child(mode string, args []string) error {
	if len(args) != 4 {
		return errors.New("usage: _child MODE DIR OBJECTS PURGE-POOL START-NS")
	}
	dir := args[0]
	n, _ := strconv.Atoi(args[1])
	purge, _ := strconv.Atoi(args[2])
	execAt, _ := strconv.ParseInt(args[3], 10, 64)
	since := func() float64 { return float64(time.Now().UnixNano()-execAt) / 1e6 }
	ctx := context.Background()
	start := time.Now()
	b, err := file.New(dir, file.Options{})
	if err != nil {
		return err
	}
	defer b.Close()
	r := result{Open: ms(time.Since(start))}
	if mode == "write" {
		// Commit new objects until killed.
		for i := range 1000000 {
			if err := put(b, fmt.Sprintf("mirror.example/new/%07d", i), body(i)); err != nil {
				return err
			}
			fmt.Println(i + 1)
		}
		return errors.New("not killed")
	}
	if mode == "unlink" {
		// The file system's part of a purge: the files of one pool,
		// removed with os.Remove after the store is closed.
		var paths []string
		_, err := storage.Walk(ctx, b, prefix(purge), math.MaxInt, func(o storage.Info) error {
			p, err := b.Path(o.Key)
			paths = append(paths, p)
			return err
		})
		if err != nil {
			return err
		}
		if err := b.Close(); err != nil {
			return err
		}
		t := time.Now()
		for _, p := range paths {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
		r.Unlink, r.Purged = ms(time.Since(t)), len(paths)
		if r.Purged != perPool {
			return fmt.Errorf("unlink of %s: %d files; want %d", prefix(purge), r.Purged, perPool)
		}
		return json.NewEncoder(os.Stdout).Encode(r)
	}
	if n > 0 {
		k := key(n - 1)
		o, err := b.Open(ctx, k)
		if err != nil {
			return fmt.Errorf("first hit %s: %w", k, err)
		}
		got, err := io.ReadAll(o)
		o.Close()
		if err != nil || !slices.Equal(got, body(n-1)) {
			return fmt.Errorf("first hit %s: %d bytes, %v", k, len(got), err)
		}
		r.FirstHit = since()
	}
	if err := b.WaitIndexed(ctx); err != nil {
		return err
	}
	r.Indexed = since()
	r.Objects = b.Stats().Objects
	idle(&r.RSS, &r.RSSAnon, &r.RSSFile, &r.HeapInuse)
	if n == 0 {
		return json.NewEncoder(os.Stdout).Encode(r)
	}

	pools := n / perPool
	var listErr error
	page := func(prefix, token string) float64 {
		t := time.Now()
		objs, _, err := b.List(ctx, prefix, token, pageSize)
		d := ms(time.Since(t))
		if (err != nil || len(objs) != pageSize) && listErr == nil {
			listErr = fmt.Errorf("List(%q, %q): %d objects, %v", prefix, token, len(objs), err)
		}
		return d
	}
	// Pools 0 to 2 are purged, one by each measurement.
	r.PrefixCold = page(prefix(3), "")
	var ds []float64
	for i := range 20 {
		ds = append(ds, page(prefix(4+i%(pools-4)), ""))
	}
	r.PrefixMed = median(ds)
	r.AllCold = page("", "")
	ds = ds[:0]
	for i := range 20 {
		ds = append(ds, page("", storage.PageToken("", key((i*7919*perPool/10)%n))))
	}
	r.AllMed = median(ds)
	if listErr != nil {
		return listErr
	}

	// A purge by prefix: list and delete, as the admin API does.
	w0 := b.IndexWrites()
	t := time.Now()
	_, err = storage.Walk(ctx, b, prefix(purge), math.MaxInt, func(o storage.Info) error {
		r.Purged++
		return b.Delete(ctx, o.Key)
	})
	if err != nil {
		return err
	}
	b.Stats() // waits for the index to hold the deletes
	r.Purge = ms(time.Since(t))
	w1 := b.IndexWrites()
	r.PurgeTx, r.PurgePages, r.PurgeWrite = w1.Transactions-w0.Transactions, w1.Pages-w0.Pages, ms(w1.Time-w0.Time)
	if r.Purged != perPool {
		return fmt.Errorf("purge of %s: %d objects; want %d", prefix(purge), r.Purged, perPool)
	}
	var heap uint64
	idle(&r.RSSAfter, &r.AfterAnon, &r.AfterFile, &heap)
	r.HWM = status("VmHWM")
	return json.NewEncoder(os.Stdout).Encode(r)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(ds []float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// idle lets the process settle (a GC, memory returned to the system) and
// reads its resident memory.
func idle(rss, anon, file *int64, heap *uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	// The index's applier has nothing left to do, and has taken the
	// index's pages out of the resident set (every 15 s).
	time.Sleep(16 * time.Second)
	*rss, *anon, *file = status("VmRSS"), status("RssAnon"), status("RssFile")
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	*heap = m.HeapInuse
}

// status reads a size field of /proc/self/status, in bytes.
func status(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
