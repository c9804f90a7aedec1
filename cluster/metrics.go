package cluster

import "github.com/prometheus/client_golang/prometheus"

// Metrics holds the cluster's Prometheus collectors. Create it with
// NewMetrics and set it on Config.Metrics; a nil *Metrics records nothing.
type Metrics struct {
	fills        *prometheus.CounterVec
	renewals     *prometheus.CounterVec
	peerErrors   *prometheus.CounterVec
	peerRequests *prometheus.CounterVec
	sweeps       prometheus.Counter
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counters := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	return &Metrics{
		fills: counters("httpmirror_cluster_fills_total",
			"Coordinated fills, by where their bytes came from: origin (this replica won the lease), takeover (it took a dead owner's lease over: at a miss, or when the owner's stream broke), peer (streamed from the lease's owner), stored (the owner had committed the object), unleased (from the origin without a lease: the store failed, or the owner stayed unreachable).", "source"),
		renewals: counters("httpmirror_cluster_lease_renewals_total",
			"Lease renewals, by result: renewed, stalled (skipped: the fill made no progress), lost (another replica took the lease over), failed (store error).", "result"),
		peerErrors: counters("httpmirror_cluster_peer_errors_total",
			"Failed requests to other replicas, by kind: unreachable, not_filling, refused (secret).", "kind"),
		peerRequests: counters("httpmirror_cluster_peer_requests_total",
			"Requests from other replicas on the peer listener, by result: served, unauthorized (no secret), forbidden (wrong secret).", "result"),
		sweeps: counters("httpmirror_cluster_leases_swept_total",
			"Abandoned leases (expired over a lease duration ago) removed by the sweep.").WithLabelValues(),
	}
}

func (m *Metrics) fill(source string) {
	if m != nil {
		m.fills.WithLabelValues(source).Inc()
	}
}

func (m *Metrics) renewal(result string) {
	if m != nil {
		m.renewals.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) peerError(kind string) {
	if m != nil {
		m.peerErrors.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) peerRequest(result string) {
	if m != nil {
		m.peerRequests.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) swept() {
	if m != nil {
		m.sweeps.Inc()
	}
}
