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
//	(f) an origin capped per connection: a lone client's cold download
//	    (and aria2c -x8 -s8's straight from the origin), and a Range
//	    request for the end of a cold object (scenario_f.go)
//	(g) warm hits of many distinct files of 1 KiB–512 KiB, a random one
//	    per request (scenario_gh.go)
//	(h) misses of many small files by many keep-alive clients
//
// With -access-log both proxies write an access log line per request
// (httpmirror at --log-level info, nginx's access_log), which bench/run.sh
// uses for its second configuration.
//
// Every wait is bounded, the whole run has a deadline, and every child
// process and temporary file is removed on exit, on error and on SIGINT or
// SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
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
	accessLog     bool
	capMBps       float64 // origin's rate for capped objects, 10^6 bytes/s
	fSize         int64
	fRangeSize    int64
	aria2c        string
	manyFiles     int
	coldFiles     int
	coldFileSize  int64
	coldClients   int
}

// has reports whether scenario name is among those to run.
func (c *config) has(name string) bool {
	return strings.Contains(","+c.only+",", ","+name+",")
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
	flag.DurationVar(&cfg.timeout, "timeout", 20*time.Minute, "deadline for the whole run")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds of each scenario")
	flag.StringVar(&cfg.only, "only", "a,b,c,e,f,g,h", "scenarios to run, comma-separated ((d) is measured during b and c)")
	flag.IntVar(&cfg.wrkThreads, "wrk-threads", 2, "wrk threads for (a)")
	flag.IntVar(&cfg.wrkConns, "wrk-conns", 64, "wrk connections for (a)")
	flag.DurationVar(&cfg.wrkDuration, "wrk-duration", 10*time.Second, "wrk duration for (a)")
	flag.IntVar(&cfg.parallel, "parallel", 4, "parallel downloads in (b)")
	flag.IntVar(&cfg.burst, "burst", 20, "clients in the bursts of (c) and (e)")
	flag.Int64Var(&cfg.coldSize, "size", 256<<20, "object size for (b) and (c), bytes")
	flag.Int64Var(&cfg.bigSize, "big-size", 1<<30, "object size for (e), bytes")
	flag.StringVar(&cfg.out, "out", "", "also write the report to this file")
	flag.BoolVar(&cfg.openFileCache, "nginx-open-file-cache", false, "give nginx open_file_cache (off in nginx by default), which keeps cached files open between hits")
	flag.StringVar(&cfg.profile, "profile", "", "write CPU and allocation profiles and execution traces of httpmirror's measured runs into this directory (created if needed), taken from its admin pprof endpoint")
	flag.IntVar(&cfg.profileSecs, "profile-seconds", 8, "length of each CPU profile with -profile (scenario (a) uses the wrk duration)")
	flag.BoolVar(&cfg.accessLog, "access-log", false, "both proxies write an access log to a file: httpmirror at --log-level info, nginx access_log with buffer=64k flush=1s")
	flag.Float64Var(&cfg.capMBps, "cap", 25, "rate limit of the origin's capped objects in (f), MB/s (10^6 bytes/s) per connection")
	flag.Int64Var(&cfg.fSize, "f-size", 512<<20, "size of the cold object downloaded whole in (f), bytes")
	flag.Int64Var(&cfg.fRangeSize, "f-range-size", 1<<30, "size of the cold object whose last MiB (f) asks for with a Range request, bytes")
	flag.StringVar(&cfg.aria2c, "aria2c", "aria2c", "aria2c binary, for (f)'s reference download")
	flag.IntVar(&cfg.manyFiles, "many-files", 2000, "(g): distinct cached files")
	flag.IntVar(&cfg.coldFiles, "cold-files", 600, "(h): never-seen files per round")
	flag.Int64Var(&cfg.coldFileSize, "cold-file-size", 16<<10, "(h): their size, bytes")
	flag.IntVar(&cfg.coldClients, "cold-clients", 24, "(h): keep-alive clients")
	flag.Parse()
	if cfg.httpmirror == "" || cfg.rounds < 1 || cfg.burst < 1 || cfg.parallel < 1 ||
		cfg.coldSize < 1 || cfg.coldSize > maxObject || cfg.bigSize < 1 || cfg.bigSize > maxObject ||
		cfg.fSize < 1 || cfg.fSize > maxObject || cfg.fRangeSize <= rangeLen || cfg.fRangeSize > maxObject || cfg.capMBps <= 0 ||
		cfg.manyFiles < 1 || cfg.coldFiles < 1 || cfg.coldFileSize < 1 || cfg.coldFileSize > maxObject || cfg.coldClients < 1 {
		fmt.Fprintln(os.Stderr, "harness: -httpmirror is required; counts, sizes and -cap must be positive, sizes at most 1 GiB, -f-range-size above 1 MiB")
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
	scenario string          // the scenario running, for profile names
	windows  int             // profiling windows so far
	cpuDone  []chan struct{} // closed when the window's CPU profile and trace are saved
	dir      string
	data     *os.File
	origin   *originProc
	res      *results
	// warm objects per proxy
	warmSmall map[string]*object
	warmLarge map[string]*object
	// warmGets: origin GETs per warm object's path once it was stored
	warmGets map[string]int64
	// fDirect: the TTLB (ms) of (f)'s direct download, by round
	fDirect map[int]float64
	// fAria: the time (ms) of (f)'s aria2c download, by round
	fAria map[int]float64
	// many: (g)'s files per proxy, once stored; manyGets: the origin's
	// GETs of them then
	many     map[string][]*object
	manyGets map[string]int64
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
	if cfg.profile != "" {
		if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
			return err
		}
	}
	env := machineFacts(cfg.nginx, cfg.wrk)

	b := &bench{cfg: cfg, dir: dir, res: newResults(), warmSmall: map[string]*object{}, warmLarge: map[string]*object{}, warmGets: map[string]int64{}, fDirect: map[int]float64{}, fAria: map[int]float64{}, many: map[string][]*object{}, manyGets: map[string]int64{}}
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

	b.origin, err = startOrigin(self, dataPath, filepath.Join(dir, "origin", "ca.pem"), filepath.Join(dir, "origin", "origin.log"), cfg.capMBps*1e6)
	if err != nil {
		return err
	}
	defer b.origin.stop(5 * time.Second)
	logf("origin on %s", b.origin.URL)

	hmProxy, err := startHTTPMirror(cfg.httpmirror, filepath.Join(dir, "httpmirror"), b.origin, cfg.accessLog)
	if err != nil {
		return err
	}
	defer hmProxy.p.stop(10 * time.Second)
	ngProxy, err := startNginx(cfg.nginx, filepath.Join(dir, "nginx"), b.origin, cfg.openFileCache, cfg.accessLog)
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
		{"f", b.scenarioF},
		{"g", b.scenarioG},
		{"h", b.scenarioH},
	}
	// stopped is why the run ended early (deadline, signal, a proxy that
	// died); what was measured until then is still reported.
	var stopped error
scenarios:
	for _, sc := range scenarios {
		if !cfg.has(sc.name) {
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

	if cfg.accessLog {
		// nginx writes its access log buffer out at least every second.
		time.Sleep(1500 * time.Millisecond)
	}
	for _, px := range proxies {
		lines, n := logProblems(px.errLog, 5)
		if n > 0 {
			b.res.problem("%s logged %d warnings or errors; first: %s", px.name, n, strings.Join(lines, " | "))
		}
		if cfg.accessLog {
			b.res.note("%s wrote %d access log lines (%s)", px.name, countLines(px.accessLog, px.accessMark), px.accessLog)
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
// the data file, both caches (the warm objects, and every cold object of
// the scenarios chosen, each stored once per round) and the logs.
func checkSpace(dir string, cfg *config) error {
	perRound := int64(0)
	if cfg.has("c") {
		perRound += 2 * cfg.coldSize
	}
	if cfg.has("e") {
		perRound += cfg.bigSize
	}
	if cfg.has("f") {
		// The range request's object is stored whole by both proxies
		// (httpmirror goes on filling it after the client leaves).
		perRound += cfg.fSize + cfg.fRangeSize
	}
	if cfg.has("h") {
		perRound += int64(cfg.coldFiles) * cfg.coldFileSize
	}
	perProxy := cfg.coldSize + int64(cfg.rounds)*perRound + 1<<20
	if cfg.has("g") {
		perProxy += int64(cfg.manyFiles) * 100 << 10 // about 95 KiB on average
	}
	need := dataSize + 2*perProxy + 1<<30
	if cfg.accessLog {
		// Some 200 bytes per request; wrk makes tens of thousands per
		// second.
		need += 1 << 30
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return err
	}
	if free := int64(st.Bavail) * st.Bsize; free < need {
		return fmt.Errorf("%s has %.1f GiB free; the run needs about %.1f GiB", dir, float64(free)/(1<<30), float64(need)/(1<<30))
	}
	return nil
}
