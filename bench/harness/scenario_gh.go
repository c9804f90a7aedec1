package main

// Scenarios (g) and (h): a package mirror's day, thousands of distinct
// files, most of them small.
//
//	(g) warm, many files: -many-files distinct files of 1 KiB to 512 KiB
//	    (log-uniform sizes, the same for both proxies), all cached; wrk
//	    -t1 -c64 asks for a random one per request (a Lua script).
//	(h) cold, many small files: -cold-files never-seen files of 16 KiB,
//	    fetched by -cold-clients keep-alive clients at once, each taking
//	    the next file not yet asked for; the wall time until the last
//	    arrived.

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ghRows are the summary rows of (g) and (h).
func ghRows(cfg *config) []row {
	logs := "access logs off"
	if cfg.accessLog {
		logs = "access logs on"
	}
	return []row{
		{fmt.Sprintf("(g) warm, many files: %d cached files of 1 KiB–512 KiB (log-uniform), wrk -t1 -c%d -d%s, a random file per request, %s", cfg.manyFiles, cfg.wrkConns, cfg.wrkDuration, logs), "requests/s", "g.rps", "%.0f", ratioTarget("g.rps", 1.2), false},
		{"", "MiB/s", "g.mibps", "%.0f", ratioTarget("g.mibps", 1.2), false},
		{fmt.Sprintf("(h) cold, many small files: %d never-seen %s files, %d keep-alive clients, %s", cfg.coldFiles, sizeName(cfg.coldFileSize), cfg.coldClients, logs), "wall ms", "h.wall", "%.0f", timeRatioTarget("h.wall", 0.8), false},
		{"", "misses/s", "h.rate", "%.0f", nil, false},
		{"", "origin GETs per file", "h.gets", "%.2f", nil, false},
	}
}

// timeRatioTarget: httpmirror/nginx of key (a time) at most maxRatio.
func timeRatioTarget(key string, maxRatio float64) func(*results) (string, string) {
	return func(r *results) (string, string) {
		text := fmt.Sprintf("≤ %.2f× nginx", maxRatio)
		h, ok1 := r.median(key, hm)
		n, ok2 := r.median(key, ng)
		if !ok1 || !ok2 || n == 0 {
			return text, "n/a"
		}
		return text, yesNo(h/n <= maxRatio)
	}
}

// manyObjects returns the files of (g) for px: the same names and sizes
// for every run (a fixed seed), under a name of px's own, so that each
// proxy fetches and caches its own.
func (b *bench) manyObjects(px *proxy) ([]*object, error) {
	rng := rand.New(rand.NewPCG(25, 1))
	lo, hi := math.Log(1<<10), math.Log(512<<10)
	objs := make([]*object, b.cfg.manyFiles)
	for i := range objs {
		size := int64(math.Round(math.Exp(lo + rng.Float64()*(hi-lo))))
		o, err := newObject(b.data, fmt.Sprintf("many-%s-%d", px.name, i), size)
		if err != nil {
			return nil, err
		}
		objs[i] = o
	}
	return objs, nil
}

// fetchAll downloads objs through px with n keep-alive clients, each
// taking the next object not yet taken, and returns the wall time and
// the first failure, with how many failed.
func fetchAll(ctx context.Context, base string, n int, objs []*object, warm *object, limit time.Duration) (time.Duration, error) {
	clients := make([]*http.Client, n)
	for i := range clients {
		clients[i] = newClient(1)
		if r := fetch(ctx, clients[i], base, warm, 10*time.Second); r.err != nil {
			return 0, fmt.Errorf("opening connection %d: %w", i, r.err)
		}
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	next := make(chan *object, len(objs))
	for _, o := range objs {
		next <- o
	}
	close(next)
	var mu sync.Mutex
	var first error
	failed := 0
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range clients {
		wg.Go(func() {
			for o := range next {
				if r := fetch(ctx, c, base, o, limit); r.err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = fmt.Errorf("%s: %w", o.path, r.err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	if first != nil {
		return wall, fmt.Errorf("%d of %d downloads failed, first: %w", failed, len(objs), first)
	}
	return wall, nil
}

// originGets sums the origin's GETs of objs.
func (b *bench) originGets(objs []*object) (int64, error) {
	s, err := b.origin.stats()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range objs {
		n += s.Gets[o.path]
	}
	return n, nil
}

// scenarioG measures warm hits of many distinct files: the first round
// fetches every file through px (and checks it), the rounds measure wrk.
func (b *bench) scenarioG(ctx context.Context, px *proxy, round int) error {
	objs := b.many[px.name]
	script := filepath.Join(b.dir, "many-"+px.name+".lua")
	if objs == nil {
		var err error
		if objs, err = b.manyObjects(px); err != nil {
			return err
		}
		var total int64
		for _, o := range objs {
			total += o.size
		}
		logf("(g) %s: storing %d files, %.0f MiB", px.name, len(objs), mib(total))
		if _, err := fetchAll(ctx, px.base, 16, objs, b.warmSmall[px.name], time.Minute); err != nil {
			return fmt.Errorf("storing the files: %w", err)
		}
		b.settle(px)
		if err := writeManyScript(script, objs); err != nil {
			return err
		}
		// Open connections and fill page caches before the first
		// measurement.
		if _, err := runWrkScript(ctx, b.cfg.wrk, px.base+"/", script, 1, b.cfg.wrkConns, 2*time.Second); err != nil {
			return err
		}
		b.many[px.name] = objs
		gets, err := b.originGets(objs)
		if err != nil {
			return err
		}
		b.manyGets[px.name] = gets
	}
	b.profile(px, true)
	w, err := runWrkScript(ctx, b.cfg.wrk, px.base+"/", script, 1, b.cfg.wrkConns, b.cfg.wrkDuration)
	b.profile(px, false)
	if err != nil {
		return err
	}
	b.res.add("g.rps", px.name, w.rps)
	b.res.add("g.mibps", px.name, w.mibps)
	logf("(g) round %d %-10s %8.0f req/s, %6.0f MiB/s", round, px.name, w.rps, w.mibps)
	if w.non2xx > 0 {
		b.res.problem("(g) round %d %s: %d responses were not 2xx/3xx", round, px.name, w.non2xx)
	}
	if w.sockErr != "" {
		b.res.problem("(g) round %d %s: wrk reported %s", round, px.name, w.sockErr)
	}
	if gets, err := b.originGets(objs); err == nil && gets != b.manyGets[px.name] {
		b.res.problem("(g) round %d %s: the origin saw %d GETs for the stored files during the run; want none", round, px.name, gets-b.manyGets[px.name])
	}
	return nil
}

// writeManyScript writes a wrk script that asks for a random one of objs
// per request.
func writeManyScript(path string, objs []*object) error {
	var s strings.Builder
	s.WriteString("local paths = {\n")
	for _, o := range objs {
		fmt.Fprintf(&s, "  %q,\n", o.path)
	}
	s.WriteString("}\nlocal n = #paths\n")
	s.WriteString("setup = function(thread) math.randomseed(25) end\n")
	s.WriteString("request = function()\n  return wrk.format(\"GET\", paths[math.random(n)])\nend\n")
	return os.WriteFile(path, []byte(s.String()), 0o644)
}

// wrkTransfer is wrk's "Transfer/sec: 1.23MB" (binary units).
var wrkTransfer = regexp.MustCompile(`Transfer/sec:\s+([0-9.]+)([KMG]?B)`)

// runWrkScript runs wrk with a Lua script against base and parses its
// summary, with the transfer rate in MiB/s.
func runWrkScript(ctx context.Context, bin, base, script string, threads, conns int, d time.Duration) (wrkResult, error) {
	w, err := runWrkArgs(ctx, bin, base, threads, conns, d, "-s", script)
	if err != nil {
		return w, err
	}
	if m := wrkTransfer.FindStringSubmatch(w.out); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		switch m[2] {
		case "B":
			v /= 1 << 20
		case "KB":
			v /= 1 << 10
		case "GB":
			v *= 1 << 10
		}
		w.mibps = v
	}
	return w, nil
}

// scenarioH measures a burst of misses of many small files: new files
// every round, for each proxy.
func (b *bench) scenarioH(ctx context.Context, px *proxy, round int) error {
	objs := make([]*object, b.cfg.coldFiles)
	for i := range objs {
		o, err := newObject(b.data, fmt.Sprintf("small-r%d-%s-%d", round, px.name, i), b.cfg.coldFileSize)
		if err != nil {
			return err
		}
		objs[i] = o
	}
	b.profile(px, true)
	wall, err := fetchAll(ctx, px.base, b.cfg.coldClients, objs, b.warmSmall[px.name], time.Minute)
	b.settle(px)
	b.profile(px, false)
	if err != nil {
		return err
	}
	gets, err := b.originGets(objs)
	if err != nil {
		return err
	}
	b.res.add("h.wall", px.name, ms(wall))
	b.res.add("h.rate", px.name, float64(len(objs))/wall.Seconds())
	b.res.add("h.gets", px.name, float64(gets)/float64(len(objs)))
	logf("(h) round %d %-10s %d files by %d clients: %.0f ms, %.0f misses/s, origin GETs %d", round, px.name, len(objs), b.cfg.coldClients, ms(wall), float64(len(objs))/wall.Seconds(), gets)
	return nil
}
