// Command profmirror is httpmirror with CPU and allocation profiling, for
// finding where time goes under the benchmark's load. It takes httpmirror's
// flags, supports local-disk storage only, and wires the handler the way
// cmd/httpmirror does.
//
// Profiling is driven by signals, so that only the measured parts of a run
// are profiled. SIGUSR1 starts a CPU profile into $BENCH_PROFILE.N.cpu (N
// counts from 1; the first time, it also writes the allocation profile
// $BENCH_PROFILE.allocs.base); SIGUSR2 stops it and writes the allocation
// profile $BENCH_PROFILE.allocs. pprof merges the CPU profiles given
// together, and the allocations since the first window are
//
//	go tool pprof -sample_index=alloc_space -base P.allocs.base P.allocs
//
// The benchmark harness sends the signals around each measured httpmirror
// run when started with -profile; bench/profile.sh does all of it.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/config"
	"github.com/httpmirror/httpmirror/internal/server"
	"github.com/httpmirror/httpmirror/storage/file"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	prefix := os.Getenv("BENCH_PROFILE")
	if prefix == "" {
		fmt.Fprintln(os.Stderr, "profmirror: set BENCH_PROFILE to the profiles' path prefix")
		return 2
	}
	cfg, err := config.Parse(args, os.LookupEnv, os.Stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "profmirror: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))

	u, err := url.Parse(cfg.StorageURL)
	if err != nil || u.Scheme != "file" {
		fmt.Fprintln(os.Stderr, "profmirror: only --storage-url file:///dir is supported")
		return 2
	}
	store, err := file.New(u.Path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "profmirror: %v\n", err)
		return 2
	}
	defer store.Close()

	upstream := httpmirror.UpstreamOptions{
		AllowPrivate:          cfg.AllowPrivateUpstreams,
		ConnectTimeout:        cfg.UpstreamConnectTimeout,
		ResponseHeaderTimeout: cfg.UpstreamHeaderTimeout,
	}
	if cfg.UpstreamCAFile != "" {
		pem, err := os.ReadFile(cfg.UpstreamCAFile)
		if err == nil {
			upstream.RootCAs, err = httpmirror.CertPoolFromPEM(pem)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "profmirror: --upstream-ca-file: %v\n", err)
			return 2
		}
	}
	idle := cfg.UpstreamIdleTimeout
	if idle == 0 {
		idle = -1
	}
	h := &httpmirror.MirrorHandler{
		RemoteCache:             store,
		LinkExpires:             cfg.LinkExpires,
		BaseDomain:              cfg.BaseDomain,
		Client:                  httpmirror.NewUpstreamClient(upstream),
		Logger:                  log,
		CheckSyncTimeout:        cfg.CheckSyncTimeout,
		Host:                    cfg.Host,
		HostFromFirstPath:       cfg.HostFromFirstPath,
		BlockSuffix:             cfg.BlockSuffix,
		NoRedirect:              cfg.NoRedirect,
		TeeResponse:             cfg.TeeResponse,
		ContinuationGetRetry:    cfg.ContinuationGetRetry,
		ContinuationGetInterval: cfg.ContinuationGetInterval,
		UpstreamScheme:          cfg.UpstreamScheme,
		UpstreamIdleTimeout:     idle,
		MaxPathLength:           cfg.MaxPathLength,
	}
	if err := h.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "profmirror: %v\n", err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Address)
	if err != nil {
		fmt.Fprintf(os.Stderr, "profmirror: listen: %v\n", err)
		return 2
	}
	srv := &http.Server{Handler: h, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	server.Configure(srv)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	prof := make(chan os.Signal, 4)
	signal.Notify(prof, syscall.SIGUSR1, syscall.SIGUSR2)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	p := &profiler{prefix: prefix, log: log}
	defer p.stop()
loop:
	for {
		select {
		case err := <-serveErr:
			log.Error("serving failed", "err", err)
			return 1
		case s := <-prof:
			if s == syscall.SIGUSR1 {
				p.start()
			} else {
				p.stop()
			}
		case <-ctx.Done():
			break loop
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	srv.Shutdown(sctx)
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	h.Close(cctx)
	srv.Close()
	return 0
}

// profiler runs one CPU profile per window, numbered from 1, and keeps
// allocation snapshots from before the first window and after the latest.
type profiler struct {
	prefix string
	log    *slog.Logger
	cpu    *os.File
	n      int
}

func (p *profiler) start() {
	if p.cpu != nil {
		return
	}
	if p.n == 0 {
		if err := writeAllocs(p.prefix + ".allocs.base"); err != nil {
			p.log.Error("allocation profile", "err", err)
		}
	}
	p.n++
	f, err := os.Create(fmt.Sprintf("%s.%d.cpu", p.prefix, p.n))
	if err != nil {
		p.log.Error("cpu profile", "err", err)
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		p.log.Error("cpu profile", "err", err)
		return
	}
	p.cpu = f
}

func (p *profiler) stop() {
	if p.cpu == nil {
		return
	}
	pprof.StopCPUProfile()
	p.cpu.Close()
	p.cpu = nil
	if err := writeAllocs(p.prefix + ".allocs"); err != nil {
		p.log.Error("allocation profile", "err", err)
	}
}

func writeAllocs(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
