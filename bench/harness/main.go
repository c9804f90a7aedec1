// Command harness benchmarks httpmirror side by side with nginx proxy_cache
// on loopback and prints a markdown table. bench/run.sh builds and runs it;
// see docs/benchmarks.md.
//
// It starts an HTTPS origin (this binary in origin mode), httpmirror on
// local disk and nginx with proxy_cache in front of it, then runs each
// scenario for a number of rounds, alternating the proxies and which one
// goes first, and reports the medians:
//
//	(a) warm 4 KiB hits: requests/s with wrk
//	(b) warm large hits: aggregate MB/s of parallel downloads
//	(c) a lone client, then a burst of clients, on a cold object: time to
//	    first and last byte, origin GETs
//	(d) peak RSS (VmHWM) during (b) and (c)
//	(e) a burst on a cold 1 GiB object: peak RSS, times, origin GETs
//
// Every wait is bounded, the whole run has a deadline, and every child
// process and temporary file is removed on exit, on error and on SIGINT or
// SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type config struct {
	httpmirror    string
	nginx         string
	wrk           string
	dir           string
	keep          bool
	timeout       time.Duration
	rounds        int
	only          string
	wrkThreads    int
	wrkConns      int
	wrkDuration   time.Duration
	parallel      int
	burst         int
	coldSize      int64
	bigSize       int64
	out           string
	profile       string
	openFileCache bool
	profileSecs   int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "_origin" {
		if err := runOrigin(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "origin:", err)
			os.Exit(1)
		}
		return
	}
	cfg := &config{}
	flag.StringVar(&cfg.httpmirror, "httpmirror", "", "httpmirror binary (required)")
	flag.StringVar(&cfg.nginx, "nginx", "nginx", "nginx binary")
	flag.StringVar(&cfg.wrk, "wrk", "wrk", "wrk binary")
	flag.StringVar(&cfg.dir, "dir", "", "work directory (created, then removed); empty means a new temporary directory")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (logs, caches) at the end")
	flag.DurationVar(&cfg.timeout, "timeout", 9*time.Minute, "deadline for the whole run")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds of each scenario")
	flag.StringVar(&cfg.only, "only", "a,b,c,e", "scenarios to run, comma-separated ((d) is measured during b and c)")
	flag.IntVar(&cfg.wrkThreads, "wrk-threads", 2, "wrk threads for (a)")
	flag.IntVar(&cfg.wrkConns, "wrk-conns", 64, "wrk connections for (a)")
	flag.DurationVar(&cfg.wrkDuration, "wrk-duration", 10*time.Second, "wrk duration for (a)")
	flag.IntVar(&cfg.parallel, "parallel", 4, "parallel downloads in (b)")
	flag.IntVar(&cfg.burst, "burst", 20, "clients in the bursts of (c) and (e)")
	flag.Int64Var(&cfg.coldSize, "size", 256<<20, "object size for (b) and (c), bytes")
	flag.Int64Var(&cfg.bigSize, "big-size", 1<<30, "object size for (e), bytes")
	flag.StringVar(&cfg.out, "out", "", "also write the report to this file")
	flag.BoolVar(&cfg.openFileCache, "nginx-open-file-cache", false, "give nginx open_file_cache (off in nginx by default), which keeps cached files open between hits")
	flag.StringVar(&cfg.profile, "profile", "", "write CPU and allocation profiles of httpmirror's measured runs into this directory, taken from its admin pprof endpoint")
	flag.IntVar(&cfg.profileSecs, "profile-seconds", 8, "length of each CPU profile with -profile (scenario (a) uses the wrk duration)")
	flag.Parse()
	if cfg.httpmirror == "" || cfg.rounds < 1 || cfg.burst < 1 || cfg.parallel < 1 ||
		cfg.coldSize < 1 || cfg.coldSize > maxObject || cfg.bigSize < 1 || cfg.bigSize > maxObject {
		fmt.Fprintln(os.Stderr, "harness: -httpmirror is required; counts and sizes must be positive, sizes at most 1 GiB")
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// bench is one run of the benchmark.
type bench struct {
	cfg      *config
	scenario string        // the scenario running, for profile names
	windows  int           // profiling windows so far
	cpuDone  chan struct{} // closed when the window's CPU profile is saved
	dir      string
	data     *os.File
	origin   *originProc
	res      *results
	// warm objects per proxy
	warmSmall map[string]*object
	warmLarge map[string]*object
}

func run(cfg *config) (err error) {
	started := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	go func() {
		// A second ctrl-C kills the harness outright; children then get
		// SIGKILL through Pdeathsig.
		<-ctx.Done()
		stop()
	}()

	for _, bin := range []*string{&cfg.httpmirror, &cfg.nginx, &cfg.wrk} {
		p, err := lookPath(*bin)
		if err != nil {
			return err
		}
		*bin = p
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	dir := cfg.dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "httpmirror-bench-*")
	} else {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	if !cfg.keep {
		defer os.RemoveAll(dir)
	} else {
		defer fmt.Fprintln(os.Stderr, "kept", dir)
	}
	if err := checkSpace(dir, cfg); err != nil {
		return err
	}
	env := machineFacts(cfg.nginx, cfg.wrk)

	b := &bench{cfg: cfg, dir: dir, res: newResults(), warmSmall: map[string]*object{}, warmLarge: map[string]*object{}}
	for _, d := range []string{"origin", "httpmirror", "nginx"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	dataPath := filepath.Join(dir, "origin", "data.bin")
	logf("generating %.2f GiB of test data", float64(dataSize)/(1<<30))
	if err := generateData(dataPath); err != nil {
		return err
	}
	if b.data, err = os.Open(dataPath); err != nil {
		return err
	}
	defer b.data.Close()

	b.origin, err = startOrigin(self, dataPath, filepath.Join(dir, "origin", "ca.pem"), filepath.Join(dir, "origin", "origin.log"))
	if err != nil {
		return err
	}
	defer b.origin.stop(5 * time.Second)
	logf("origin on %s", b.origin.URL)

	hmProxy, err := startHTTPMirror(cfg.httpmirror, filepath.Join(dir, "httpmirror"), b.origin)
	if err != nil {
		return err
	}
	defer hmProxy.p.stop(10 * time.Second)
	ngProxy, err := startNginx(cfg.nginx, filepath.Join(dir, "nginx"), b.origin, cfg.openFileCache)
	if err != nil {
		return err
	}
	defer ngProxy.p.stop(10 * time.Second)
	logf("httpmirror on %s, nginx on %s", hmProxy.base, ngProxy.base)
	proxies := []*proxy{hmProxy, ngProxy}

	for _, px := range proxies {
		if err := b.warmUp(ctx, px); err != nil {
			return fmt.Errorf("warming %s: %w", px.name, err)
		}
	}

	scenarios := []struct {
		name string
		run  func(context.Context, *proxy, int) error
	}{
		{"a", b.scenarioA},
		{"b", b.scenarioB},
		{"c", b.scenarioC},
		{"e", b.scenarioE},
	}
	// stopped is why the run ended early (deadline, signal, a proxy that
	// died); what was measured until then is still reported.
	var stopped error
scenarios:
	for _, sc := range scenarios {
		if !strings.Contains(","+cfg.only+",", ","+sc.name+",") {
			continue
		}
		for round := 1; round <= cfg.rounds; round++ {
			// Alternate which proxy goes first, so neither always runs
			// on a machine the other just warmed or loaded.
			order := proxies
			if round%2 == 0 {
				order = []*proxy{ngProxy, hmProxy}
			}
			for _, px := range order {
				if px.p.exited() {
					stopped = fmt.Errorf("%s exited: %v (see %s)", px.name, px.p.err, px.errLog)
					break scenarios
				}
				b.scenario = sc.name
				err := sc.run(ctx, px, round)
				if ctx.Err() != nil {
					stopped = fmt.Errorf("stopped: %w", context.Cause(ctx))
					break scenarios
				}
				if err != nil {
					b.res.problem("(%s) round %d %s: %v", sc.name, round, px.name, err)
				}
			}
		}
	}
	if stopped != nil {
		b.res.problem("the run ended early, results are incomplete: %v", stopped)
	}

	for _, px := range proxies {
		lines, n := logProblems(px.errLog, 5)
		if n > 0 {
			b.res.problem("%s logged %d warnings or errors; first: %s", px.name, n, strings.Join(lines, " | "))
		}
	}
	env["load after"] = loadAvg()
	env["duration"] = time.Since(started).Round(time.Second).String()

	var report strings.Builder
	writeReport(&report, cfg, b.res, env)
	fmt.Print(report.String())
	if cfg.out != "" {
		if err := os.WriteFile(cfg.out, []byte(report.String()), 0o644); err != nil {
			return err
		}
	}
	return stopped
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func lookPath(bin string) (string, error) {
	if strings.Contains(bin, "/") {
		if _, err := os.Stat(bin); err != nil {
			return "", err
		}
		return filepath.Abs(bin)
	}
	for _, dir := range append(filepath.SplitList(os.Getenv("PATH")), "/usr/sbin", "/sbin") {
		p := filepath.Join(dir, bin)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (bench/run.sh installs nginx and wrk)", bin)
}

// checkSpace fails early when the work directory's file system cannot hold
// the data file and both caches.
func checkSpace(dir string, cfg *config) error {
	perProxy := cfg.coldSize + int64(cfg.rounds)*(2*cfg.coldSize+cfg.bigSize) + 1<<20
	need := dataSize + 2*perProxy + 1<<30
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return err
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return fmt.Errorf("%s has %.1f GiB free; the run needs about %.1f GiB", dir, float64(free)/(1<<30), float64(need)/(1<<30))
	}
	return nil
}

// warmUp stores the warm objects in px and checks that a second request is
// a hit: served whole and right, without another origin GET.
func (b *bench) warmUp(ctx context.Context, px *proxy) error {
	small, err := newObject(b.data, "warm-small-"+px.name, 4<<10)
	if err != nil {
		return err
	}
	large, err := newObject(b.data, "warm-large-"+px.name, b.cfg.coldSize)
	if err != nil {
		return err
	}
	b.warmSmall[px.name], b.warmLarge[px.name] = small, large
	for _, o := range []*object{small, large} {
		if err := b.verify(ctx, px, o, false); err != nil {
			return err
		}
		b.settle(px)
		if err := b.verify(ctx, px, o, true); err != nil {
			return err
		}
	}
	logf("%s: warm objects stored and served as hits", px.name)
	return nil
}

// verify downloads o through px and compares every byte with the data
// file. With hit, it also checks that the proxy answered from its cache:
// the origin saw exactly one GET for o, and nginx says HIT.
func (b *bench) verify(ctx context.Context, px *proxy, o *object, hit bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c := newClient(1)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, px.base+o.path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: status %d", o.path, resp.StatusCode)
	}
	if err := verifyFull(b.data, o, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", o.path, err)
	}
	if !hit {
		return nil
	}
	if cs := resp.Header.Get("X-Cache-Status"); px.name == ng && cs != "HIT" {
		b.res.problem("%s: %s after it was stored: X-Cache-Status %q, want HIT", px.name, o.path, cs)
	}
	if n := b.origin.gets(o.path); n != 1 {
		b.res.problem("%s: origin saw %d GETs for %s after a hit; want 1", px.name, n, o.path)
	}
	return nil
}

// settle waits until the proxy has finished with the last cold object: the
// origin answers nothing, httpmirror has committed (its tmp/ is empty), and
// the page cache has been written back, so the next run does not pay for
// this one's disk writes.
func (b *bench) settle(px *proxy) {
	if !b.origin.waitIdle(2 * time.Minute) {
		b.res.problem("%s: origin still busy 2 minutes after a run", px.name)
	}
	if px.name == hm {
		tmp := filepath.Join(px.cacheDir, "tmp")
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if e, err := os.ReadDir(tmp); err != nil || len(e) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	syncFS(time.Minute)
	time.Sleep(200 * time.Millisecond)
}

// syncFS writes back dirty pages (sync(2): syncfs has no wrapper in package
// syscall, and the caches share a file system with everything else here
// anyway), waiting at most limit.
func syncFS(limit time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		syscall.Sync()
	}()
	select {
	case <-done:
	case <-time.After(limit):
	}
}
