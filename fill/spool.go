package fill

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/httpmirror/httpmirror/storage"
)

// spoolWriter is where the body goes: the storage writer (w, nil after a
// storage failure) and, when w cannot read back, a separate spool file.
type spoolWriter struct {
	w      storage.Writer
	file   *os.File // separate spool, nil when w is the spool
	reader io.ReaderAt
}

// openSpool creates the storage writer and the spool readers read from. A
// failing storage backend does not fail the fill: it falls back to a
// temporary spool so clients are still served, and nothing is cached.
func (f *Fill) openSpool(ctx context.Context, info storage.Info, storable bool) (*spoolWriter, error) {
	g := f.g
	sw := &spoolWriter{}
	var w storage.Writer
	err := errNotStorable
	if storable {
		w, err = g.store.Create(ctx, f.key, info)
	}
	if err != nil {
		if storable {
			g.log.Error("storage create failed; serving without caching", "key", f.key, "err", err)
		}
	} else {
		sw.w = w
		f.addCloser(w.Close)
		if sp, ok := w.(storage.Spooler); ok {
			sw.reader = sp
			return sw, nil
		}
	}
	file, err := os.CreateTemp(g.opts.SpoolDir, "httpmirror-spool-*")
	if err != nil {
		if w != nil {
			w.Cancel(context.Background())
		}
		return nil, fmt.Errorf("creating spool: %w", err)
	}
	// Unlinked at once: the space is reclaimed when the last reader closes
	// it, even after a crash.
	os.Remove(file.Name())
	f.addCloser(file.Close)
	sw.file = file
	sw.reader = file
	return sw, nil
}

// write appends p to the spool. A storage writer that fails next to a
// separate spool is dropped (the object will not be cached), so the
// clients are still served; a failing spool fails the fill.
func (s *spoolWriter) write(log *slog.Logger, p []byte) error {
	if s.file != nil {
		if _, err := s.file.Write(p); err != nil {
			return err
		}
		if s.w != nil {
			if _, err := s.w.Write(p); err != nil {
				log.Error("storage write failed; object will not be cached", "err", err)
				s.w.Cancel(context.Background())
				s.w = nil
			}
		}
		return nil
	}
	_, err := s.w.Write(p)
	return err
}

// spoolFile returns the file the spool's bytes are in, if they are in one.
func (f *Fill) spoolFile() *os.File {
	switch s := f.spool.(type) {
	case *os.File:
		return s
	case storage.FileSpooler:
		return s.SpoolFile()
	}
	return nil
}
