package httpmirror

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/httpmirror/httpmirror/internal/pipeline"
)

// originSeries reads the per-origin request counters from reg: origin ->
// result -> count.
func originSeries(t *testing.T, reg *prometheus.Registry) map[string]map[string]int64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]int64{}
	for _, mf := range mfs {
		if mf.GetName() != "httpmirror_origin_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var origin, result string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "origin":
					origin = l.GetValue()
				case "result":
					result = l.GetValue()
				}
			}
			if out[origin] == nil {
				out[origin] = map[string]int64{}
			}
			out[origin][result] += int64(m.GetCounter().GetValue())
		}
	}
	return out
}

// newOriginObserver returns the observer a handler with allow would use,
// with fresh metrics on reg.
func newOriginObserver(reg *prometheus.Registry, allow []string) *observer {
	m := NewMetrics(reg)
	m.origins.setAllow(allow)
	return &observer{fillObserver: fillObserver{m}, m: m, log: slog.New(slog.DiscardHandler), errors: new(errorRing), now: time.Now}
}

// An open mirror asked for 10,000 different hosts (anyone who reaches it
// chooses them) keeps MaxOriginLabels values of the origin label, the
// first hosts seen, and counts every later host as "other": nothing is
// lost, and /metrics stays small.
func TestOriginLabelsBoundedWithoutAllowList(t *testing.T) {
	reg := prometheus.NewRegistry()
	o := newOriginObserver(reg, nil)
	const hosts = 10000
	for i := range hosts {
		o.Exchange(context.Background(), &pipeline.Exchange{Method: "GET", Host: fmt.Sprintf("h%d.example.com", i), Status: 200, Bytes: 10, Outcome: pipeline.OutcomeMiss})
	}
	// The first host again: it keeps its label.
	o.Exchange(context.Background(), &pipeline.Exchange{Method: "GET", Host: "h0.example.com", Status: 200, Bytes: 10, Outcome: pipeline.OutcomeHit})
	got := originSeries(t, reg)
	if len(got) != MaxOriginLabels+1 {
		t.Fatalf("%d origin label values; want %d (the first hosts and %q)", len(got), MaxOriginLabels+1, OriginOther)
	}
	for i := range MaxOriginLabels {
		if h := fmt.Sprintf("h%d.example.com", i); got[h]["miss"] != 1 {
			t.Errorf("origin %s: %v; want 1 miss", h, got[h])
		}
	}
	if got["h0.example.com"]["hit"] != 1 {
		t.Errorf("origin h0.example.com: %v; want its hit counted under its own label", got["h0.example.com"])
	}
	if n := got[OriginOther]["miss"]; n != hosts-MaxOriginLabels {
		t.Errorf("origin %q: %d misses; want %d", OriginOther, n, hosts-MaxOriginLabels)
	}
	st := o.m.originStatus()
	if len(st) != MaxOriginLabels+1 || st[0].Origin != OriginOther || st[0].Requests != hosts-MaxOriginLabels || st[0].OriginBytes != 10*(hosts-MaxOriginLabels) {
		t.Errorf("status: %d origins, the busiest %+v; want %d, %q first with %d requests", len(st), st[0], MaxOriginLabels+1, OriginOther, hosts-MaxOriginLabels)
	}
	if s := st[1]; s.Origin != "h0.example.com" || s.Hits != 1 || s.Misses != 1 || s.HitRatio != 0.5 || s.CacheBytes != 10 || s.OriginBytes != 10 {
		t.Errorf("status of h0.example.com: %+v; want 1 hit and 1 miss of 10 bytes each, second busiest", s)
	}
}

// With AllowHosts the label is the entry a host matched, as written: a
// wildcard entry is one label however many subdomains clients ask for,
// an entry with a port matches host:port, and results and bytes follow
// the rules of the overall counters.
func TestOriginLabelsAreAllowListEntries(t *testing.T) {
	reg := prometheus.NewRegistry()
	allow := []string{"*.HF.co", "huggingface.co", "127.0.0.1:8443", ""}
	o := newOriginObserver(reg, allow)
	for i := range 5000 {
		o.Exchange(context.Background(), &pipeline.Exchange{Host: fmt.Sprintf("cdn-%d.hf.co", i), Status: 200, Bytes: 100, Outcome: pipeline.OutcomeHit})
	}
	x := func(host string, status int, outcome pipeline.Outcome) {
		o.Exchange(context.Background(), &pipeline.Exchange{Host: host, Status: status, Bytes: 7, Outcome: outcome})
	}
	x("huggingface.co", 200, pipeline.OutcomeMiss)
	x("huggingface.co", 206, pipeline.OutcomeJoined)
	x("huggingface.co", 404, pipeline.OutcomeMiss) // the origin's 404: other, and no content
	x("huggingface.co", 502, pipeline.OutcomeError)
	x("127.0.0.1:8443", 200, pipeline.OutcomeDirect)
	x("127.0.0.1:9443", 200, pipeline.OutcomeMiss) // matches no entry: never allowed in, but counted
	x("", 400, pipeline.OutcomeInvalid)            // no origin: not counted per origin
	got := originSeries(t, reg)
	want := map[string]map[string]int64{
		"*.HF.co":        {"hit": 5000},
		"huggingface.co": {"miss": 1, "joined": 1, "other": 1, "error": 1},
		"127.0.0.1:8443": {"direct": 1},
		OriginOther:      {"miss": 1},
	}
	if len(got) != len(want) {
		t.Errorf("origin labels %v; want those of %v", got, want)
	}
	for origin, results := range want {
		for result, n := range results {
			if got[origin][result] != n {
				t.Errorf("origin %q result %q: %d; want %d", origin, result, got[origin][result], n)
			}
		}
	}
	st := o.m.originStatus()
	byName := map[string]OriginStatus{}
	for _, s := range st {
		byName[s.Origin] = s
	}
	if s := byName["huggingface.co"]; s.Requests != 4 || s.Errors != 1 || s.OriginBytes != 14 || s.CacheBytes != 0 || s.HitRatio != 0 {
		t.Errorf("huggingface.co: %+v; want 4 requests, 1 error, 14 bytes from the origin", s)
	}
	if st[0].Origin != "*.HF.co" || st[0].CacheBytes != 500000 || st[0].HitRatio != 1 {
		t.Errorf("busiest origin %+v; want *.HF.co, 500000 bytes from the cache, every request a hit", st[0])
	}
}

// Counting a request of a host seen before allocates nothing: the hit
// path pays one map read.
func TestOriginCountingAllocatesNothing(t *testing.T) {
	o := newOriginObserver(prometheus.NewRegistry(), nil)
	e := &pipeline.Exchange{Host: "example.com", Status: 200, Bytes: 1000, Outcome: pipeline.OutcomeHit}
	o.m.origin(e)
	if n := testing.AllocsPerRun(100, func() { o.m.origin(e) }); n != 0 {
		t.Errorf("%v allocations per counted request; want 0", n)
	}
}
