package main

import (
	"fmt"
	"io"
	"net/url"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
)

// openStorage builds the backend a storage URL names. An empty URL means no
// cache. maxSize is the local disk cache's size limit (0: none). The
// returned closer releases the backend.
func openStorage(raw string, maxSize int64) (storage.Backend, io.Closer, error) {
	if raw == "" {
		if maxSize > 0 {
			return nil, nil, fmt.Errorf("--cache-max-size needs a cache (--storage-url is empty)")
		}
		return nil, nil, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid --storage-url: %v", err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, nil, fmt.Errorf("invalid --storage-url %q: a file URL has the form file:///absolute/dir", raw)
		}
		b, err := file.New(u.Path, file.Options{MaxSize: maxSize})
		if err != nil {
			return nil, nil, err
		}
		return b, b, nil
	default:
		return nil, nil, fmt.Errorf("invalid --storage-url: unknown scheme %q (want file)", u.Scheme)
	}
}
