package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/httpmirror/httpmirror/internal/config"
	"github.com/httpmirror/httpmirror/internal/version"
	"github.com/httpmirror/httpmirror/storage"
)

// logStart logs, in one line, what runs: the build, how the origin is
// found, which origins are served, the storage and its limit and, on
// local disk, what the cache holds. An operator reading the log after a
// restart then knows which binary with which configuration serves,
// without the command line at hand.
func logStart(cfg *config.Config, store storage.Backend, log *slog.Logger) {
	attrs := []any{
		"version", version.Get().String(),
		"hostMode", hostMode(cfg),
		"allowHost", allowList(cfg),
		"storage", storageName(cfg),
		"cacheMaxSize", sizeLimit(cfg.CacheMaxSize),
	}
	attrs = append(attrs, diskContents(store)...)
	log.Info("starting", attrs...)
}

// hostMode names the way the origin host is found (docs/configuration.md,
// "Finding the origin").
func hostMode(cfg *config.Config) string {
	switch {
	case cfg.Host != "":
		return "host " + cfg.Host
	case cfg.HostFromFirstPath:
		return "host-from-first-path"
	case cfg.BaseDomain != "":
		return "base-domain " + cfg.BaseDomain
	}
	return "host-header"
}

// allowList is the list of origins served: --allow-host, else the one
// --host, else OPEN MIRROR (every host, as warnConfig warns).
func allowList(cfg *config.Config) string {
	switch {
	case len(cfg.AllowHost) > 0:
		return strings.Join(cfg.AllowHost, ",")
	case cfg.Host != "":
		return cfg.Host
	}
	return "OPEN MIRROR"
}

// storageName is the storage URL without credentials, "none" without a
// cache; "(default)" marks the directory chosen when no --storage-url was
// given.
func storageName(cfg *config.Config) string {
	if cfg.StorageURL == "" {
		return "none"
	}
	if cfg.StorageDefault {
		return redact(cfg.StorageURL) + " (default)"
	}
	return redact(cfg.StorageURL)
}

// sizeLimit formats --cache-max-size: exactly, in the largest unit
// (binary or decimal, as --cache-max-size takes them) that divides it,
// or "none".
func sizeLimit(n int64) string {
	if n <= 0 {
		return "none"
	}
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"TB", 1e12}, {"GiB", 1 << 30}, {"GB", 1e9}, {"MiB", 1 << 20}, {"MB", 1e6}, {"KiB", 1 << 10}, {"KB", 1e3}} {
		if n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%dB", n)
}

// indexer is a backend that builds its index of the objects present in
// the background (storage/file).
type indexer interface{ Indexed() bool }

// diskContents are the start line's attributes of what a local disk cache
// holds. While the index is still being built in the background the
// counts would be partial, so it says "indexing" instead: start does not
// wait for the build, which can take minutes on a large cache.
func diskContents(store storage.Backend) []any {
	ix, ok := store.(indexer)
	if !ok {
		return nil
	}
	if !ix.Indexed() {
		return []any{"objects", "indexing"}
	}
	sr, ok := store.(storage.StatsReporter)
	if !ok {
		return nil
	}
	st := sr.Stats()
	return []any{"objects", st.Objects, "bytes", st.Bytes}
}

// defaultStorageHint adds to err, which the default cache directory
// caused, that it is the default and how to choose another.
func defaultStorageHint(cfg *config.Config, err error) error {
	if !cfg.StorageDefault {
		return err
	}
	return fmt.Errorf("%w (the default cache directory, used as no --storage-url was given: choose one with --storage-url file:///var/cache/httpmirror, or --storage-url= for no cache)", err)
}
