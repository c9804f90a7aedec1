package httpmirror

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"
)

// The access log's lines are byte for byte those of slog's TextHandler and
// JSONHandler for the same request record, tricky values included.
func TestAccessLogMatchesSlog(t *testing.T) {
	now := time.Date(2026, 12, 2, 3, 4, 5, 6_070_000, time.UTC)
	values := []string{
		"", "plain", "/a/b.tar.gz", "with space", "equals=sign", `quote"d`, `back\slash`,
		"tab\there", "new\nline", "ctrl\x01", "del\x7f", "<html>&amp;", "utf8 é", "ünïcödé", "bad\xffutf8",
		"\u2028sep", "\u00a0nbsp", "emoji 😀", "127.0.0.1:8080", "[::1]:443",
	}
	for _, json := range []bool{false, true} {
		for _, v := range values {
			for _, aborted := range []bool{false, true} {
				e := &accessEntry{method: "GET", host: v, path: v, status: 206, bytes: 1234567,
					duration: 1500*time.Microsecond + 7, outcome: outcomeJoined, remote: v, aborted: aborted}
				var fast, want bytes.Buffer
				NewAccessLog(&fast, json).write(now, e)
				var h slog.Handler = slog.NewTextHandler(&want, nil)
				if json {
					h = slog.NewJSONHandler(&want, nil)
				}
				m := &MirrorHandler{log: slog.New(h)}
				m.logRequestAt(now, e)
				if fast.String() != want.String() {
					t.Errorf("json %v, value %q:\n got %s\nwant %s", json, v, fast.String(), want.String())
				}
			}
		}
	}
}

// logRequestAt logs e through Logger with the record's time set to now.
func (m *MirrorHandler) logRequestAt(now time.Time, e *accessEntry) {
	r := slog.NewRecord(now, slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("method", e.method), slog.String("host", e.host), slog.String("path", e.path),
		slog.Int("status", e.status), slog.Int64("bytes", e.bytes), slog.Duration("duration", e.duration),
		slog.String("outcome", e.outcome.String()), slog.String("remote", e.remote))
	if e.aborted {
		r.AddAttrs(slog.Bool("aborted", true))
	}
	m.log.Handler().Handle(context.Background(), r)
}

func BenchmarkAccessLog(b *testing.B) {
	e := &accessEntry{method: "GET", host: "127.0.0.1:18080", path: "/small.bin", status: 200, bytes: 4096,
		duration: 11302 * time.Nanosecond, outcome: outcomeHit, remote: "127.0.0.1:35964"}
	for _, name := range []string{"AccessLog", "slog"} {
		b.Run(name, func(b *testing.B) {
			var buf bytes.Buffer
			m := &MirrorHandler{log: slog.New(slog.NewTextHandler(&buf, nil))}
			if name == "AccessLog" {
				m.AccessLog = NewAccessLog(&buf, false)
			}
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				m.logRequest(context.Background(), e)
			}
		})
	}
}
