package httpmirror

import (
	"log/slog"
	"strings"
)

// NewPrintlnHandler returns a slog.Handler that formats each record as one
// line of key=value text and passes it to l.Println, for callers that log
// through a Println-style Logger (as the original httpmirror's Logger
// field was). opts may be nil.
func NewPrintlnHandler(l Logger, opts *slog.HandlerOptions) slog.Handler {
	return slog.NewTextHandler(printlnWriter{l}, opts)
}

// printlnWriter receives exactly one formatted record per Write.
type printlnWriter struct{ l Logger }

func (p printlnWriter) Write(b []byte) (int, error) {
	p.l.Println(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}
