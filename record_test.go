package httpmirror_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror"
)

// syncBuffer is a bytes.Buffer safe for the handler's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestAccessLog(t *testing.T) {
	o := newOrigin(t)
	o.Put("/log.bin", payload(60, 1234))
	var buf syncBuffer
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	get(t, m.url(o, "/log.bin"))
	waitFills(t, m)
	get(t, m.url(o, "/log.bin"))
	get(t, m.URL+"/nodot/x")

	var requests []map[string]any
	for _, l := range buf.lines() {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if rec["msg"] == "request" {
			requests = append(requests, rec)
		}
	}
	if len(requests) != 3 {
		t.Fatalf("%d access log lines; want 3", len(requests))
	}
	want := []struct {
		outcome string
		status  float64
		bytes   float64
	}{{"miss", 200, 1234}, {"hit", 200, 1234}, {"invalid", 404, 19}}
	for i, w := range want {
		r := requests[i]
		if r["outcome"] != w.outcome || r["status"] != w.status || r["bytes"] != w.bytes || r["method"] != "GET" {
			t.Errorf("line %d = %v; want outcome %s status %v bytes %v", i, r, w.outcome, w.status, w.bytes)
		}
		if _, ok := r["duration"]; !ok {
			t.Errorf("line %d has no duration", i)
		}
	}
	if requests[0]["host"] != o.HostPort() || requests[0]["path"] != "/"+o.HostPort()+"/log.bin" {
		t.Errorf("host/path = %v %v", requests[0]["host"], requests[0]["path"])
	}
}
