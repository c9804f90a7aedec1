package main

import (
	"fmt"
	"io"
	"net/url"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
)

// openStorage builds the backend a storage URL names. An empty URL means no
// cache. The returned closer releases the backend.
func openStorage(raw string) (storage.Backend, io.Closer, error) {
	if raw == "" {
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
		b, err := file.New(u.Path)
		if err != nil {
			return nil, nil, err
		}
		return b, b, nil
	default:
		return nil, nil, fmt.Errorf("invalid --storage-url: unknown scheme %q (want file)", u.Scheme)
	}
}
