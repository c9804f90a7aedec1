// Package logbuf buffers log output the way nginx's "access_log ...
// buffer=64k flush=1s" does: lines collect in memory and are written
// together when the buffer fills, at least once a second, as soon as a
// record of level warn or higher arrives, and on Close. A busy mirror then
// makes one write system call per 64 KiB of log instead of one per
// request, and an operator still sees every line within a second. A
// process killed with SIGKILL loses at most that second of access lines;
// warnings and errors are never held back.
package logbuf

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Defaults for New.
const (
	DefaultSize     = 64 << 10
	DefaultInterval = time.Second
)

// Writer is a buffered, flushed-in-the-background io.Writer, safe for
// concurrent use. Each Write lands in the output whole and in order: a
// log record is never split or interleaved with another.
type Writer struct {
	mu    sync.Mutex
	buf   *bufio.Writer
	err   error // the first error writing the output
	stop  chan struct{}
	done  chan struct{}
	close sync.Once
}

// New returns a Writer that buffers up to size bytes for out and flushes
// every interval. Zero values mean DefaultSize and DefaultInterval. Call
// Close to stop its flushing goroutine and write what is left.
func New(out io.Writer, size int, interval time.Duration) *Writer {
	if size <= 0 {
		size = DefaultSize
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	w := &Writer{buf: bufio.NewWriterSize(out, size), stop: make(chan struct{}), done: make(chan struct{})}
	go w.flushEvery(interval)
	return w
}

func (w *Writer) flushEvery(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Write buffers p. An error writing the output is returned by this and
// every later Write (the log is broken; the caller learns it once more per
// line, as with an unbuffered file).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.buf.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush writes what is buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.buf.Buffered() == 0 {
		return nil
	}
	if err := w.buf.Flush(); err != nil {
		w.err = err
	}
	return w.err
}

// Close stops the background flushing and writes what is buffered. The
// Writer must not be written to afterwards.
func (w *Writer) Close() error {
	w.close.Do(func() { close(w.stop) })
	<-w.done
	return w.Flush()
}

// Handler returns h with records at level or above flushed through w as
// soon as they are handled, so warnings and errors are never delayed.
func Handler(h slog.Handler, w *Writer, level slog.Leveler) slog.Handler {
	return &flushing{Handler: h, w: w, level: level}
}

type flushing struct {
	slog.Handler
	w     *Writer
	level slog.Leveler
}

func (f *flushing) Handle(ctx context.Context, r slog.Record) error {
	err := f.Handler.Handle(ctx, r)
	if r.Level >= f.level.Level() {
		f.w.Flush()
	}
	return err
}

func (f *flushing) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &flushing{Handler: f.Handler.WithAttrs(attrs), w: f.w, level: f.level}
}

func (f *flushing) WithGroup(name string) slog.Handler {
	return &flushing{Handler: f.Handler.WithGroup(name), w: f.w, level: f.level}
}
