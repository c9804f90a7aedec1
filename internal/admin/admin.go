// Package admin serves httpmirror's operator endpoints on their own
// listener, never on the public one: Prometheus metrics, liveness,
// readiness and pprof, and, over the mirror's handler, the cache API
// (look up, list, purge, prefetch, verify) and the status page. With
// tokens set, every endpoint but the probes (and /metrics, unless
// MetricsAuth) needs one (auth.go).
package admin

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/httpmirror/httpmirror"
)

// Server holds the state the endpoints report.
type Server struct {
	// Gatherer provides /metrics.
	Gatherer prometheus.Gatherer
	// Ready reports whether the mirror can serve: its storage is usable.
	// Nil means always ready.
	Ready func(ctx context.Context) error
	// Logger receives readiness failures and operator actions. Nil
	// discards them.
	Logger *slog.Logger
	// Mirror, when set, is the handler whose cache the cache API and the
	// status page operate on. Nil serves neither.
	Mirror *httpmirror.MirrorHandler
	// Tokens, when not empty, are the bearer tokens the endpoints accept;
	// every endpoint but /healthz, /readyz and /metrics needs one. Empty
	// means no authentication: the listener must then be reachable by
	// operators only.
	Tokens []Token
	// MetricsAuth makes /metrics need a token too, when Tokens are set.
	MetricsAuth bool

	draining atomic.Bool
}

// Drain makes /readyz fail from now on, so load balancers stop sending
// requests while the server shuts down.
func (s *Server) Drain() { s.draining.Store(true) }

// Handler returns the admin endpoints:
//
//	/metrics        Prometheus text format
//	/healthz        200 while the process runs; touches nothing
//	/readyz         200 when storage is usable and the server not draining, else 503
//	/debug/pprof/   the runtime profiles
//
// and, with Mirror set, the endpoints of cache.go and status.go, all
// behind the token check and audit log of auth.go.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// Every other path: a JSON 404 like the rest of the API's errors,
	// not net/http's plain text one.
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such admin endpoint")
	})
	var h http.Handler = mux
	if s.Mirror != nil {
		h = s.mirrorHandler(mux)
	}
	return s.newGuard().wrap(h)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if s.Ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := s.Ready(ctx); err != nil {
			if s.Logger != nil {
				s.Logger.Warn("not ready", "err", err)
			}
			http.Error(w, "storage unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	w.Write([]byte("ok\n"))
}
