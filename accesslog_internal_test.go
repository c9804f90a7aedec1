package httpmirror

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/pipeline"
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
				e := &pipeline.Exchange{Method: "GET", Host: v, Path: v, Status: 206, Bytes: 1234567,
					Duration: 1500*time.Microsecond + 7, Outcome: pipeline.OutcomeJoined, Remote: v, Aborted: aborted}
				var fast, want bytes.Buffer
				NewAccessLog(&fast, json).write(now, e)
				var h slog.Handler = slog.NewTextHandler(&want, nil)
				if json {
					h = slog.NewJSONHandler(&want, nil)
				}
				logAt(slog.New(h), now, e)
				if fast.String() != want.String() {
					t.Errorf("json %v, value %q:\n got %s\nwant %s", json, v, fast.String(), want.String())
				}
			}
		}
	}
}

// logAt logs e through log, as the observer does without an AccessLog,
// with the record's time set to now.
func logAt(log *slog.Logger, now time.Time, e *pipeline.Exchange) {
	r := slog.NewRecord(now, slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("method", e.Method), slog.String("host", e.Host), slog.String("path", e.Path),
		slog.Int("status", e.Status), slog.Int64("bytes", e.Bytes), slog.Duration("duration", e.Duration),
		slog.String("outcome", e.Outcome.String()), slog.String("remote", e.Remote))
	if e.Aborted {
		r.AddAttrs(slog.Bool("aborted", true))
	}
	log.Handler().Handle(context.Background(), r)
}

func BenchmarkAccessLog(b *testing.B) {
	e := &pipeline.Exchange{Method: "GET", Host: "127.0.0.1:18080", Path: "/small.bin", Status: 200, Bytes: 4096,
		Duration: 11302 * time.Nanosecond, Outcome: pipeline.OutcomeHit, Remote: "127.0.0.1:35964"}
	for _, name := range []string{"AccessLog", "slog"} {
		b.Run(name, func(b *testing.B) {
			var buf bytes.Buffer
			o := &observer{log: slog.New(slog.NewTextHandler(&buf, nil)), errors: new(errorRing), now: time.Now}
			if name == "AccessLog" {
				o.access = NewAccessLog(&buf, false)
			}
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				o.Exchange(context.Background(), e)
			}
		})
	}
}
