package logbuf

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// sink records every write the Writer makes to its output.
type sink struct {
	mu     sync.Mutex
	writes [][]byte
	wrote  chan struct{}
	fail   error
}

func newSink() *sink { return &sink{wrote: make(chan struct{}, 100)} }

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	s.writes = append(s.writes, append([]byte(nil), p...))
	s.wrote <- struct{}{}
	return len(p), nil
}

func (s *sink) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(bytes.Join(s.writes, nil))
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writes)
}

// Lines are held until the buffer fills, then written in one go.
func TestBuffersUntilFull(t *testing.T) {
	out := newSink()
	w := New(out, 1024, time.Hour)
	defer w.Close()
	line := strings.Repeat("x", 99) + "\n"
	for range 10 {
		w.Write([]byte(line))
	}
	if n := out.count(); n != 0 {
		t.Fatalf("%d writes after 1000 bytes into a 1024-byte buffer; want 0", n)
	}
	w.Write([]byte(line))
	if n := out.count(); n != 1 {
		t.Fatalf("%d writes once the buffer overflowed; want 1", n)
	}
}

// Buffered lines are written within the interval, and on Close.
func TestFlushesOnTickAndClose(t *testing.T) {
	out := newSink()
	w := New(out, 1<<20, 10*time.Millisecond)
	w.Write([]byte("a\n"))
	<-out.wrote // the ticker flushed it
	w.Write([]byte("b\n"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.all(); got != "a\nb\n" {
		t.Fatalf("output %q; want both lines", got)
	}
}

// Concurrent records are neither split nor interleaved.
func TestConcurrentLinesStayWhole(t *testing.T) {
	out := newSink()
	w := New(out, 4096, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				fmt.Fprintf(w, "goroutine=%d line=%d %s\n", g, i, strings.Repeat("y", g*10))
			}
		})
	}
	wg.Wait()
	w.Close()
	lines := strings.Split(strings.TrimSuffix(out.all(), "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines; want %d", len(lines), 8*500)
	}
	for _, l := range lines {
		var g, i int
		var tail string
		if n, _ := fmt.Sscanf(l, "goroutine=%d line=%d %s", &g, &i, &tail); n < 2 || len(tail) != g*10 {
			t.Fatalf("mangled line %q", l)
		}
	}
}

// Warnings go out at once through Handler; info lines wait.
func TestHandlerFlushesWarnings(t *testing.T) {
	out := newSink()
	w := New(out, 1<<20, time.Hour)
	defer w.Close()
	log := slog.New(Handler(slog.NewTextHandler(w, nil), w, slog.LevelWarn))
	log.Info("request", "status", 200)
	if n := out.count(); n != 0 {
		t.Fatalf("an info line was written at once (%d writes); want it buffered", n)
	}
	log.With("key", "v").Warn("storage failing")
	if got := out.all(); !strings.Contains(got, "msg=request") || !strings.Contains(got, "storage failing") {
		t.Fatalf("after a warning the output is %q; want both lines", got)
	}
}

// A broken output is reported, not hidden.
func TestOutputErrorIsReturned(t *testing.T) {
	out := newSink()
	out.fail = errors.New("disk full")
	w := New(out, 16, time.Hour)
	defer w.Close()
	w.Write([]byte("0123456789"))
	if _, err := w.Write([]byte("0123456789")); err == nil {
		t.Fatal("Write to a failing output: nil error")
	}
	if err := w.Flush(); err == nil {
		t.Fatal("Flush to a failing output: nil error")
	}
}
