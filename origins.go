package httpmirror

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/httpmirror/httpmirror/internal/pipeline"
)

// MaxOriginLabels is how many origin hosts get a value of the "origin"
// label of their own, in the per-origin metrics and on the status page,
// when AllowHosts is empty: the first hosts seen, in order; every later
// one is counted as "other". Every host could otherwise be a new time
// series, and anyone who reaches an open mirror chooses the hosts. With
// AllowHosts, the label is the AllowHosts entry a host matched, and the
// list bounds the values.
const MaxOriginLabels = 50

// OriginOther is the "origin" label of the hosts past MaxOriginLabels
// (or, with AllowHosts, of a host no entry matches: none reaches the
// metrics, as such requests are refused before their host is known).
const OriginOther = "other"

// maxOriginHosts bounds the hosts whose label is remembered, so that the
// label is found without a lock or a glob match. Past it (an open mirror
// asked for thousands of hosts, or a wildcard entry for thousands of
// subdomains) a host's label is found again at each request.
const maxOriginHosts = 4096

// originMetrics counts requests and bytes by origin: requests by result,
// body bytes by source.
type originMetrics struct {
	requests *prometheus.CounterVec // origin, result
	bytes    *prometheus.CounterVec // origin, source

	// hosts maps a canonical host[:port] to its label's counters: a map
	// replaced, never changed, so that a hit reads it without a lock or
	// an allocation (a sync.Map would box the key).
	hosts atomic.Pointer[map[string]*originCounters]

	mu     sync.Mutex
	allow  []pipeline.HostRules // one per AllowHosts entry, nil: first come
	names  []string             // the AllowHosts entries
	set    bool                 // allow was set, by the first handler
	labels map[string]*originCounters
	open   int // labels given to hosts, without AllowHosts
}

// originCounters are the counters of one "origin" label value.
type originCounters struct {
	label                                    string
	hit, miss, joined, direct, failed, other prometheus.Counter
	cache, origin                            prometheus.Counter
}

func newOriginMetrics(reg prometheus.Registerer) *originMetrics {
	o := &originMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "httpmirror_origin_requests_total",
			Help: "Requests answered for each origin (see MaxOriginLabels for the values of origin), by result: hit, miss, joined, direct (answered with a status below 400 from the cache, from a download the request started or joined, or proxied without a cache), error (failed on the mirror's or the origin's side) or other (any other answer, such as the origin's 404).",
		}, []string{"origin", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "httpmirror_origin_served_bytes_total",
			Help: "Body bytes sent to clients for each origin, by source: cache (hits) or origin (fills and direct proxying).",
		}, []string{"origin", "source"}),
		labels: map[string]*originCounters{},
	}
	reg.MustRegister(o.requests, o.bytes)
	return o
}

// setAllow sets the AllowHosts the labels are made of: the first handler
// set up with the metrics decides, as it does for the gauges of watch.
func (o *originMetrics) setAllow(allow []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.set {
		return
	}
	o.set = true
	for _, p := range allow {
		if p == "" {
			continue
		}
		// One rule per entry, matched by the very code that enforces
		// the list, so a host's label is the entry that let it in.
		o.allow = append(o.allow, pipeline.HostRules{Allow: []string{p}})
		o.names = append(o.names, p)
	}
}

// counters returns the counters of host's label.
func (o *originMetrics) counters(host string) *originCounters {
	if hosts := o.hosts.Load(); hosts != nil {
		if c := (*hosts)[host]; c != nil {
			return c
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	label := OriginOther
	switch {
	case o.allow != nil:
		for i := range o.allow {
			if o.allow[i].Allowed(host) {
				label = o.names[i]
				break
			}
		}
	case o.labels[host] != nil:
		label = host
	case o.open < MaxOriginLabels:
		label = host
		o.open++
	}
	c := o.labels[label]
	if c == nil {
		req := func(result string) prometheus.Counter { return o.requests.WithLabelValues(label, result) }
		c = &originCounters{
			label: label,
			hit:   req("hit"), miss: req("miss"), joined: req("joined"), direct: req("direct"),
			failed: req("error"), other: req("other"),
			cache: o.bytes.WithLabelValues(label, "cache"), origin: o.bytes.WithLabelValues(label, "origin"),
		}
		o.labels[label] = c
	}
	if old := o.hosts.Load(); old == nil || len(*old) < maxOriginHosts && (*old)[host] == nil {
		// Copied under mu: each new host costs a copy, of at most
		// maxOriginHosts entries, once.
		hosts := make(map[string]*originCounters, 1+len(o.labels))
		if old != nil {
			hosts = maps.Clone(*old)
		}
		hosts[host] = c
		o.hosts.Store(&hosts)
	}
	return c
}

// origin records one answered request under its origin's label, by the
// rules of Metrics.request: hits, misses and joins are answers below 400,
// and error bodies are no content. Requests whose origin is unknown (a
// malformed path, a host not allowed) have no origin to count them under.
func (m *Metrics) origin(e *pipeline.Exchange) {
	if m == nil || e.Host == "" {
		return
	}
	c := m.origins.counters(e.Host)
	var n prometheus.Counter
	switch {
	case e.Outcome == pipeline.OutcomeError:
		n = c.failed
	case e.Status >= 400:
		n = c.other
	case e.Outcome == pipeline.OutcomeHit:
		n = c.hit
	case e.Outcome == pipeline.OutcomeMiss:
		n = c.miss
	case e.Outcome == pipeline.OutcomeJoined:
		n = c.joined
	case e.Outcome == pipeline.OutcomeDirect:
		n = c.direct
	default:
		n = c.other
	}
	n.Inc()
	if e.Bytes == 0 || e.Status >= 400 {
		return
	}
	switch e.Outcome {
	case pipeline.OutcomeHit:
		c.cache.Add(float64(e.Bytes))
	case pipeline.OutcomeMiss, pipeline.OutcomeJoined, pipeline.OutcomeDirect:
		c.origin.Add(float64(e.Bytes))
	}
}

// OriginStatus is the traffic of one origin, as the per-origin metrics
// count it (see MaxOriginLabels).
type OriginStatus struct {
	// Origin is the value of the metrics' "origin" label: a host, an
	// AllowHosts entry, or "other".
	Origin string `json:"origin"`
	// Requests counts every answer; Hits, Misses and Joined the
	// successful ones (status < 400) from storage, from a download the
	// request started, and from one it joined; Errors those that failed
	// on the mirror's or the origin's side.
	Requests int64 `json:"requests"`
	Hits     int64 `json:"hits"`
	Misses   int64 `json:"misses"`
	Joined   int64 `json:"joined"`
	Errors   int64 `json:"errors"`
	// HitRatio is Hits / (Hits + Misses + Joined); 0 before any.
	HitRatio    float64 `json:"hitRatio"`
	CacheBytes  int64   `json:"cacheBytes"`
	OriginBytes int64   `json:"originBytes"`
}

// originStatus reads the per-origin counters, busiest origin first; nil
// without metrics.
func (m *Metrics) originStatus() []OriginStatus {
	if m == nil {
		return nil
	}
	o := m.origins
	o.mu.Lock()
	all := make([]*originCounters, 0, len(o.labels))
	for _, c := range o.labels {
		all = append(all, c)
	}
	o.mu.Unlock()
	out := make([]OriginStatus, 0, len(all))
	for _, c := range all {
		v := func(c prometheus.Counter) int64 { return int64(counterValue(c)) }
		s := OriginStatus{
			Origin: c.label, Hits: v(c.hit), Misses: v(c.miss), Joined: v(c.joined), Errors: v(c.failed),
			CacheBytes: v(c.cache), OriginBytes: v(c.origin),
		}
		s.Requests = s.Hits + s.Misses + s.Joined + s.Errors + v(c.direct) + v(c.other)
		if n := s.Hits + s.Misses + s.Joined; n > 0 {
			s.HitRatio = float64(s.Hits) / float64(n)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b OriginStatus) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Origin, b.Origin))
	})
	return out
}
