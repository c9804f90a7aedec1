package httpmirror

import (
	"context"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// instrumented wraps the handler's backend: every call is timed and its
// errors counted. Optional capabilities (Redirector, Checker, StatsReporter,
// and Spooler on writers) are passed through by the handler, which looks
// for them on the unwrapped backend.
type instrumented struct {
	b storage.Backend
	m *Metrics
}

func (s instrumented) observe(op string, start time.Time, err error) {
	s.m.storageOp(op, time.Since(start), err)
}

func (s instrumented) Stat(ctx context.Context, key string) (storage.Info, error) {
	start := time.Now()
	info, err := s.b.Stat(ctx, key)
	s.observe("stat", start, err)
	return info, err
}

func (s instrumented) Open(ctx context.Context, key string) (storage.Object, error) {
	start := time.Now()
	o, err := s.b.Open(ctx, key)
	s.observe("open", start, err)
	return o, err
}

func (s instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.b.Delete(ctx, key)
	s.observe("delete", start, err)
	return err
}

func (s instrumented) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	start := time.Now()
	w, err := s.b.Create(ctx, key, info)
	s.observe("create", start, err)
	if err != nil {
		return nil, err
	}
	iw := &instrumentedWriter{Writer: w, s: s}
	switch sp := w.(type) {
	case storage.FileSpooler:
		return &fileSpoolingWriter{instrumentedWriter: iw, FileSpooler: sp}, nil
	case storage.Spooler:
		return &spoolingWriter{instrumentedWriter: iw, Spooler: sp}, nil
	}
	return iw, nil
}

// instrumentedWriter counts write and commit errors; writes are not timed
// one by one, they are the body's pace, not the store's.
type instrumentedWriter struct {
	storage.Writer
	s      instrumented
	failed bool // a write error was counted already
}

func (w *instrumentedWriter) Write(p []byte) (int, error) {
	n, err := w.Writer.Write(p)
	if err != nil && !w.failed {
		w.failed = true
		w.s.m.storageOp("write", 0, err)
	}
	return n, err
}

func (w *instrumentedWriter) Commit(ctx context.Context) error {
	start := time.Now()
	err := w.Writer.Commit(ctx)
	w.s.observe("commit", start, err)
	return err
}

// spoolingWriter keeps the inner writer's read-back capability visible.
type spoolingWriter struct {
	*instrumentedWriter
	storage.Spooler
}

// fileSpoolingWriter keeps the inner writer's spool file visible too.
type fileSpoolingWriter struct {
	*instrumentedWriter
	storage.FileSpooler
}
