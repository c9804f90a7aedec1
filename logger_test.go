package httpmirror_test

import (
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror"
)

type slogLogger = slog.Logger

// tLogger is a Println-style logger writing to t.Log until the test
// ends (a handler may log after its test returned).
type tLogger struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *tLogger) Println(v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Helper()
		l.t.Log(v...)
	}
}

func newSlogTestLogger(t testing.TB) *slog.Logger {
	l := &tLogger{t: t}
	t.Cleanup(func() { l.mu.Lock(); l.done = true; l.mu.Unlock() })
	return slog.New(httpmirror.NewPrintlnHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestPrintlnHandler(t *testing.T) {
	var lines []string
	l := printlnFunc(func(v ...any) {
		var b strings.Builder
		for _, x := range v {
			b.WriteString(x.(string))
		}
		lines = append(lines, b.String())
	})
	log := slog.New(httpmirror.NewPrintlnHandler(l, nil))
	log.Info("hello", "key", "example.com/a")
	log.Debug("hidden")
	if len(lines) != 1 || !strings.Contains(lines[0], "msg=hello") || !strings.Contains(lines[0], "key=example.com/a") || strings.HasSuffix(lines[0], "\n") {
		t.Fatalf("lines = %q; want one line with msg and key", lines)
	}
}

type printlnFunc func(v ...any)

func (f printlnFunc) Println(v ...any) { f(v...) }
