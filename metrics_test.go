package httpmirror_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/httpmirror/httpmirror"
)

// scrape fetches /metrics over HTTP and parses it with the Prometheus text
// parser.
func scrape(t *testing.T, u string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include want, or 0.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range f.Metric {
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func TestMetricsMove(t *testing.T) {
	o := newOrigin(t)
	data := payload(30, 300000)
	o.Put("/m.bin", data)
	reg := prometheus.NewRegistry()
	metrics := httpmirror.NewMetrics(reg)
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.Metrics = metrics
		m.BlockSuffix = []string{".exe"}
	})
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	u := ms.URL + "/metrics"
	req := func(f map[string]*dto.MetricFamily, outcome, code string) float64 {
		return value(f, "httpmirror_requests_total", map[string]string{"outcome": outcome, "code": code})
	}

	before := scrape(t, u)
	// A miss and a joiner: the origin pauses after the first bytes until
	// the second request is in.
	paused := make(chan struct{})
	resume := newGate(t)
	o.SetHook(stallingHook(100000, func() { close(paused) }, resume))
	first, err := http.Get(m.url(o, "/m.bin"))
	if err != nil {
		t.Fatal(err)
	}
	<-paused
	second, err := http.Get(m.url(o, "/m.bin"))
	if err != nil {
		t.Fatal(err)
	}
	mid := scrape(t, u)
	if got := value(mid, "httpmirror_fills_in_progress", nil); got != 1 {
		t.Errorf("fills in progress during the fill = %v; want 1", got)
	}
	resume.Open()
	io.Copy(io.Discard, first.Body)
	io.Copy(io.Discard, second.Body)
	first.Body.Close()
	second.Body.Close()
	waitFills(t, m)
	o.SetHook(nil)
	get(t, m.url(o, "/m.bin"))             // hit
	get(t, m.url(o, "/setup.exe"))         // blocked
	do(t, "POST", m.url(o, "/m.bin"), nil) // invalid
	after := scrape(t, u)

	for _, c := range []struct {
		outcome, code string
		want          float64
	}{
		{"miss", "200", 1}, {"joined", "200", 1}, {"hit", "200", 1}, {"blocked", "403", 1}, {"invalid", "405", 1},
	} {
		if got := req(after, c.outcome, c.code) - req(before, c.outcome, c.code); got != c.want {
			t.Errorf("requests{outcome=%s,code=%s} moved by %v; want %v", c.outcome, c.code, got, c.want)
		}
	}
	if got := value(after, "httpmirror_served_bytes_total", map[string]string{"source": "cache"}); got != float64(len(data)) {
		t.Errorf("bytes served from cache = %v; want %d", got, len(data))
	}
	if got := value(after, "httpmirror_served_bytes_total", map[string]string{"source": "origin"}); got != float64(2*len(data)) {
		t.Errorf("bytes served from origin = %v; want %d", got, 2*len(data))
	}
	if got := value(after, "httpmirror_upstream_bytes_total", nil); got != float64(len(data)) {
		t.Errorf("upstream bytes = %v; want %d", got, len(data))
	}
	if got := value(after, "httpmirror_fills_total", map[string]string{"result": "stored"}); got != 1 {
		t.Errorf("stored fills = %v; want 1", got)
	}
	if got := value(after, "httpmirror_upstream_response_seconds", nil); got != 1 {
		t.Errorf("upstream latency samples = %v; want 1", got)
	}
	if got := value(after, "httpmirror_fills_in_progress", nil); got != 0 {
		t.Errorf("fills in progress after the fill = %v; want 0", got)
	}
	if got := value(after, "httpmirror_storage_operation_seconds", map[string]string{"op": "commit"}); got != 1 {
		t.Errorf("storage commits observed = %v; want 1", got)
	}
	for name := range after {
		if !strings.HasPrefix(name, "httpmirror_") {
			t.Errorf("metric %s lacks the httpmirror_ prefix", name)
		}
	}
}

func TestMetricsCountUpstreamErrors(t *testing.T) {
	o := newOrigin(t)
	reg := prometheus.NewRegistry()
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.Metrics = httpmirror.NewMetrics(reg) })
	get(t, m.url(o, "/missing")) // origin 404
	addr := o.HostPort()
	o.Close()
	get(t, m.URL+"/"+addr+"/gone") // connection refused
	ms := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer ms.Close()
	f := scrape(t, ms.URL)
	if got := value(f, "httpmirror_upstream_errors_total", map[string]string{"kind": "status_4xx"}); got != 1 {
		t.Errorf("status_4xx errors = %v; want 1", got)
	}
	if got := value(f, "httpmirror_upstream_errors_total", map[string]string{"kind": "connect"}); got != 1 {
		t.Errorf("connect errors = %v; want 1", got)
	}
	if got := value(f, "httpmirror_requests_total", map[string]string{"outcome": "error", "code": "502"}); got != 1 {
		t.Errorf("502 errors = %v; want 1", got)
	}
	if got := value(f, "httpmirror_requests_total", map[string]string{"outcome": "miss", "code": "404"}); got != 1 {
		t.Errorf("misses answered 404 = %v; want 1", got)
	}
}

// gathered is value of what reg holds now.
func gathered(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	return value(byName, name, want)
}
