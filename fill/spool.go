package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/httpmirror/httpmirror/storage"
)

// spoolWriter is where the body goes: the storage writer (w, nil once the
// object will not be stored) and, when w cannot read back or has failed, a
// spool file of the fill's own.
type spoolWriter struct {
	w    storage.Writer
	file *os.File // own spool, nil while w is the spool
}

// openSpool creates the storage writer and the spool readers read from,
// and publishes info and the spool to readers. A storage backend that
// refuses or fails does not fail the fill: it falls back to a spool file
// so clients are still served, and nothing is cached.
func (f *Fill) openSpool(ctx context.Context, info storage.Info, storable bool) (*spoolWriter, error) {
	g := f.g
	sw := &spoolWriter{}
	var w storage.Writer
	err := errNotStorable
	if storable {
		w, err = g.store.Create(ctx, f.key, info)
	}
	switch {
	case err == nil:
		sw.w = w
		f.addCloser(w.Close)
		if sp, ok := w.(storage.Spooler); ok {
			f.setHeader(info, sp)
			return sw, nil
		}
	case errors.Is(err, storage.ErrNoSpace):
		// The store's size policy, not a failure.
		g.log.Info("object does not fit in the cache; serving without caching", "key", f.key, "size", info.Size)
	case storable:
		g.storeFailed(f.key, "storage create failed", err)
	}
	file, err := f.newSpoolFile()
	if err != nil {
		if w != nil {
			w.Cancel(context.Background())
		}
		return nil, err
	}
	sw.file = file
	f.setHeader(info, file)
	if sw.w == nil {
		f.dropKeep()
	}
	return sw, nil
}

// newSpoolFile creates an anonymous spool file in the spool directory.
func (f *Fill) newSpoolFile() (*os.File, error) {
	file, err := os.CreateTemp(f.g.opts.SpoolDir, "httpmirror-spool-*")
	if err != nil {
		return nil, fmt.Errorf("%w: creating spool file: %w", ErrSpool, err)
	}
	// Unlinked at once: the space is reclaimed when the last reader closes
	// it, even after a crash.
	os.Remove(file.Name())
	f.addCloser(file.Close)
	return file, nil
}

// write appends p, the bytes of the object at offset off. A storage writer
// that fails is dropped (the object will not be cached) and the clients
// are still served: from the fill's own spool file, which takes over the
// bytes the writer held when the writer was the spool. Only a spool file
// that cannot be written fails the fill, with ErrSpool.
func (s *spoolWriter) write(f *Fill, off int64, p []byte) error {
	if s.w != nil {
		if _, err := s.w.Write(p); err != nil {
			return s.dropWriter(f, off, p, err)
		}
		if s.file == nil {
			return nil
		}
	}
	if _, err := s.file.Write(p); err != nil {
		return fmt.Errorf("%w: %w", ErrSpool, err)
	}
	return nil
}

// dropWriter gives up storing after the writer failed with werr while
// writing p at off, moving the spool to a file of the fill's own if the
// writer was it.
func (s *spoolWriter) dropWriter(f *Fill, off int64, p []byte, werr error) error {
	w := s.w
	s.w = nil
	if errors.Is(werr, storage.ErrNoSpace) {
		f.g.log.Info("object does not fit in the cache; serving without caching", "key", f.key)
	} else {
		f.g.storeFailed(f.key, "storage write failed", werr)
	}
	defer func() {
		// The writer's file stays readable through its open handle until
		// the fill's last reference goes (its Close is a closer).
		w.Cancel(context.Background())
		f.dropKeep()
	}()
	if s.file != nil {
		_, err := s.file.Write(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSpool, err)
		}
		return nil
	}
	file, err := f.newSpoolFile()
	if err != nil {
		return err
	}
	// Copy what the writer holds, then the bytes it refused.
	if _, err := io.Copy(file, io.NewSectionReader(w.(storage.Spooler), 0, off)); err != nil {
		return fmt.Errorf("%w: moving the spool: %w", ErrSpool, err)
	}
	if _, err := file.Write(p); err != nil {
		return fmt.Errorf("%w: %w", ErrSpool, err)
	}
	s.file = file
	f.setSpool(file)
	return nil
}

// spoolFile returns the file the spool's bytes are in, if they are in one,
// and the spool's generation.
func (f *Fill) spoolFile() (*os.File, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch s := f.spool.(type) {
	case *os.File:
		return s, f.gen
	case storage.FileSpooler:
		return s.SpoolFile(), f.gen
	}
	return nil, f.gen
}
