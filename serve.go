package httpmirror

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/pipeline"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// Validate checks the handler's configuration.
func (m *MirrorHandler) Validate() error {
	modes := 0
	if m.Host != "" {
		modes++
		h, err := pipeline.CanonicalHost(m.Host)
		if err != nil {
			return fmt.Errorf("host %q is not a valid upstream host name", m.Host)
		}
		if !(&pipeline.HostRules{Allow: m.AllowHosts}).Allowed(h) {
			return fmt.Errorf("host %q is not among the allowed hosts", m.Host)
		}
	}
	if m.HostFromFirstPath {
		modes++
	}
	if m.BaseDomain != "" {
		modes++
	}
	if modes > 1 {
		return errors.New("choose one of host, host-from-first-path and base-domain")
	}
	switch m.UpstreamScheme {
	case "", "http", "https":
	default:
		return fmt.Errorf("upstream scheme %q is neither http nor https", m.UpstreamScheme)
	}
	if m.CIDN != nil && m.RemoteCache == nil {
		return errors.New("CIDN needs a cache: CIDN stores files in RemoteCache")
	}
	if m.Coordinator != nil && m.RemoteCache == nil {
		return errors.New("a Coordinator needs a cache: replicas share the files of one store")
	}
	if m.LinkExpires < 0 || m.CheckSyncTimeout < 0 || m.AuthCacheTTL < 0 || m.ContinuationGetInterval < 0 || m.ContinuationGetRetry < 0 {
		return errors.New("durations and retry counts must not be negative")
	}
	if m.FillConnections < 0 || m.FillSegmentSize < 0 {
		return errors.New("fill connections and segment size must not be negative")
	}
	if m.MaxObjectSize < 0 {
		return errors.New("the maximum object size must not be negative")
	}
	if m.MaxRanges < 0 {
		return errors.New("the number of ranges must not be negative")
	}
	if err := m.validateMaxIdle(); err != nil {
		return err
	}
	if _, err := m.digestRules(); err != nil {
		return err
	}
	return nil
}

// digestRules compiles DigestPaths.
func (m *MirrorHandler) digestRules() (policy.DigestRules, error) {
	var r policy.DigestRules
	for _, p := range m.DigestPaths {
		re, err := policy.ParseDigestPath(p)
		if err != nil {
			return r, fmt.Errorf("digest path %q: %w", p, err)
		}
		r.Paths = append(r.Paths, re)
	}
	return r, nil
}

// ServeHTTP implements http.Handler.
//
// Only GET and HEAD are served (405 otherwise). The request is resolved to
// an origin and a path (404 when it names none, 400 when it is malformed,
// 414 when too long, 403 for a blocked suffix, a host not in AllowHosts or
// a forbidden upstream address). Without a cache the request is proxied;
// with one, a hit is served from storage or redirected to a signed URL,
// and a miss is fetched, stored and streamed. See package
// internal/pipeline for the path a request takes.
func (m *MirrorHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := m.setup(); err != nil {
		http.Error(w, "mirror misconfigured", http.StatusInternalServerError)
		return
	}
	m.p.ServeHTTP(w, r)
}

// ServeHit answers req when it is a plain hit, for a serving loop that
// answers such requests without net/http (cmd/httpmirror's public
// listener does, see internal/server): a GET or HEAD without conditions or
// ranges, of a stored object whose body is in memory or in a local file,
// that the client may have as it is. It fills resp and reports true; the
// loop then sends the response and calls HitSent. Otherwise it reports false, has answered
// nothing and counted nothing, and req must be served by ServeHTTP; resp
// keeps the decision made for it, which the loop hands over with the
// connection (see pipeline.Handover), so that ServeHTTP acts on it rather
// than deciding again.
//
// Its answers are those ServeHTTP gives the same requests, byte for byte
// but for the order of header fields.
func (m *MirrorHandler) ServeHit(req *HitRequest, resp *HitResponse) bool {
	if m.setup() != nil {
		return false
	}
	return m.p.ServeHit(req, resp)
}

// HitSent records a response of ServeHit once the serving loop has sent
// it (sent body bytes; aborted when the connection failed): in the metrics
// and the access log, as ServeHTTP records its responses. It releases the
// stored object the response was sent from (HitResponse.File).
func (m *MirrorHandler) HitSent(req *HitRequest, resp *HitResponse, sent int64, aborted bool) {
	m.p.HitSent(req, resp, sent, aborted)
}

// PeerHandler returns the handler other replicas of a shared store read
// objects from (see Coordinator): GET or HEAD /peer/<key> answers the
// object of cache key key from this replica's fill in progress, as it
// arrives, with the Range and conditional rules clients get, or from
// storage once it is committed; never with a redirect, and never by
// starting a fill. A fill that this replica itself streams from another
// replica is not served on (so peers never chase each other), and a key
// neither filled nor stored is answered StatusNotFilling. The origin's
// error statuses (404, 410, 5xx) of a fill are passed on.
//
// The handler does not authenticate: serve it on a listener of its own,
// never the public one, behind an authenticating handler (package
// cluster's Node.Handler).
func (m *MirrorHandler) PeerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := m.setup(); err != nil {
			http.Error(w, "mirror misconfigured", http.StatusInternalServerError)
			return
		}
		m.p.ServePeer(w, r)
	})
}

// setup validates the handler's configuration and builds its request
// pipeline, once; later calls return the first one's error.
func (m *MirrorHandler) setup() error {
	m.once.Do(func() {
		if err := m.Validate(); err != nil {
			m.setupErr = err
			return
		}
		m.log = m.Logger
		if m.log == nil {
			m.log = slog.New(slog.DiscardHandler)
		}
		if m.now == nil {
			m.now = time.Now
		}
		m.p = pipeline.New(m.pipelineConfig())
		m.Metrics.watch(m)
		m.startIdleSweep()
	})
	return m.setupErr
}

// pipelineConfig turns the handler's fields, whose zero values stand for
// defaults, into the pipeline's configuration, whose values are what they
// say.
func (m *MirrorHandler) pipelineConfig() pipeline.Config {
	client := m.Client
	if client == nil {
		client = NewUpstreamClient(UpstreamOptions{ProxyDial: m.ProxyDial, AllowPrivate: m.AllowPrivateUpstreams})
	}
	hosts := pipeline.HostRules{
		Mode:          pipeline.HostFromHeader,
		BaseDomain:    m.BaseDomain,
		Allow:         m.AllowHosts,
		BlockSuffix:   m.BlockSuffix,
		MaxPathLength: cmp.Or(m.MaxPathLength, DefaultMaxPathLength),
		CacheQuery:    m.CacheQuery,
	}
	switch {
	case m.Host != "":
		hosts.Mode = pipeline.HostFixed
		hosts.Host, _ = pipeline.CanonicalHost(m.Host) // Validate checked it
	case m.HostFromFirstPath:
		hosts.Mode = pipeline.HostFromFirstPath
	}
	digests, _ := m.digestRules() // Validate checked them
	rules := policy.Rules{RevalidatePatterns: m.RevalidatePatterns}
	if m.RevalidatePatterns == nil {
		rules.RevalidatePatterns = DefaultRevalidatePatterns
	}
	negativeTTL := m.NegativeTTL
	if negativeTTL == 0 {
		negativeTTL = DefaultNegativeTTL
	}
	idle := m.UpstreamIdleTimeout
	if idle == 0 {
		idle = 2 * time.Minute
	}
	minRate := cmp.Or(m.UpstreamMinRate, DefaultUpstreamMinRate)
	cfg := pipeline.Config{
		Client:           client,
		Scheme:           cmp.Or(m.UpstreamScheme, "https"),
		Hosts:            hosts,
		Rules:            rules,
		Digests:          digests,
		LinkExpires:      cmp.Or(m.LinkExpires, 24*time.Hour),
		NoRedirect:       m.NoRedirect,
		TeeResponse:      m.TeeResponse,
		CheckSyncTimeout: m.CheckSyncTimeout,
		MaxRanges:        cmp.Or(m.MaxRanges, DefaultMaxRanges),
		MaxVariants:      cmp.Or(m.MaxVariants, DefaultMaxVariants),
		NegativeTTL:      negativeTTL,
		AuthCache:        m.AuthCache,
		AuthCacheTTL:     cmp.Or(m.AuthCacheTTL, DefaultAuthCacheTTL),
		Fill: fill.Options{
			Retry:         m.ContinuationGetRetry,
			RetryInterval: m.ContinuationGetInterval,
			IdleTimeout:   max(idle, 0),
			MinRate:       max(minRate, 0),
			Connections:   cmp.Or(m.FillConnections, DefaultFillConnections),
			SegmentSize:   m.FillSegmentSize,
			MaxObjectSize: m.MaxObjectSize,
			SpoolDir:      m.SpoolDir,
		},
		Fetchers: pipeline.Fetchers{
			CIDN: m.CIDN, CIDNNoWait: m.CIDNNoWait, CIDNWaitTimeout: m.CIDNWaitTimeout,
			Coordinator: m.Coordinator,
		},
		NotFound: m.NotFound,
		Logger:   m.log,
		Observer: &observer{fillObserver: fillObserver{m.Metrics}, m: m.Metrics, access: m.AccessLog, log: m.log, errors: &m.admin.errors, now: m.now},
		Now:      m.now,
	}
	if m.RemoteCache != nil {
		// Every storage call goes through the decorator, which times it
		// for the metrics (when there are any) and offers every optional
		// capability.
		cfg.Store = storage.Instrument(m.RemoteCache, m.Metrics.storageObserver())
		_, cfg.Lists = m.RemoteCache.(storage.Lister)
	}
	return cfg
}
