package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
	"github.com/httpmirror/httpmirror/storage/s3"
)

// openStorage builds the backend a storage URL names. An empty URL means no
// cache. maxSize is the local disk cache's size limit (0: none). The
// returned closer releases the backend. Errors never quote an s3 URL, which
// carries credentials.
func openStorage(raw string, maxSize int64, log *slog.Logger) (storage.Backend, io.Closer, error) {
	if raw == "" {
		if maxSize > 0 {
			return nil, nil, fmt.Errorf("--cache-max-size needs a cache (--storage-url is empty)")
		}
		return nil, nil, nil
	}
	scheme, _, found := strings.Cut(raw, "://")
	if !found || !validScheme(scheme) {
		return nil, nil, fmt.Errorf("invalid --storage-url: want file:///absolute/dir or s3://ACCESS:SECRET@BUCKET.REGION/ROOTDIR")
	}
	switch strings.ToLower(scheme) {
	case "file":
		u, err := url.Parse(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid --storage-url: %v", err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, nil, fmt.Errorf("invalid --storage-url %q: a file URL has the form file:///absolute/dir", raw)
		}
		b, err := file.New(u.Path, file.Options{MaxSize: maxSize})
		if err != nil {
			return nil, nil, err
		}
		return b, b, nil
	case "s3":
		if maxSize > 0 {
			return nil, nil, fmt.Errorf("--cache-max-size applies to local disk storage only; bound an S3 bucket with a lifecycle rule")
		}
		cfg, err := s3.ParseURL(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("--storage-url: %w", err)
		}
		cfg.Logger = log
		b, err := s3.New(context.Background(), cfg)
		if err != nil {
			return nil, nil, err
		}
		return b, b, nil
	default:
		return nil, nil, fmt.Errorf("invalid --storage-url: unknown scheme %q (want file or s3)", scheme)
	}
}

// validScheme reports whether s is a URL scheme (RFC 3986 section 3.1), so
// that text before "://" that is not one is not echoed.
func validScheme(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return true
}
