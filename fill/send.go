package fill

import (
	"context"
	"io"
	"os"
)

// Slices of a spool sent to one client at a time (see Sender.Send).
const (
	firstSend = 64 << 10
	maxSend   = 4 << 20
)

// A Sender sends a fill's bytes from a handle of its own on the spool file,
// so that the kernel copies them to the client's socket (sendfile): serving
// many clients of one download costs little. Close it when done.
type Sender struct {
	f    *Fill
	file *os.File
	gen  int
}

// NewSender returns a Sender, or an error when the spool is not a file the
// platform can reopen; the caller then reads through NewReader.
func (f *Fill) NewSender() (*Sender, error) {
	file, gen, err := f.openSpoolFile()
	if err != nil {
		return nil, err
	}
	return &Sender{f: f, file: file, gen: gen}, nil
}

// Close releases the Sender's handle.
func (s *Sender) Close() error { return s.file.Close() }

// Send copies the object's bytes [0, size) to w as they arrive. Before it
// waits for bytes that have not arrived, it calls flush (when not nil), so
// the client has everything sent so far, headers included, while the
// origin is slow. It returns nil once size bytes are sent, and otherwise
// the fill's, ctx's or w's error; after ErrSpool the bytes sent are all the
// fill will ever have.
func (s *Sender) Send(ctx context.Context, w io.ReaderFrom, size int64, flush func()) error {
	f := s.f
	var off int64
	for off < size {
		if flush != nil && f.Arrived() <= off {
			flush()
		}
		n, err := f.Available(ctx, off)
		if err != nil {
			return err
		}
		if err := s.follow(off); err != nil {
			return err
		}
		// Send at most a slice at a time, a small one first: when many
		// clients share a download, each gets its first bytes (and then its
		// turns) without waiting behind another's multi-megabyte send.
		chunk := min(n, size) - off
		if off == 0 {
			chunk = min(chunk, firstSend)
		}
		chunk = min(chunk, maxSend)
		// The handle's offset is off: it moves only with what was sent.
		sent, err := w.ReadFrom(&io.LimitedReader{R: s.file, N: chunk})
		off += sent
		if err != nil {
			return err
		}
		if sent == 0 {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

// follow reopens the spool at off when the fill moved it to another file
// (its storage writer failed).
func (s *Sender) follow(off int64) error {
	s.f.mu.Lock()
	gen := s.f.gen
	s.f.mu.Unlock()
	if gen == s.gen {
		return nil
	}
	file, gen, err := s.f.openSpoolFile()
	if err != nil {
		return err
	}
	if _, err := file.Seek(off, io.SeekStart); err != nil {
		file.Close()
		return err
	}
	s.file.Close()
	s.file, s.gen = file, gen
	return nil
}
