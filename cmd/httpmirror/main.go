// Command httpmirror runs the caching mirror. See --help for its flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/cidn"
	"github.com/httpmirror/httpmirror/cluster"
	"github.com/httpmirror/httpmirror/internal/admin"
	"github.com/httpmirror/httpmirror/internal/config"
	"github.com/httpmirror/httpmirror/internal/logbuf"
	"github.com/httpmirror/httpmirror/internal/server"
	"github.com/httpmirror/httpmirror/storage"
)

func main() {
	// Unless the operator chose otherwise (GOGC), collect
	// garbage less often than Go's default: bodies pass through the kernel
	// and disk spools, not the heap, so the live heap is small, while every
	// hit allocates a little; at the default a busy mirror spends a fifth
	// of its CPU collecting.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(run(os.Args[1:]))
}

// run returns the exit status: 0 after a clean shutdown, 2 for a bad
// command line or configuration, 1 when serving fails. "httpmirror cache
// ..." is the client of the admin API instead (cache.go).
func run(args []string) int {
	if len(args) > 0 && args[0] == "cache" {
		return runCache(args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	}
	cfg, err := config.Parse(args, os.LookupEnv, os.Stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "httpmirror: %v (see --help)\n", err)
		return 2
	}
	// The access log is buffered (flushed within a second, and at once for
	// warnings and errors), so that hits do not each pay a write system
	// call; it is flushed when run returns, whatever the path.
	logOut := logbuf.New(os.Stderr, 0, 0)
	defer logOut.Close()
	log := newLogger(cfg, logOut)

	store, closer, err := openStorage(cfg.StorageURL, cfg.CacheMaxSize, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "httpmirror: %v\n", err)
		return 2
	}
	if closer != nil {
		defer closer.Close()
	}
	// A bucket that is missing or refuses the credentials is a
	// configuration error: say so now, not at the first request.
	if c, ok := store.(storage.Checker); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.Check(ctx)
		cancel()
		if err != nil {
			log.Error("storage not usable", "storage", redact(cfg.StorageURL), "err", err)
			return 2
		}
	}

	upstream := httpmirror.UpstreamOptions{
		AllowPrivate:          cfg.AllowPrivateUpstreams,
		ProxyURL:              cfg.UpstreamProxy,
		ProxyFromEnvironment:  cfg.UpstreamProxy == nil,
		ConnectTimeout:        cfg.UpstreamConnectTimeout,
		ResponseHeaderTimeout: cfg.UpstreamHeaderTimeout,
	}
	if cfg.UpstreamCAFile != "" {
		pem, err := os.ReadFile(cfg.UpstreamCAFile)
		if err == nil {
			upstream.RootCAs, err = httpmirror.CertPoolFromPEM(pem)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "httpmirror: --upstream-ca-file: %v\n", err)
			return 2
		}
	}
	negativeTTL := cfg.NegativeTTL
	if negativeTTL == 0 {
		negativeTTL = -1 // the flag's 0 disables it
	}
	idle := cfg.UpstreamIdleTimeout
	if idle == 0 {
		idle = -1 // the flag's 0 means no limit
	}
	minRate := cfg.UpstreamMinRate
	if minRate == 0 {
		minRate = -1 // the flag's 0 disables it
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := &httpmirror.MirrorHandler{
		Metrics:                 httpmirror.NewMetrics(reg),
		RemoteCache:             store,
		LinkExpires:             cfg.LinkExpires,
		BaseDomain:              cfg.BaseDomain,
		Client:                  httpmirror.NewUpstreamClient(upstream),
		Logger:                  log,
		AccessLog:               accessLog(cfg, logOut),
		CheckSyncTimeout:        cfg.CheckSyncTimeout,
		Host:                    cfg.Host,
		HostFromFirstPath:       cfg.HostFromFirstPath,
		BlockSuffix:             cfg.BlockSuffix,
		AllowHosts:              cfg.AllowHost,
		NoRedirect:              cfg.NoRedirect,
		TeeResponse:             cfg.TeeResponse,
		ContinuationGetRetry:    cfg.ContinuationGetRetry,
		ContinuationGetInterval: cfg.ContinuationGetInterval,
		UpstreamScheme:          cfg.UpstreamScheme,
		UpstreamIdleTimeout:     idle,
		MaxPathLength:           cfg.MaxPathLength,
		MaxObjectSize:           cfg.MaxObjectSize,
		FillConnections:         cfg.FillConnections,
		FillSegmentSize:         cfg.FillSegmentSize,
		UpstreamMinRate:         minRate,
		SpoolDir:                cfg.SpoolDir,
		MaxRanges:               cfg.MaxRanges,
		MaxVariants:             cfg.MaxVariants,
		RevalidatePatterns:      cfg.RevalidatePatterns,
		NegativeTTL:             negativeTTL,
		CacheQuery:              cfg.CacheQuery,
		PrefetchConcurrency:     cfg.PrefetchConcurrency,
		AuthCache:               cfg.AuthCache,
		AuthCacheTTL:            cfg.AuthCacheTTL,
	}
	var cidnClient *cidn.Client
	if cfg.CIDNEnabled() {
		cidnClient, err = openCIDN(cfg, store, reg, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "httpmirror: %v\n", err)
			return 2
		}
		defer cidnClient.Close()
		h.CIDN = cidnClient
		h.CIDNNoWait = !cfg.CIDNWait
		h.CIDNWaitTimeout = cfg.CIDNWaitTimeout
	}
	var (
		node    *cluster.Node
		peerSrv *http.Server
	)
	if cfg.ClusterEnabled() {
		node, peerSrv, err = openCluster(cfg, store, h, reg, log)
		if err != nil {
			fmt.Fprintf(os.Stderr, "httpmirror: %v\n", err)
			return 2
		}
		defer peerSrv.Close()
	}
	if err := h.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "httpmirror: %v\n", err)
		return 2
	}
	if store == nil && (cfg.CheckSyncTimeout > 0) {
		log.Warn("--check-sync-timeout has no effect without a cache")
	}
	if cfg.Host == "" && len(cfg.AllowHost) == 0 {
		log.Warn("OPEN MIRROR: anyone who reaches this port can make the mirror fetch from any host and fill its storage; " +
			"restrict the origins with --allow-host, e.g. --allow-host 'huggingface.co,*.huggingface.co,*.hf.co,github.com,*.githubusercontent.com'")
	}

	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "httpmirror: listen: %v\n", err)
		return 2
	}
	adm := &admin.Server{Gatherer: reg, Logger: log, Ready: h.Check, Mirror: h, Tokens: cfg.AdminTokens, MetricsAuth: cfg.AdminMetricsAuth}
	var adminSrv *http.Server
	if cfg.AdminAddress != "" {
		aln, err := net.Listen("tcp", cfg.AdminAddress)
		if err != nil {
			fmt.Fprintf(os.Stderr, "httpmirror: admin listen: %v\n", err)
			return 2
		}
		adminSrv = &http.Server{Handler: adm.Handler()}
		server.Configure(adminSrv) // the public listener's limits
		go adminSrv.Serve(aln)
		log.Info("admin listening", "address", aln.Addr().String(), "tokens", len(cfg.AdminTokens))
		if cfg.AdminExposed() {
			log.Warn("ADMIN API OPEN: the admin listener is off loopback without tokens (--admin-insecure); whoever reaches it can purge the cache and make the mirror fetch")
		}
	}
	srv := &http.Server{
		Handler:  h,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	server.Configure(srv)
	// Plain hits of small cached files are answered on a loop of their
	// own; everything else goes to srv (see server.Server).
	pub := &server.Server{HTTP: srv, Hits: h}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- pub.Serve(ln) }()
	log.Info("listening", "address", ln.Addr().String(), "storage", redact(cfg.StorageURL))
	logOut.Flush() // start-up lines go out at once: supervisors wait for them

	select {
	case err := <-serveErr:
		log.Error("serving failed", "err", err)
		return 1
	case <-ctx.Done():
	}
	stop()
	adm.Drain()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	logOut.Flush()
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := pub.Shutdown(sctx); err != nil {
		log.Warn("responses still in flight at the shutdown deadline; aborting them", "err", err)
	}
	if peerSrv != nil {
		// Other replicas streaming from this one get what has arrived;
		// past the deadline their transfers abort.
		peerSrv.Shutdown(sctx)
	}
	if cidnClient != nil {
		// Requests still waiting for CIDN transfers stop waiting; the
		// transfers go on in CIDN.
		cidnClient.Close()
	}
	// Abort fills nobody waits for any more, and clean up their temporary
	// files, then cut what is left.
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := h.Close(cctx); err != nil {
		log.Warn("fills did not stop in time", "err", err)
	}
	if node != nil {
		// Leases of the aborted fills are released, so other replicas
		// need not wait for them to expire.
		if err := node.Close(cctx); err != nil {
			log.Warn("leases not released in time; they expire by themselves", "err", err)
		}
	}
	pub.Close()
	if adminSrv != nil {
		adminSrv.Close()
	}
	log.Info("stopped")
	return 0
}

// accessLog is the access log, written in the logger's format without
// slog's per-record work; nil (no lines) when the level is above info.
func accessLog(cfg *config.Config, out *logbuf.Writer) *httpmirror.AccessLog {
	if cfg.LogLevel > slog.LevelInfo {
		return nil
	}
	return httpmirror.NewAccessLog(out, cfg.LogFormat == "json")
}

func newLogger(cfg *config.Config, out *logbuf.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(out, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(out, opts)
	}
	return slog.New(logbuf.Handler(h, out, slog.LevelWarn))
}
