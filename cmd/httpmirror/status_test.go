package main_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// The binary with --allow-host counts each request under the entry its
// origin matched, in /metrics and in status.json, which also says which
// build runs and for how long.
func TestOriginMetricsOfTheBinary(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/a.txt", []byte("hello"))
	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0", "--allow-host", "*.example.invalid,127.0.0.1")...)
	admin := "http://" + p.adminAddr()
	if code, body := httpGet(t, p.url(o, "/a.txt")); code != 200 || string(body) != "hello" {
		t.Fatalf("mirror: %d %q", code, body)
	}
	type status struct {
		Fills   []struct{ Key string }
		Origins []struct {
			Origin                         string
			Requests, Hits, Misses, Errors int64
			HitRatio                       float64
			CacheBytes, OriginBytes        int64
		}
		Version struct{ Version, Go string }
		Uptime  struct {
			Seconds *int64
			Since   time.Time
		}
	}
	read := func() status {
		t.Helper()
		code, body := httpGet(t, admin+"/status.json")
		var st status
		if err := json.Unmarshal(body, &st); code != 200 || err != nil {
			t.Fatalf("/status.json: %d, %v: %s", code, err, body)
		}
		return st
	}
	// The download is stored once no fill is left.
	for deadline := time.Now().Add(20 * time.Second); len(read().Fills) > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the download never ended")
		}
		time.Sleep(20 * time.Millisecond) // a poll, bounded by the deadline
	}
	if code, _ := httpGet(t, p.url(o, "/a.txt")); code != 200 {
		t.Fatalf("hit: %d", code)
	}
	_, metrics := httpGet(t, admin+"/metrics")
	for _, want := range []string{
		`httpmirror_origin_requests_total{origin="127.0.0.1",result="hit"} 1`,
		`httpmirror_origin_requests_total{origin="127.0.0.1",result="miss"} 1`,
		`httpmirror_origin_served_bytes_total{origin="127.0.0.1",source="cache"} 5`,
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(metrics), `origin="*.example.invalid"`) {
		t.Errorf("/metrics has a series of an origin nobody asked for")
	}
	st := read()
	if len(st.Origins) != 1 || st.Origins[0].Origin != "127.0.0.1" || st.Origins[0].Requests != 2 || st.Origins[0].HitRatio != 0.5 {
		t.Errorf("origins %+v; want 127.0.0.1 with 2 requests, half of them hits", st.Origins)
	}
	if st.Version.Version == "" || !strings.HasPrefix(st.Version.Go, "go") || st.Uptime.Seconds == nil || st.Uptime.Since.IsZero() {
		t.Errorf("version %+v, uptime %+v; want the build and the start", st.Version, st.Uptime)
	}
}
