// Command httpmirror runs the caching mirror. See --help for its flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/httpmirror/httpmirror/internal/version"
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
//
// The steps follow one another in the order they must: storage is
// opened and checked before anything is built on it, every part is wired
// into the handler before it is validated, and the public listener starts
// serving last, so that a supervisor that sees "listening" finds
// everything ready.
func run(args []string) int {
	if len(args) > 0 && args[0] == "cache" {
		return runCache(args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	}
	if len(args) == 1 && args[0] == "version" {
		fmt.Println(version.Get().String())
		return 0
	}
	cfg, err := config.Parse(args, os.LookupEnv, os.Stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if errors.Is(err, config.ErrVersion) {
		fmt.Println(version.Get().String())
		return 0
	}
	if err == nil {
		err = config.CheckEnviron(os.Environ())
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
	m := &mirror{log: log, logOut: logOut}
	defer m.release()

	store, closer, err := openStorage(cfg.StorageURL, cfg.CacheMaxSize, log)
	if err != nil {
		return startFailed(defaultStorageHint(cfg, err))
	}
	m.storage = closer
	if err := checkStorage(store); err != nil {
		log.Error("storage not usable", "storage", redact(cfg.StorageURL), "err", defaultStorageHint(cfg, err))
		return 2
	}
	upstream, err := upstreamOptions(cfg)
	if err != nil {
		return startFailed(err)
	}
	reg := newRegistry()
	h := newHandler(cfg, store, upstream, reg, log, logOut)
	m.handler = h
	if cfg.CIDNEnabled() {
		if m.cidn, err = openCIDN(cfg, store, reg, log); err != nil {
			return startFailed(err)
		}
		h.CIDN, h.CIDNNoWait, h.CIDNWaitTimeout = m.cidn, !cfg.CIDNWait, cfg.CIDNWaitTimeout
	}
	if cfg.ClusterEnabled() {
		if m.node, m.peer, err = openCluster(cfg, store, h, reg, log); err != nil {
			return startFailed(err)
		}
	}
	if err := h.Validate(); err != nil {
		return startFailed(err)
	}
	logStart(cfg, store, log)
	h.Start() // the --max-idle sweep runs without traffic too
	warnConfig(cfg, store, log)

	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		return startFailed(fmt.Errorf("listen: %w", err))
	}
	m.admin = &admin.Server{Gatherer: reg, Logger: log, Ready: h.Check, Mirror: h, Tokens: cfg.AdminTokens, MetricsAuth: cfg.AdminMetricsAuth}
	if m.adminSrv, err = listenAdmin(cfg, m.admin, log); err != nil {
		return startFailed(err)
	}
	m.public = newPublicServer(h, log)
	if err := m.serve(ln, cfg.StorageURL); err != nil {
		log.Error("serving failed", "err", err)
		return 1
	}
	m.shutdown(cfg.ShutdownTimeout)
	return 0
}

// startFailed reports err, which stopped the mirror before it served, and
// returns exit status 2: such errors are the configuration's (a flag the
// handler refuses, storage or CIDN that cannot be reached, an address
// that cannot be listened on).
func startFailed(err error) int {
	fmt.Fprintf(os.Stderr, "httpmirror: %v\n", err)
	return 2
}

// checkStorage checks a backend that can be checked (storage.Checker).
// A bucket that is missing or refuses the credentials is a configuration
// error: say so now, not at the first request.
func checkStorage(store storage.Backend) error {
	c, ok := store.(storage.Checker)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.Check(ctx)
}

// upstreamOptions are the options of the client that reaches origins. A
// proxy given by --upstream-proxy replaces the environment's
// (HTTPS_PROXY, ...); the certificates of --upstream-ca-file join the
// system roots.
func upstreamOptions(cfg *config.Config) (httpmirror.UpstreamOptions, error) {
	o := httpmirror.UpstreamOptions{
		AllowPrivate:          cfg.AllowPrivateUpstreams,
		ProxyURL:              cfg.UpstreamProxy,
		ProxyFromEnvironment:  cfg.UpstreamProxy == nil,
		ConnectTimeout:        cfg.UpstreamConnectTimeout,
		ResponseHeaderTimeout: cfg.UpstreamHeaderTimeout,
	}
	if cfg.UpstreamCAFile != "" {
		pem, err := os.ReadFile(cfg.UpstreamCAFile)
		if err == nil {
			o.RootCAs, err = httpmirror.CertPoolFromPEM(pem)
		}
		if err != nil {
			return o, fmt.Errorf("--upstream-ca-file: %w", err)
		}
	}
	return o, nil
}

// newRegistry is the registry /metrics of the admin listener shows: the
// mirror's collectors, registered by the parts as they are built, and the
// Go runtime's and the process's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// newHandler builds the mirror's handler from the configuration, before
// CIDN and the cluster are wired into it. Where a flag's 0 means "off" or
// "no limit" the handler's field takes -1, since the handler's 0 means
// its default.
func newHandler(cfg *config.Config, store storage.Backend, upstream httpmirror.UpstreamOptions, reg prometheus.Registerer, log *slog.Logger, logOut *logbuf.Writer) *httpmirror.MirrorHandler {
	return &httpmirror.MirrorHandler{
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
		UpstreamIdleTimeout:     zeroOff(cfg.UpstreamIdleTimeout),
		MaxPathLength:           cfg.MaxPathLength,
		MaxObjectSize:           cfg.MaxObjectSize,
		FillConnections:         cfg.FillConnections,
		FillSegmentSize:         cfg.FillSegmentSize,
		UpstreamMinRate:         zeroOff(cfg.UpstreamMinRate),
		SpoolDir:                cfg.SpoolDir,
		MaxRanges:               cfg.MaxRanges,
		MaxVariants:             cfg.MaxVariants,
		DigestPaths:             cfg.DigestPaths,
		RevalidatePatterns:      cfg.RevalidatePatterns,
		NegativeTTL:             zeroOff(cfg.NegativeTTL),
		CacheQuery:              cfg.CacheQuery,
		PrefetchConcurrency:     cfg.PrefetchConcurrency,
		AuthCache:               cfg.AuthCache,
		AuthCacheTTL:            cfg.AuthCacheTTL,
		MaxIdle:                 cfg.MaxIdle,
	}
}

// zeroOff maps a flag's 0 (off, or no limit) to -1, the handler's value
// for it.
func zeroOff[T time.Duration | int64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// warnConfig logs what the configuration allows but the operator likely
// did not mean.
func warnConfig(cfg *config.Config, store storage.Backend, log *slog.Logger) {
	if store == nil && (cfg.CheckSyncTimeout > 0) {
		log.Warn("--check-sync-timeout has no effect without a cache")
	}
	if cfg.Host == "" && len(cfg.AllowHost) == 0 {
		log.Warn("OPEN MIRROR: anyone who reaches this port can make the mirror fetch from any host and fill its storage; " +
			"restrict the origins with --allow-host, e.g. --allow-host 'huggingface.co,*.huggingface.co,*.hf.co,github.com,*.githubusercontent.com'")
	}
	if cfg.AllowPrivateUpstreams {
		log.Warn("--allow-private-upstreams: the mirror fetches from loopback, private, link-local (cloud metadata) and other internal addresses; " +
			"whoever reaches its port can read what those serve")
	}
}

// listenAdmin listens on --admin-address and serves adm there, with the
// public listener's limits; without an admin address it returns nil.
func listenAdmin(cfg *config.Config, adm *admin.Server, log *slog.Logger) (*http.Server, error) {
	if cfg.AdminAddress == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.AdminAddress)
	if err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	srv := &http.Server{Handler: adm.Handler()}
	server.Configure(srv) // the public listener's limits
	go srv.Serve(ln)
	log.Info("admin listening", "address", ln.Addr().String(), "tokens", len(cfg.AdminTokens))
	if cfg.AdminExposed() {
		log.Warn("ADMIN API OPEN: the admin listener is off loopback without tokens (--admin-insecure); whoever reaches it can purge the cache and make the mirror fetch")
	}
	return srv, nil
}

// newPublicServer is the server of the public listener. Plain hits of
// cached files are answered on a loop of their own; everything
// else goes to h through net/http (see server.Server).
func newPublicServer(h *httpmirror.MirrorHandler, log *slog.Logger) *server.Server {
	srv := &http.Server{
		Handler:  h,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	server.Configure(srv)
	return &server.Server{HTTP: srv, Hits: h}
}

// mirror holds the parts run has started, to stop them in order. A nil
// part is one the configuration leaves out or run has not reached.
type mirror struct {
	log     *slog.Logger
	logOut  *logbuf.Writer
	storage io.Closer // releases the storage backend
	handler *httpmirror.MirrorHandler
	cidn    *cidn.Client  // when misses go to CIDN
	node    *cluster.Node // when replicas share fills
	peer    *http.Server  // the peer listener's, with node
	admin   *admin.Server
	// adminSrv serves admin on the admin listener, when there is one.
	adminSrv *http.Server
	public   *server.Server
}

// serve serves the public listener ln until SIGINT or SIGTERM arrives
// (nil) or serving fails (the error). storageURL is logged, redacted.
func (m *mirror) serve(ln net.Listener, storageURL string) error {
	// The signals are caught before "listening" is logged: a supervisor
	// may send one as soon as it reads the line.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- m.public.Serve(ln) }()
	m.log.Info("listening", "address", ln.Addr().String(), "storage", redact(storageURL))
	m.logOut.Flush() // start-up lines go out at once: supervisors wait for them

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
		return nil
	}
}

// shutdown stops a mirror that serves, waiting at most timeout for the
// responses in flight. /readyz fails first, so that load balancers stop
// sending requests; then the listeners stop accepting and the responses
// finish, and only then are the fills aborted that nobody waits for.
func (m *mirror) shutdown(timeout time.Duration) {
	m.admin.Drain()
	m.log.Info("shutting down", "timeout", timeout)
	m.logOut.Flush()
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := m.public.Shutdown(sctx); err != nil {
		m.log.Warn("responses still in flight at the shutdown deadline; aborting them", "err", err)
	}
	if m.peer != nil {
		// Other replicas streaming from this one get what has arrived;
		// past the deadline their transfers abort.
		m.peer.Shutdown(sctx)
	}
	if m.cidn != nil {
		// Requests still waiting for CIDN transfers stop waiting; the
		// transfers go on in CIDN.
		m.cidn.Close()
	}
	// Abort fills nobody waits for any more, and clean up their temporary
	// files, then cut what is left.
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if err := m.handler.Close(cctx); err != nil {
		m.log.Warn("fills did not stop in time", "err", err)
	}
	if m.node != nil {
		// Leases of the aborted fills are released, so other replicas
		// need not wait for them to expire.
		if err := m.node.Close(cctx); err != nil {
			m.log.Warn("leases not released in time; they expire by themselves", "err", err)
		}
	}
	m.public.Close()
	if m.adminSrv != nil {
		m.adminSrv.Close()
	}
	m.log.Info("stopped")
}

// release closes what is left open when run returns, whatever the path:
// the peer listener, the CIDN client (a second Close does nothing) and
// the storage backend, in that order.
func (m *mirror) release() {
	if m.peer != nil {
		m.peer.Close()
	}
	if m.cidn != nil {
		m.cidn.Close()
	}
	if m.storage != nil {
		m.storage.Close()
	}
}

// durationString writes a duration attribute as its string ("1m30s").
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
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
		// slog's JSON handler writes a duration as integer nanoseconds,
		// which nobody reads as "30s"; the text handler already writes
		// the string.
		opts.ReplaceAttr = durationString
		h = slog.NewJSONHandler(out, opts)
	}
	return slog.New(logbuf.Handler(h, out, slog.LevelWarn))
}
