package httpmirror

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/pipeline"
	"github.com/httpmirror/httpmirror/storage"
)

// Metrics holds httpmirror's Prometheus collectors. Create it with
// NewMetrics and set it on MirrorHandler.Metrics; a nil *Metrics records
// nothing.
type Metrics struct {
	reg prometheus.Registerer

	cidnFallbacks prometheus.Counter
	purgedObjects prometheus.Counter
	invalidations *prometheus.CounterVec
	expiredObjs   prometheus.Counter
	prefetches    *prometheus.CounterVec
	authChecks    *prometheus.CounterVec
	variantsCut   prometheus.Counter
	mismatches    *prometheus.CounterVec

	requests        *prometheus.CounterVec
	servedBytes     *prometheus.CounterVec
	upstreamBytes   prometheus.Counter
	upstreamLatency prometheus.Observer
	upstreamErrors  *prometheus.CounterVec
	fills           *prometheus.CounterVec
	storageErrors   *prometheus.CounterVec
	storageLatency  *prometheus.HistogramVec

	counters     sync.Map // outcome<<16|code -> prometheus.Counter of requests
	storageOps   sync.Map // op -> prometheus.Observer of storage latency
	servedCache  prometheus.Counter
	servedOrigin prometheus.Counter

	origins *originMetrics // per origin host (origins.go)
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counters := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	histograms := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		reg.MustRegister(h)
		return h
	}
	m := &Metrics{
		reg: reg,
		requests: counters("httpmirror_requests_total",
			"Requests answered, by outcome (hit, miss, joined, direct, blocked, refused, invalid, error) and status code.", "outcome", "code"),
		servedBytes: counters("httpmirror_served_bytes_total",
			"Body bytes sent to clients, by source: cache (hits) or origin (fills and direct proxying).", "source"),
		upstreamBytes: counters("httpmirror_upstream_bytes_total",
			"Body bytes received from origins by fills.").WithLabelValues(),
		upstreamLatency: histograms("httpmirror_upstream_response_seconds",
			"Time from sending an upstream request to receiving its response headers.",
			prometheus.ExponentialBuckets(0.005, 2.5, 10)).WithLabelValues(),
		upstreamErrors: counters("httpmirror_upstream_errors_total",
			"Failed upstream fetches, by kind: timeout, refused, connect, status_4xx, status_5xx, short_body, changed, other.", "kind"),
		fills: counters("httpmirror_fills_total",
			"Finished fills, by result: stored, not_stored (not storable, or storage failed: clients served from the spool), not_modified (revalidated), abandoned (not storable and no client left), too_large (over --max-object-size), spool_failed (no local disk: clients continued from the origin), cancelled (by a purge), digest_mismatch (the bytes did not match a published digest: nothing stored) or failed.", "result"),
		storageErrors: counters("httpmirror_storage_errors_total",
			"Storage backend errors (not-found excluded), by operation.", "op"),
		storageLatency: histograms("httpmirror_storage_operation_seconds",
			"Duration of storage backend operations, by operation (the opens of in-memory hits answered by the public listener's hit loop are not timed).",
			prometheus.ExponentialBuckets(0.0001, 4, 10), "op"),
		cidnFallbacks: counters("httpmirror_cidn_fallbacks_total",
			"Misses fetched by the built-in fill engine because CIDN could not be asked to store them.").WithLabelValues(),
		purgedObjects: counters("httpmirror_purged_objects_total",
			"Stored objects removed by purges on the admin API.").WithLabelValues(),
		invalidations: counters("httpmirror_invalidations_total",
			"Stored objects marked stale by invalidations on the admin API (the next request for each revalidates it with the origin), by kind: key, prefix, glob or all.", "kind"),
		expiredObjs: counters("httpmirror_expired_objects_total",
			"Stored objects removed because nobody read them for --max-idle.").WithLabelValues(),
		prefetches: counters("httpmirror_prefetch_urls_total",
			"Prefetched URLs, by result: done (fetched and stored), cached (stored already), not_stored, failed or cancelled.", "result"),
		mismatches: counters("httpmirror_digest_mismatches_total",
			"Fills whose bytes did not match a digest the URL or the origin published, by the digest's source (url, digest-path, repr-digest, content-digest, linked-etag, etag, amz-checksum, goog-hash, content-md5): nothing was stored, every transfer was aborted.", "source"),
		variantsCut: counters("httpmirror_variants_not_stored_total",
			"Responses for a variant of a URL that varies (Vary) served without being stored, because --max-variants variants of the URL are stored.").WithLabelValues(),
		authChecks: counters("httpmirror_auth_checks_total",
			"Authorisation checks at origins of credentials for objects stored with --auth-cache, by result: allowed, denied, unproven (the answer did not identify the stored object) or error.", "result"),
	}
	m.servedCache = m.servedBytes.WithLabelValues("cache")
	m.servedOrigin = m.servedBytes.WithLabelValues("origin")
	m.origins = newOriginMetrics(reg)
	return m
}

// purged counts objects removed by a purge.
func (m *Metrics) purged(n int) {
	if m != nil && n > 0 {
		m.purgedObjects.Add(float64(n))
	}
}

// expired counts objects removed by the MaxIdle sweep.
func (m *Metrics) expired(n int) {
	if m != nil && n > 0 {
		m.expiredObjs.Add(float64(n))
	}
}

// variantNotStored counts a variant served but not stored.
func (m *Metrics) variantNotStored() {
	if m != nil {
		m.variantsCut.Inc()
	}
}

// prefetched counts a prefetched URL by how it ended.
func (m *Metrics) prefetched(result string) {
	if m != nil {
		m.prefetches.WithLabelValues(result).Inc()
	}
}

// cidnFallback counts a miss that CIDN could not take.
func (m *Metrics) cidnFallback() {
	if m != nil {
		m.cidnFallbacks.Inc()
	}
}

// authCheck counts an authorisation check by its result.
func (m *Metrics) authCheck(result string) {
	if m != nil {
		m.authChecks.WithLabelValues(result).Inc()
	}
}

// watch registers gauges that read the handler's live state. A second
// handler sharing the same Metrics keeps the first one's gauges.
func (m *Metrics) watch(h *MirrorHandler) {
	if m == nil {
		return
	}
	m.origins.setAllow(h.AllowHosts)
	register := func(c prometheus.Collector) {
		if err := m.reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err)
			}
		}
	}
	register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "httpmirror_fills_in_progress",
		Help: "Upstream downloads running.",
	}, func() float64 { return float64(h.FillsInProgress()) }))
	if s, ok := h.RemoteCache.(storage.StatsReporter); ok {
		register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "httpmirror_cache_bytes",
			Help: "Bytes held by the cache, objects being written included.",
		}, func() float64 { return float64(s.Stats().Bytes) }))
		register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "httpmirror_cache_objects",
			Help: "Objects in the cache.",
		}, func() float64 { return float64(s.Stats().Objects) }))
		register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "httpmirror_cache_evictions_total",
			Help: "Objects evicted to keep the cache under its size limit.",
		}, func() float64 { return float64(s.Stats().Evictions) }))
	}
}

// requestCounter returns the requests counter of an outcome and status,
// looked up once: the hit path then neither formats the code nor hashes
// label values.
func (m *Metrics) requestCounter(o pipeline.Outcome, code int) prometheus.Counter {
	id := uint32(o)<<16 | uint32(code&0xffff)
	if c, ok := m.counters.Load(id); ok {
		return c.(prometheus.Counter)
	}
	c := m.requests.WithLabelValues(o.String(), strconv.Itoa(code))
	m.counters.Store(id, c)
	return c
}

// request records one answered request.
func (m *Metrics) request(o pipeline.Outcome, code int, bytes int64) {
	if m == nil {
		return
	}
	m.requestCounter(o, code).Inc()
	if bytes == 0 || code >= 400 {
		return // error bodies are not content
	}
	switch o {
	case pipeline.OutcomeHit:
		m.servedCache.Add(float64(bytes))
	case pipeline.OutcomeMiss, pipeline.OutcomeJoined, pipeline.OutcomeDirect:
		m.servedOrigin.Add(float64(bytes))
	}
}

// upstreamResponse records the latency of an upstream request that got a
// response. Failures are counted where the request's user sees them
// (fillObserver, the direct proxy).
func (m *Metrics) upstreamResponse(d time.Duration) {
	if m != nil {
		m.upstreamLatency.Observe(d.Seconds())
	}
}

// upstreamError counts a failed upstream fetch of the kind of its
// pipeline.Failure.
func (m *Metrics) upstreamError(kind string) {
	if m != nil {
		m.upstreamErrors.WithLabelValues(kind).Inc()
	}
}

// storageObserver returns the storage decorator's observer: nil (nothing
// recorded) without metrics.
func (m *Metrics) storageObserver() storage.OpObserver {
	if m == nil {
		return nil
	}
	return m.storageOp
}

// storageObserverOf returns the latency histogram of op, looked up once
// per operation name: every hit opens an object, and hashing the label
// each time would cost more than the histogram itself.
func (m *Metrics) storageObserverOf(op string) prometheus.Observer {
	if o, ok := m.storageOps.Load(op); ok {
		return o.(prometheus.Observer)
	}
	o := m.storageLatency.WithLabelValues(op)
	m.storageOps.Store(op, o)
	return o
}

// storageOp records a storage operation's duration and, unless it is a
// plain not-found, its error.
func (m *Metrics) storageOp(op string, d time.Duration, err error) {
	m.storageObserverOf(op).Observe(d.Seconds())
	if err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrInvalidToken) {
		m.storageErrors.WithLabelValues(op).Inc()
	}
}

// fillObserver feeds the fill engine's events into the metrics.
type fillObserver struct{ m *Metrics }

func (o fillObserver) UpstreamBytes(n int) {
	if o.m != nil {
		o.m.upstreamBytes.Add(float64(n))
	}
}

func (o fillObserver) FillDone(key string, bytes int64, stored bool, err error, d time.Duration) {
	if o.m == nil {
		return
	}
	var de *fill.DigestError
	switch {
	case errors.Is(err, fill.ErrNotModified):
		o.m.fills.WithLabelValues("not_modified").Inc()
	case errors.Is(err, fill.ErrAbandoned):
		o.m.fills.WithLabelValues("abandoned").Inc()
	case errors.Is(err, fill.ErrTooLarge):
		o.m.fills.WithLabelValues("too_large").Inc()
	case errors.Is(err, fill.ErrSpool):
		o.m.fills.WithLabelValues("spool_failed").Inc()
	case errors.Is(err, fill.ErrCancelled):
		o.m.fills.WithLabelValues("cancelled").Inc()
	case errors.As(err, &de):
		o.m.fills.WithLabelValues("digest_mismatch").Inc()
		o.m.mismatches.WithLabelValues(de.Source).Inc()
	case err == nil && stored:
		o.m.fills.WithLabelValues("stored").Inc()
	case err == nil:
		o.m.fills.WithLabelValues("not_stored").Inc()
	default:
		o.m.fills.WithLabelValues("failed").Inc()
		if !errors.Is(err, fill.ErrShutdown) {
			o.m.upstreamError(pipeline.Classify(context.Background(), err).Kind)
		}
	}
}

// StorageObserver returns the observer that times storage operations in
// m's metrics (httpmirror_storage_operation_seconds), for a store used
// beside the handler, such as the leases of a Coordinator: wrap it with
// storage.Instrument. Nil (nothing recorded) for a nil *Metrics.
func (m *Metrics) StorageObserver() storage.OpObserver { return m.storageObserver() }
