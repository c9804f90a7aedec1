package fill

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/httpmirror/httpmirror/storage"
)

// Reader reads a fill's object from the start while it is being written. It
// implements io.ReadSeeker over the object's final size, so http.ServeContent
// can answer Range and conditional requests before the last byte has
// arrived: a read of bytes that have not arrived yet waits for them.
type Reader struct {
	f    *Fill
	ctx  context.Context
	off  int64
	size int64 // -1 when unknown: Seek from the end is then impossible

	// wait, when set, is called before a Read waits for bytes that have
	// not arrived.
	wait func()

	// err may be set by the goroutine http.ServeContent starts for
	// multi-range responses while the handler reads it.
	mu  sync.Mutex
	err error
}

// NewReader returns a Reader positioned at the start of the object. Reads
// give up when ctx is done.
func (f *Fill) NewReader(ctx context.Context) *Reader {
	return &Reader{f: f, ctx: ctx, size: f.Size()}
}

// OnWait makes the Reader call wait before it waits for bytes that have not
// arrived: a response writer flushes there, so its client is not kept
// waiting for bytes the mirror has.
func (r *Reader) OnWait(wait func()) { r.wait = wait }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.size >= 0 {
		if r.off >= r.size {
			return 0, io.EOF
		}
		if remain := r.size - r.off; int64(len(p)) > remain {
			p = p[:remain]
		}
	}
	if r.wait != nil && r.f.Arrived() <= r.off {
		r.wait()
	}
	n, err := r.f.ReadAt(r.ctx, p, r.off)
	r.off += int64(n)
	if err != nil && err != io.EOF {
		r.mu.Lock()
		if r.err == nil {
			r.err = err
		}
		r.mu.Unlock()
	}
	return n, err
}

// Seek implements io.Seeker. Seeking relative to the end needs a known
// size.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	if whence == io.SeekEnd && r.size < 0 {
		return 0, errors.New("fill: size not known yet")
	}
	abs, err := storage.SeekOffset(r.off, r.size, offset, whence)
	if err != nil {
		return 0, err
	}
	r.off = abs
	return abs, nil
}

// Err returns the first error other than io.EOF that a Read returned: the
// fill failed or the reader's context ended. A response that was being
// written from this Reader is then incomplete and must be aborted.
func (r *Reader) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// Size returns the object size the Reader was created with, -1 if unknown.
func (r *Reader) Size() int64 { return r.size }
