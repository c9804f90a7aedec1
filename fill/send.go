package fill

import (
	"context"
	"io"
	"os"
)

// Slices of a spool sent to one client at a time (see Send).
const (
	firstSend = 64 << 10
	maxSend   = 4 << 20
)

// Send copies the object's bytes [0, size) to w as they arrive, from spool,
// the caller's own handle on the fill's spool file (see OpenSpool), whose
// offset must be 0. When w is a network connection's ReaderFrom, the kernel
// copies the bytes to the socket (sendfile), which makes serving many
// clients of one download cheap. It returns nil once size bytes are sent,
// and otherwise the fill's, ctx's or w's error.
func (f *Fill) Send(ctx context.Context, w io.ReaderFrom, spool *os.File, size int64) error {
	var off int64
	for off < size {
		n, err := f.Available(ctx, off)
		if err != nil {
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
		sent, err := w.ReadFrom(&io.LimitedReader{R: spool, N: chunk})
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
