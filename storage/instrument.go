package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNotSupported is returned by an optional capability's method on a
// backend that does not have it, when reached through Instrument's
// decorator (which offers every capability).
var ErrNotSupported = errors.New("storage: operation not supported by this backend")

// OpObserver receives the duration and result of a backend operation: op
// is "stat", "open", "create", "delete", "commit", "write" (counted once
// per writer, on its first error, with no duration: writes go at the
// body's pace, not the store's), "refresh", "sign", "check", "list",
// "largest", "expire", or
// one of the Claimer's "claim", "swap", "release", "read_claim" and
// "list_claims", or "abort_uploads" (UploadAborter).
type OpObserver func(op string, d time.Duration, err error)

// Instrument returns b with every operation reported to observe. The
// decorator passes every optional capability through, so callers use it
// in place of b:
//
//   - Redirector: b's signed URLs, or "" (serve the bytes) when b has none;
//   - Refresher: b's Refresh, or ErrNotSupported;
//   - Checker: b's Check, or nil (always usable) — and in either case an
//     error while writes fail: a Create, Write or Commit failed (ErrNoSpace,
//     the store's size policy, aside) and no Commit has succeeded since.
//     After WriteFailureHold without a new failure, Check asks b again and
//     reports healthy if b's own check passes, so a store whose disk was
//     freed recovers even when no object was written meanwhile;
//   - Lister: b's List, or ErrNotSupported;
//   - LargestLister: b's Largest, or ErrNotSupported;
//   - Expirer: b's Expire, or ErrNotSupported;
//   - Locator: b's Location, or "" (no location to show);
//   - Claimer: b's claims, or ErrNotSupported; a claim lost to another
//     writer (ErrClaimed, ErrClaimChanged) is reported as a success;
//   - UploadAborter: b's AbortUploads, or ErrNotSupported;
//   - Rereader: b's Reread, or b's Open (a backend without copies beside
//     its medium reads the medium), timed as "open";
//   - StatsReporter: implemented exactly when b implements it;
//   - writers keep Spooler, FileSpooler, WriterAt (with FileSpooler) and
//     InfoUpdater, objects keep InMemory.
//
// Unwrap returns b. A nil observe reports nothing and costs nothing.
func Instrument(b Backend, observe OpObserver) Backend {
	in := &instrumented{b: b, observe: observe, timed: observe != nil}
	if observe == nil {
		in.observe = func(string, time.Duration, error) {}
	}
	in.redirector, _ = b.(Redirector)
	in.refresher, _ = b.(Refresher)
	in.checker, _ = b.(Checker)
	in.lister, _ = b.(Lister)
	in.largest, _ = b.(LargestLister)
	in.expirer, _ = b.(Expirer)
	in.locator, _ = b.(Locator)
	in.claimer, _ = b.(Claimer)
	if s, ok := b.(StatsReporter); ok {
		return &instrumentedStats{instrumented: in, s: s}
	}
	return in
}

type instrumented struct {
	b          Backend
	observe    OpObserver
	timed      bool // observe records something: read the clock
	redirector Redirector
	refresher  Refresher
	checker    Checker
	lister     Lister
	largest    LargestLister
	expirer    Expirer
	locator    Locator
	claimer    Claimer

	mu       sync.Mutex
	writeErr error     // the last write failure, nil while writes succeed
	failedAt time.Time // when it happened
}

// WriteFailureHold is how long after a failed write the decorator's Check
// reports the store as failing without asking the backend.
const WriteFailureHold = time.Minute

// writeFailed records a failed Create, Write or Commit.
func (s *instrumented) writeFailed(err error) {
	if err == nil || errors.Is(err, ErrNoSpace) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return
	}
	s.mu.Lock()
	s.writeErr, s.failedAt = err, time.Now()
	s.mu.Unlock()
}

// writeSucceeded clears the failure after a successful Commit.
func (s *instrumented) writeSucceeded() {
	s.mu.Lock()
	s.writeErr = nil
	s.mu.Unlock()
}

type instrumentedStats struct {
	*instrumented
	s StatsReporter
}

func (s *instrumentedStats) Stats() Stats { return s.s.Stats() }

// Unwrap returns the instrumented backend.
func (s *instrumented) Unwrap() Backend { return s.b }

func (s *instrumented) done(op string, start time.Time, err error) {
	s.observe(op, time.Since(start), err)
}

func (s *instrumented) Stat(ctx context.Context, key string) (Info, error) {
	start := time.Now()
	info, err := s.b.Stat(ctx, key)
	s.done("stat", start, err)
	return info, err
}

func (s *instrumented) Open(ctx context.Context, key string) (Object, error) {
	if !s.timed {
		return s.b.Open(ctx, key) // the hit path: no clock without metrics
	}
	start := time.Now()
	o, err := s.b.Open(ctx, key)
	s.done("open", start, err)
	return o, err
}

func (s *instrumented) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := s.b.Delete(ctx, key)
	s.done("delete", start, err)
	return err
}

func (s *instrumented) Create(ctx context.Context, key string, info Info) (Writer, error) {
	start := time.Now()
	w, err := s.b.Create(ctx, key, info)
	s.done("create", start, err)
	if err != nil {
		s.writeFailed(err)
		return nil, err
	}
	return s.wrapWriter(w), nil
}

// wrapWriter returns w instrumented, with the same capabilities.
func (s *instrumented) wrapWriter(w Writer) Writer {
	iw := &instrumentedWriter{Writer: w, s: s}
	u, updates := w.(InfoUpdater)
	switch sp := w.(type) {
	case interface {
		FileSpooler
		WriterAt
	}:
		fw := &fileSpoolingWriterAt{fileSpoolingWriter: &fileSpoolingWriter{instrumentedWriter: iw, FileSpooler: sp}, wa: sp}
		if updates {
			return &updatingFileSpoolingWriterAt{fw, u}
		}
		return fw
	case FileSpooler:
		fw := &fileSpoolingWriter{instrumentedWriter: iw, FileSpooler: sp}
		if updates {
			return &updatingFileSpoolingWriter{fw, u}
		}
		return fw
	case Spooler:
		sw := &spoolingWriter{instrumentedWriter: iw, Spooler: sp}
		if updates {
			return &updatingSpoolingWriter{sw, u}
		}
		return sw
	}
	if updates {
		return &updatingWriter{iw, u}
	}
	return iw
}

// SignedURL implements Redirector; without a Redirector underneath it
// answers "", nil at no cost, so hits are served as bytes.
func (s *instrumented) SignedURL(ctx context.Context, key, method string, expires time.Duration) (string, error) {
	if s.redirector == nil {
		return "", nil
	}
	start := time.Now()
	u, err := s.redirector.SignedURL(ctx, key, method, expires)
	s.done("sign", start, err)
	return u, err
}

// Refresh implements Refresher.
func (s *instrumented) Refresh(ctx context.Context, key string, info Info) error {
	if s.refresher == nil {
		return ErrNotSupported
	}
	start := time.Now()
	err := s.refresher.Refresh(ctx, key, info)
	s.done("refresh", start, err)
	return err
}

// Check implements Checker.
func (s *instrumented) Check(ctx context.Context) error {
	s.mu.Lock()
	werr, at := s.writeErr, s.failedAt
	s.mu.Unlock()
	if werr != nil && time.Since(at) < WriteFailureHold {
		return fmt.Errorf("storage writes failing: %w", werr)
	}
	var err error
	if s.checker != nil {
		start := time.Now()
		err = s.checker.Check(ctx)
		s.done("check", start, err)
	}
	if err == nil && werr != nil {
		s.mu.Lock()
		if s.failedAt.Equal(at) {
			s.writeErr = nil
		}
		s.mu.Unlock()
	}
	return err
}

// List implements Lister.
func (s *instrumented) List(ctx context.Context, prefix, token string, limit int) ([]Info, string, error) {
	if s.lister == nil {
		return nil, "", ErrNotSupported
	}
	start := time.Now()
	objs, next, err := s.lister.List(ctx, prefix, token, limit)
	s.done("list", start, err)
	return objs, next, err
}

// Largest implements LargestLister.
func (s *instrumented) Largest(ctx context.Context, n int) ([]Info, bool, error) {
	if s.largest == nil {
		return nil, false, ErrNotSupported
	}
	start := time.Now()
	objs, complete, err := s.largest.Largest(ctx, n)
	s.done("largest", start, err)
	return objs, complete, err
}

// Expire implements Expirer.
func (s *instrumented) Expire(ctx context.Context, cutoff time.Time, keep func(key string) bool) (int, error) {
	if s.expirer == nil {
		return 0, ErrNotSupported
	}
	start := time.Now()
	n, err := s.expirer.Expire(ctx, cutoff, keep)
	s.done("expire", start, err)
	return n, err
}

// Reread implements Rereader.
func (s *instrumented) Reread(ctx context.Context, key string) (Object, error) {
	r, ok := s.b.(Rereader)
	if !ok {
		return s.Open(ctx, key)
	}
	start := time.Now()
	obj, err := r.Reread(ctx, key)
	s.done("open", start, err)
	return obj, err
}

// Location implements Locator; without a Locator underneath it answers "".
func (s *instrumented) Location(key string) (string, error) {
	if s.locator == nil {
		return "", nil
	}
	return s.locator.Location(key)
}

// instrumentedWriter reports write and commit errors.
type instrumentedWriter struct {
	Writer
	s      *instrumented
	failed atomic.Bool // a write error was reported already
}

func (w *instrumentedWriter) Write(p []byte) (int, error) {
	n, err := w.Writer.Write(p)
	if err != nil {
		w.reportWriteError(err)
	}
	return n, err
}

// reportWriteError reports the writer's first write error.
func (w *instrumentedWriter) reportWriteError(err error) {
	if w.failed.CompareAndSwap(false, true) {
		w.s.observe("write", 0, err)
		w.s.writeFailed(err)
	}
}

func (w *instrumentedWriter) Commit(ctx context.Context) error {
	start := time.Now()
	err := w.Writer.Commit(ctx)
	w.s.done("commit", start, err)
	if err != nil {
		w.s.writeFailed(err)
	} else {
		w.s.writeSucceeded()
	}
	return err
}

// spoolingWriter keeps the inner writer's read-back capability visible.
type spoolingWriter struct {
	*instrumentedWriter
	Spooler
}

// fileSpoolingWriter keeps the inner writer's spool file visible too.
type fileSpoolingWriter struct {
	*instrumentedWriter
	FileSpooler
}

// fileSpoolingWriterAt keeps WriterAt visible as well.
type fileSpoolingWriterAt struct {
	*fileSpoolingWriter
	wa WriterAt
}

func (w *fileSpoolingWriterAt) WriteAt(p []byte, off int64) (int, error) {
	n, err := w.wa.WriteAt(p, off)
	if err != nil {
		w.reportWriteError(err)
	}
	return n, err
}

// The updating writers keep the inner writer's InfoUpdater visible, beside
// each of the shapes above. UpdateInfo only records metadata for Commit:
// it is not an operation of the store, and is not observed.
type (
	updatingWriter struct {
		*instrumentedWriter
		InfoUpdater
	}
	updatingSpoolingWriter struct {
		*spoolingWriter
		InfoUpdater
	}
	updatingFileSpoolingWriter struct {
		*fileSpoolingWriter
		InfoUpdater
	}
	updatingFileSpoolingWriterAt struct {
		*fileSpoolingWriterAt
		InfoUpdater
	}
)
