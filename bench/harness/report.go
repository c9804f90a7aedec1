package main

// Results: per-round values per metric and proxy, their medians, and the
// markdown report.

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

const (
	hm = "httpmirror"
	ng = "nginx"
)

// results holds every measured value: metric key → proxy → one value per
// round, in round order.
type results struct {
	vals     map[string]map[string][]float64
	problems []string
	notes    []string
}

func newResults() *results { return &results{vals: map[string]map[string][]float64{}} }

func (r *results) add(key, proxy string, v float64) {
	if r.vals[key] == nil {
		r.vals[key] = map[string][]float64{}
	}
	r.vals[key][proxy] = append(r.vals[key][proxy], v)
}

// problem records something that went wrong in a run; the report lists it.
func (r *results) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.problems = append(r.problems, msg)
	fmt.Fprintln(os.Stderr, "PROBLEM:", msg)
}

// note records a fact about the run that is no problem but helps read it
// (fairness, how a proxy answered); the report lists it.
func (r *results) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, n := range r.notes {
		if n == msg {
			return
		}
	}
	r.notes = append(r.notes, msg)
	fmt.Fprintln(os.Stderr, "NOTE:", msg)
}

func (r *results) median(key, proxy string) (float64, bool) {
	return median(r.vals[key][proxy])
}

func median(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// row is one line of the summary table.
type row struct {
	scenario string
	metric   string
	key      string
	format   string // for one value
	// target describes and checks the target, from the medians; nil for
	// rows that are only for comparison.
	target func(r *results) (text string, met string)
	// noRatio: both columns measure the same thing (a reference taken
	// without a proxy), so their ratio means nothing.
	noRatio bool
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// ratioTarget: httpmirror/nginx of key at least min.
func ratioTarget(key string, minRatio float64) func(*results) (string, string) {
	return func(r *results) (string, string) {
		text := fmt.Sprintf("≥ %.2f× nginx", minRatio)
		h, ok1 := r.median(key, hm)
		n, ok2 := r.median(key, ng)
		if !ok1 || !ok2 || n == 0 {
			return text, "n/a"
		}
		return text, yesNo(h/n >= minRatio)
	}
}

// relTarget: httpmirror's key at most factor × its own ref.
func relTarget(key, ref string, factor float64, refName string) func(*results) (string, string) {
	return func(r *results) (string, string) {
		h, ok1 := r.median(key, hm)
		l, ok2 := r.median(ref, hm)
		text := fmt.Sprintf("≤ %.1f× %s", factor, refName)
		if !ok1 || !ok2 || l == 0 {
			return text, "n/a"
		}
		return fmt.Sprintf("%s (is %.2f×)", text, h/l), yesNo(h <= factor*l)
	}
}

// belowTarget: httpmirror's key below limit in every round.
func belowTarget(key string, limit float64, unit string) func(*results) (string, string) {
	return func(r *results) (string, string) {
		v := r.vals[key][hm]
		text := fmt.Sprintf("< %.0f %s (every round)", limit, unit)
		if len(v) == 0 {
			return text, "n/a"
		}
		return text, yesNo(slices.Max(v) < limit)
	}
}

// fasterTarget: nginx's key at least factor × httpmirror's (httpmirror
// takes at most 1/factor of nginx's time).
func fasterTarget(key string, factor float64) func(*results) (string, string) {
	return func(r *results) (string, string) {
		h, ok1 := r.median(key, hm)
		n, ok2 := r.median(key, ng)
		text := fmt.Sprintf("nginx/httpmirror ≥ %.1f×", factor)
		if !ok1 || !ok2 || h == 0 {
			return text, "n/a"
		}
		return fmt.Sprintf("%s (is %.2f×)", text, n/h), yesNo(n >= factor*h)
	}
}

// atLeastTarget: httpmirror's key (a ratio of its own) at least want.
func atLeastTarget(key string, want float64, name string) func(*results) (string, string) {
	return func(r *results) (string, string) {
		h, ok := r.median(key, hm)
		text := fmt.Sprintf("%s ≥ %.2f", name, want)
		if !ok {
			return text, "n/a"
		}
		return fmt.Sprintf("%s (is %.2f)", text, h), yesNo(h >= want)
	}
}

// notAboveTarget: httpmirror's key at most limit in every round.
func notAboveTarget(key string, limit float64, unit string) func(*results) (string, string) {
	return func(r *results) (string, string) {
		v := r.vals[key][hm]
		text := fmt.Sprintf("≤ %.0f %s (every round)", limit, unit)
		if len(v) == 0 {
			return text, "n/a"
		}
		return text, yesNo(slices.Max(v) <= limit)
	}
}

// exactTarget: httpmirror's key equal to want in every round.
func exactTarget(key string, want float64) func(*results) (string, string) {
	return func(r *results) (string, string) {
		v := r.vals[key][hm]
		text := fmt.Sprintf("= %.0f (every round)", want)
		if len(v) == 0 {
			return text, "n/a"
		}
		return text, yesNo(slices.Min(v) == want && slices.Max(v) == want)
	}
}

// yes01 is 1 for true and 0 for false, for yes/no measurements.
func yes01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func summaryRows(cfg *config) []row {
	cold := sizeName(cfg.coldSize)
	big := sizeName(cfg.bigSize)
	burstName := fmt.Sprintf("%d clients", cfg.burst)
	logs := "access logs off"
	if cfg.accessLog {
		logs = "access logs on"
	}
	rows := []row{
		{fmt.Sprintf("(a) warm 4 KiB hits, wrk -t%d -c%d -d%s, %s", cfg.wrkThreads, cfg.wrkConns, cfg.wrkDuration, logs), "requests/s", "a.rps", "%.0f", ratioTarget("a.rps", 1.0), false},
		{fmt.Sprintf("(b) warm %s hits, %d parallel downloads", cold, cfg.parallel), "aggregate MB/s", "b.mbps", "%.0f", ratioTarget("b.mbps", 0.95), false},
		{fmt.Sprintf("(c) reference: lone client straight from the origin, no proxy, %s, just before each proxy's lone run", cold), "TTFB ms", "c.direct.ttfb", "%.1f", nil, true},
		{"", "TTLB ms", "c.direct.ttlb", "%.0f", nil, true},
		{fmt.Sprintf("(c) lone client, cold %s", cold), "TTFB ms", "c.lone.ttfb", "%.1f", nil, false},
		{"", "TTLB ms", "c.lone.ttlb", "%.0f", nil, false},
		{fmt.Sprintf("(c) %s at once, cold %s", burstName, cold), "TTFB median ms", "c.ttfb.med", "%.1f", nil, false},
		{"", "TTFB max ms", "c.ttfb.max", "%.1f", relTarget("c.ttfb.max", "c.lone.ttfb", 2, "lone TTFB"), false},
		{"", "TTLB max ms", "c.ttlb.max", "%.0f", relTarget("c.ttlb.max", "c.lone.ttlb", 1.2, "lone TTLB"), false},
		{"", "origin GETs", "c.gets", "%.0f", nil, true},
		{"", "fetched once (1: yes)", "c.once", "%.0f", exactTarget("c.once", 1), true},
		{"(d) peak RSS during (b)", "MiB", "b.rss", "%.1f", belowTarget("b.rss", 64, "MiB"), false},
		{"(d) peak RSS during (c) burst", "MiB", "c.rss", "%.1f", belowTarget("c.rss", 64, "MiB"), false},
		{fmt.Sprintf("(e) %s at once, cold %s", burstName, big), "peak RSS MiB", "e.rss", "%.1f", belowTarget("e.rss", 100, "MiB"), false},
		{"", "TTFB median ms", "e.ttfb.med", "%.1f", nil, false},
		{"", "TTFB max ms", "e.ttfb.max", "%.1f", nil, false},
		{"", "TTLB max ms", "e.ttlb.max", "%.0f", nil, false},
		{"", "origin GETs", "e.gets", "%.0f", nil, true},
		{"", "fetched once (1: yes)", "e.once", "%.0f", exactTarget("e.once", 1), true},
	}
	rows = append(rows, fRows(cfg)...)
	return append(rows, ghRows(cfg)...)
}

func sizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// configName names the run's configuration, for the report's heading.
func configName(cfg *config) string {
	if cfg.accessLog {
		return fmt.Sprintf("wrk -t%d, access logs on (httpmirror --log-level info to a file, nginx access_log buffer=64k flush=1s)", cfg.wrkThreads)
	}
	return fmt.Sprintf("wrk -t%d, access logs off (httpmirror --log-level warn, nginx access_log off)", cfg.wrkThreads)
}

// writeReport prints the markdown report.
func writeReport(w io.Writer, cfg *config, r *results, env map[string]string) {
	fmt.Fprintf(w, "## httpmirror vs nginx proxy_cache: %s\n\n", configName(cfg))
	fmt.Fprintf(w, "Scenarios %s. ", cfg.only)
	fmt.Fprintf(w, "Medians of %d rounds; the two proxies alternate within each round. ", cfg.rounds)
	fmt.Fprintf(w, "For nginx, RSS is the sum over all its processes. ")
	fmt.Fprintf(w, "httpmirror/nginx: above 1 means httpmirror is higher (better for req/s and MB/s, worse for times and memory).\n\n")
	fmt.Fprintln(w, "| scenario | metric | httpmirror | nginx | httpmirror/nginx | target (httpmirror) | met |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|---|---|")
	// Rows of scenarios that did not run are left out; a left-out row's
	// scenario name goes to the next row shown.
	label := ""
	for _, row := range summaryRows(cfg) {
		h, okH := r.median(row.key, hm)
		n, okN := r.median(row.key, ng)
		if row.scenario != "" {
			label = row.scenario
		}
		if !okH && !okN {
			continue
		}
		row.scenario, label = label, ""
		cell := func(v float64, ok bool) string {
			if !ok {
				return "–"
			}
			return fmt.Sprintf(row.format, v)
		}
		ratio := "–"
		if okH && okN && n != 0 && !row.noRatio {
			ratio = fmt.Sprintf("%.2f×", h/n)
		}
		target, met := "", ""
		if row.target != nil {
			target, met = row.target(r)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", row.scenario, row.metric, cell(h, okH), cell(n, okN), ratio, target, met)
	}

	fmt.Fprintf(w, "\n### Every round\n\n")
	fmt.Fprintln(w, "| metric | httpmirror | nginx |")
	fmt.Fprintln(w, "|---|---|---|")
	for _, row := range summaryRows(cfg) {
		if len(r.vals[row.key]) == 0 {
			continue
		}
		join := func(p string) string {
			var s []string
			for _, v := range r.vals[row.key][p] {
				s = append(s, fmt.Sprintf(row.format, v))
			}
			return strings.Join(s, ", ")
		}
		name := row.key + " " + row.metric
		fmt.Fprintf(w, "| %s | %s | %s |\n", name, join(hm), join(ng))
	}

	if len(r.notes) > 0 {
		fmt.Fprintf(w, "\n### Notes\n\n")
		for _, n := range r.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}

	fmt.Fprintf(w, "\n### Problems seen\n\n")
	if len(r.problems) == 0 {
		fmt.Fprintln(w, "None: every download had the right status, length and sampled bytes.")
	}
	for _, p := range r.problems {
		fmt.Fprintf(w, "- %s\n", p)
	}

	fmt.Fprintf(w, "\n### Machine\n\n")
	for _, k := range []string{"date", "cpu", "cores", "memory", "kernel", "go", "nginx", "wrk", "load before", "load after", "duration"} {
		if v, ok := env[k]; ok {
			fmt.Fprintf(w, "- %s: %s\n", k, v)
		}
	}
}

// machineFacts describes the machine the benchmark runs on.
func machineFacts(nginxBin, wrkBin string) map[string]string {
	env := map[string]string{
		"date":        time.Now().Format(time.RFC1123),
		"cores":       fmt.Sprint(runtime.NumCPU()),
		"go":          runtime.Version(),
		"nginx":       nginxVersion(nginxBin),
		"kernel":      strings.TrimSpace(readString("/proc/sys/kernel/osrelease")),
		"load before": loadAvg(),
	}
	for line := range strings.SplitSeq(readString("/proc/cpuinfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			env["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			break
		}
	}
	for line := range strings.SplitSeq(readString("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			fmt.Sscan(v, &kb)
			env["memory"] = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			break
		}
	}
	out, _ := exec.Command(wrkBin, "-v").CombinedOutput()
	if first, _, _ := strings.Cut(string(out), "\n"); first != "" {
		env["wrk"] = strings.TrimSpace(first)
	}
	return env
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func loadAvg() string {
	f := strings.Fields(readString("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ") + " (1, 5, 15 min)"
}
