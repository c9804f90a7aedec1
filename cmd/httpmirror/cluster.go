package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/cluster"
	"github.com/httpmirror/httpmirror/internal/config"
	"github.com/httpmirror/httpmirror/internal/server"
	"github.com/httpmirror/httpmirror/storage"
)

// openCluster makes h share its misses with the replicas on the same
// bucket: it builds the cluster node, checks that the bucket honours
// conditional writes (a store that ignores them would let every replica
// fetch the same file, unnoticed), listens on the peer address and starts
// the sweep of abandoned leases. The returned server serves the peer
// listener.
func openCluster(cfg *config.Config, store storage.Backend, h *httpmirror.MirrorHandler, reg prometheus.Registerer, log *slog.Logger) (*cluster.Node, *http.Server, error) {
	secret := cfg.PeerSecret
	if cfg.PeerSecretFile != "" {
		b, err := os.ReadFile(cfg.PeerSecretFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--peer-secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
		if secret == "" {
			return nil, nil, fmt.Errorf("--peer-secret-file %s is empty", cfg.PeerSecretFile)
		}
	}
	node, err := cluster.New(cluster.Config{
		Store:         storage.Instrument(store, h.Metrics.StorageObserver()),
		Self:          cfg.AdvertiseURL,
		Secret:        secret,
		LeaseDuration: cfg.LeaseDuration,
		Logger:        log,
		Metrics:       cluster.NewMetrics(reg),
	})
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := node.Probe(ctx); err != nil {
		return nil, nil, fmt.Errorf("%w; run the replicas without --peer-address, each fetching its own misses", err)
	}
	ln, err := net.Listen("tcp", cfg.PeerAddress)
	if err != nil {
		return nil, nil, fmt.Errorf("peer listen: %v", err)
	}
	srv := &http.Server{
		Handler:  node.Handler(h.PeerHandler()),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	server.Configure(srv)
	go srv.Serve(ln)
	node.Start()
	h.Coordinator = node
	log.Info("peer listening", "address", ln.Addr().String(), "advertise", cfg.AdvertiseURL, "leaseDuration", node.LeaseDuration())
	return node, srv, nil
}
