package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/httpmirror/httpmirror/cidn"
	"github.com/httpmirror/httpmirror/internal/config"
	"github.com/httpmirror/httpmirror/storage"
)

// openCIDN builds the CIDN client the configuration asks for, checks that
// the API server serves Blobs, and starts it. The store must be able to
// say where it keeps a key (the S3 backend), since CIDN writes there.
func openCIDN(cfg *config.Config, store storage.Backend, reg prometheus.Registerer, log *slog.Logger) (*cidn.Client, error) {
	keys, ok := store.(interface {
		ObjectKey(key string) (string, error)
	})
	if !ok {
		return nil, errors.New("CIDN (--kubeconfig or --master) needs s3:// storage: CIDN writes files into the bucket the mirror serves from")
	}
	rc, err := cidn.RESTConfig(cfg.Kubeconfig, cfg.Master, cfg.InsecureSkipTLSVerify)
	if err != nil {
		return nil, err
	}
	cidn.SetKlogLogger(log.With("component", "cidn"))
	c, err := cidn.NewForConfig(rc, cidn.Config{
		Destination:      cfg.CIDNDestination,
		ObjectKey:        keys.ObjectKey,
		MaximumRunning:   cfg.CIDNMaximumRunning,
		MinimumChunkSize: cfg.CIDNMinimumChunkSize,
		Logger:           log,
		Metrics:          cidn.NewMetrics(reg),
	})
	if err != nil {
		return nil, err
	}
	// A wrong server, credentials that do not work or a cluster without
	// CIDN are configuration errors: say so now, not at the first miss.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Check(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("CIDN API not usable: %w", err)
	}
	c.Start()
	return c, nil
}
