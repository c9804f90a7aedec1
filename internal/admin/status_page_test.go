package admin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/internal/version"
)

// page fetches the status page (without reloading) and returns its HTML.
func (e *env) page(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(e.admin.URL + "/?refresh=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status page: %d %s", resp.StatusCode, body)
	}
	return string(body)
}

// startPrefetch starts a prefetch job of urls and returns its id.
func (e *env) startPrefetch(t *testing.T, urls ...string) string {
	t.Helper()
	body, _ := json.Marshal(urls)
	var started struct{ ID string }
	if code := e.api(t, "POST", "/prefetch", body, &started); code != 202 {
		t.Fatalf("prefetch: %d", code)
	}
	return started.ID
}

// waitStatus polls /status.json until ok accepts it, for at most 20 s.
func (e *env) waitStatus(t *testing.T, what string, ok func(httpmirror.Status) bool) httpmirror.Status {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st httpmirror.Status
		if code := e.api(t, "GET", "/status.json", nil, &st); code != 200 {
			t.Fatalf("/status.json: %d", code)
		}
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status.json never showed %s: %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond) // a poll of the mirror's state, bounded by the deadline
	}
}

// camelCase is a JSON field name as status.json spells every one.
var camelCase = regexp.MustCompile(`^[a-z][a-zA-Z0-9]*$`)

// badKeys returns the paths of the object keys in v that are not
// camelCase.
func badKeys(path string, v any) []string {
	var bad []string
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !camelCase.MatchString(k) {
				bad = append(bad, path+"."+k)
			}
			bad = append(bad, badKeys(path+"."+k, x)...)
		}
	case []any:
		for i, x := range v {
			bad = append(bad, badKeys(fmt.Sprintf("%s[%d]", path, i), x)...)
		}
	}
	return bad
}

// Every field of status.json, in every nested object, is camelCase, with
// every part of the status present (cache, a download in progress that a
// prefetch job started, the largest objects, a failure, the job, the
// origins, the build and the uptime); the page marks the prefetch's
// download as such.
func TestStatusJSONFieldsAreCamelCase(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.Put("/a.bin", testutil.Payload(1, 5000))
	e.origin.Put("/held.bin", testutil.Payload(2, 200000))
	e.get(t, "/a.bin")
	e.waitFills(t)
	e.get(t, "/a.bin")
	release := testutil.NewGate(t)
	e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path == "/broken" {
			http.Error(w, "down", http.StatusInternalServerError)
			return true
		}
		return holdAfter(1000, release)(w, r, f)
	})
	e.get(t, "/broken")
	id := e.startPrefetch(t, e.ref("/held.bin"))
	st := e.waitStatus(t, "the prefetch's download", func(st httpmirror.Status) bool {
		return len(st.Fills) == 1 && st.Fills[0].Prefetch != ""
	})
	if f := st.Fills[0]; f.Prefetch != id || f.Key != e.key("/held.bin") {
		t.Errorf("download %+v; want %s marked as prefetch job %s", f, e.key("/held.bin"), id)
	}

	resp, err := http.Get(e.admin.URL + "/status.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if bad := badKeys("", doc); len(bad) > 0 {
		t.Errorf("status.json fields not in camelCase: %v", bad)
	}
	for _, part := range []string{"time", "traffic", "cache", "fills", "largest", "errors", "prefetches", "origins", "version", "uptime"} {
		if doc[part] == nil {
			t.Errorf("status.json lacks %q (the test must cover every part): %s", part, raw)
		}
	}
	cache, _ := doc["cache"].(map[string]any)
	if cache["bytes"] == nil || cache["objects"] != 1.0 || cache["evictions"] != 0.0 {
		t.Errorf("cache %v; want bytes, 1 object, 0 evictions", cache)
	}
	var parts struct {
		Time    time.Time
		Version version.Info
		Uptime  struct {
			Seconds *int64
			Since   time.Time
		}
	}
	json.Unmarshal(raw, &parts)
	if v := parts.Version; v != version.Get() || v.Version == "" || v.Go == "" {
		t.Errorf("version %+v; want the build's, %+v", v, version.Get())
	}
	if u := parts.Uptime; u.Seconds == nil || *u.Seconds < 0 || u.Since.IsZero() || u.Since.After(parts.Time) ||
		(parts.Time.Sub(u.Since)-time.Duration(*u.Seconds)*time.Second).Abs() > 2*time.Second {
		t.Errorf("uptime %v since %v at %v; want seconds since a start before now", u.Seconds, u.Since, parts.Time)
	}

	html := e.page(t)
	for _, want := range []string{
		`<a class="tag prefetch" href="/prefetch/` + id + `"`,
		`id="version" title="` + version.Get().String() + `"`,
		`id="uptime"`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	release.Open()
}

// With no traffic the hit ratio shows "–", as the other cards do, not
// "0.0%"; the times the page shows carry their time zone.
func TestStatusPageNoTrafficAndTimeZone(t *testing.T) {
	e := newEnv(t, "file")
	html := e.page(t)
	if !strings.Contains(html, `id="hit-ratio">–<`) {
		t.Errorf("hit ratio without traffic is not \"–\":\n%s", html)
	}
	zone := time.Now().Format("MST")
	if !regexp.MustCompile(`as of \d\d:\d\d:\d\d ` + regexp.QuoteMeta(zone) + `\b`).MatchString(html) {
		t.Errorf("the page's time lacks its zone %s:\n%s", zone, html)
	}
	e.origin.Put("/a", []byte("abc"))
	e.get(t, "/missing")
	html = e.page(t)
	if !regexp.MustCompile(`<td class="muted">\d\d:\d\d:\d\d ` + regexp.QuoteMeta(zone) + `</td>`).MatchString(html) {
		t.Errorf("the recent error's time lacks its zone %s:\n%s", zone, html)
	}
	if !strings.Contains(html, `id="hit-ratio">–<`) {
		t.Errorf("hit ratio after a failure only is not \"–\"")
	}
	e.get(t, "/a")
	e.waitFills(t)
	e.get(t, "/a")
	if html := e.page(t); !strings.Contains(html, `id="hit-ratio">50.0%<`) {
		t.Errorf("hit ratio after a miss and a hit is not 50.0%%")
	}
}

// Per-origin figures with --allow-host: the label is the entry a host
// matched; an origin that answers 500 and one that refuses connections
// count errors; the page lists the origins busiest first.
func TestStatusOrigins(t *testing.T) {
	e := newEnv(t, "file", func(h *httpmirror.MirrorHandler) {
		h.AllowHosts = []string{"127.0.0.1", "127.0.0.2"}
	})
	e.origin.Put("/big.bin", testutil.Payload(1, 300000))
	e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path == "/broken" {
			http.Error(w, "down", http.StatusInternalServerError)
			return true
		}
		return false
	})
	e.get(t, "/big.bin")
	e.waitFills(t)
	e.get(t, "/big.bin")
	e.get(t, "/missing")
	e.get(t, "/broken")
	// Nothing listens on 127.0.0.2: the connection is refused.
	_, port, _ := strings.Cut(e.origin.HostPort(), ":")
	resp, err := http.Get(e.public.URL + "/127.0.0.2:" + port + "/file")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Errorf("refused origin: %d; want 502", resp.StatusCode)
	}
	// A host not allowed has no origin to be counted under.
	if resp, err := http.Get(e.public.URL + "/127.0.0.3:" + port + "/file"); err == nil {
		resp.Body.Close()
	}

	for series, want := range map[string]string{
		`httpmirror_origin_requests_total{origin="127.0.0.1",result="hit"}`:        "1",
		`httpmirror_origin_requests_total{origin="127.0.0.1",result="miss"}`:       "1",
		`httpmirror_origin_requests_total{origin="127.0.0.1",result="other"}`:      "1",
		`httpmirror_origin_requests_total{origin="127.0.0.1",result="error"}`:      "1",
		`httpmirror_origin_requests_total{origin="127.0.0.2",result="error"}`:      "1",
		`httpmirror_origin_served_bytes_total{origin="127.0.0.1",source="cache"}`:  "300000",
		`httpmirror_origin_served_bytes_total{origin="127.0.0.1",source="origin"}`: "300000",
		`httpmirror_origin_served_bytes_total{origin="127.0.0.2",source="origin"}`: "0",
	} {
		if got := e.metric(t, series); got != series+" "+want {
			t.Errorf("metric %q; want %s", got, want)
		}
	}
	if got := e.metric(t, `httpmirror_origin_requests_total{origin="127.0.0.3",result="other"}`); got != "" {
		t.Errorf("a host not allowed has a series: %q", got)
	}

	var st httpmirror.Status
	e.api(t, "GET", "/status.json", nil, &st)
	want := []httpmirror.OriginStatus{
		{Origin: "127.0.0.1", Requests: 4, Hits: 1, Misses: 1, Errors: 1, HitRatio: 0.5, CacheBytes: 300000, OriginBytes: 300000},
		{Origin: "127.0.0.2", Requests: 1, Errors: 1},
	}
	if fmt.Sprint(st.Origins) != fmt.Sprint(want) {
		t.Errorf("origins %+v; want %+v", st.Origins, want)
	}
	html := e.page(t)
	row := regexp.MustCompile(`<tr data-origin="127.0.0.1"><td class="key">127.0.0.1</td><td class="num">4</td><td class="num">50.0%</td><td class="num">293.0 KiB</td><td class="num">293.0 KiB</td><td class="num bad">1</td></tr>`)
	if !row.MatchString(html) || strings.Index(html, `data-origin="127.0.0.1"`) > strings.Index(html, `data-origin="127.0.0.2"`) {
		t.Errorf("the page's origins table lacks 127.0.0.1's row before 127.0.0.2's:\n%s", html)
	}
}

// An open mirror asked for many hosts (here 60 that refuse connections)
// keeps httpmirror.MaxOriginLabels of them apart in /metrics and on the
// page, and counts the others as "other".
func TestStatusOriginsOpenMirror(t *testing.T) {
	e := newEnv(t, "file")
	_, port, _ := strings.Cut(e.origin.HostPort(), ":")
	const hosts = 60
	for i := range hosts {
		resp, err := http.Get(fmt.Sprintf("%s/127.0.1.%d:%s/file", e.public.URL, i+1, port))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var st httpmirror.Status
	e.api(t, "GET", "/status.json", nil, &st)
	if len(st.Origins) != httpmirror.MaxOriginLabels+1 {
		t.Fatalf("%d origins; want %d", len(st.Origins), httpmirror.MaxOriginLabels+1)
	}
	if o := st.Origins[0]; o.Origin != httpmirror.OriginOther || o.Requests != hosts-httpmirror.MaxOriginLabels || o.Errors != o.Requests {
		t.Errorf("busiest origin %+v; want %q with %d failed requests", o, httpmirror.OriginOther, hosts-httpmirror.MaxOriginLabels)
	}
	if got := e.metric(t, `httpmirror_origin_requests_total{origin="127.0.1.1:`+port+`",result="error"}`); got == "" {
		t.Errorf("the first host has no series of its own")
	}
	if got := e.metric(t, `httpmirror_origin_requests_total{origin="127.0.1.60:`+port+`",result="error"}`); got != "" {
		t.Errorf("the 60th host has a series of its own: %q", got)
	}
}
