package cidn

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the CIDN client's Prometheus collectors. Create it with
// NewMetrics and set it on Config.Metrics; a nil *Metrics records nothing.
// (Misses that CIDN could not take are counted by the handler, as
// httpmirror_cidn_fallbacks_total.)
type Metrics struct {
	created  prometheus.Counter
	finished *prometheus.CounterVec
	waiting  prometheus.Gauge
	errors   *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counters := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "httpmirror_cidn_waiting_requests",
		Help: "Requests following a CIDN transfer.",
	})
	reg.MustRegister(waiting)
	return &Metrics{
		created: counters("httpmirror_cidn_blobs_created_total",
			"CIDN Blobs this mirror created (a Blob that existed already is not counted).").WithLabelValues(),
		finished: counters("httpmirror_cidn_blobs_finished_total",
			"CIDN Blobs followed to their end, by result: succeeded, failed or deleted (before it ended).", "result"),
		waiting: waiting,
		errors: counters("httpmirror_cidn_api_errors_total",
			"Failed requests to the CIDN API server, by operation: create, get, delete.", "op"),
	}
}

func (m *Metrics) blobCreated() {
	if m != nil {
		m.created.Inc()
	}
}

func (m *Metrics) blobFinished(result string) {
	if m != nil {
		m.finished.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) addWaiting(n int) {
	if m != nil {
		m.waiting.Add(float64(n))
	}
}

func (m *Metrics) apiError(op string) {
	if m != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}
