package httpmirror_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

func TestUpstreamStatuses(t *testing.T) {
	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		var code int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/status/"), "%d", &code)
		if code == 0 {
			return false
		}
		w.Header().Set("X-Internal", "secret detail")
		http.Error(w, "origin says: internal stack trace", code)
		return true
	})
	m := newMirror(t, o)
	for code, want := range map[int]int{404: 404, 410: 410, 403: 403, 401: 401, 500: 502, 503: 502, 204: 502} {
		r := get(t, m.url(o, fmt.Sprintf("/status/%d", code)))
		if r.StatusCode != want {
			t.Errorf("origin %d: mirror answered %d; want %d", code, r.StatusCode, want)
		}
		if strings.Contains(string(r.body), "stack trace") || r.Header.Get("X-Internal") != "" {
			t.Errorf("origin %d: origin detail leaked to the client: %q", code, r.body)
		}
	}
	// Server errors are not remembered: asking again reaches the origin.
	before := o.Gets.Load()
	get(t, m.url(o, "/status/500"))
	if o.Gets.Load() != before+1 {
		t.Errorf("a 500 was cached")
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	o := newOrigin(t)
	m := newMirror(t, o)
	addr := o.HostPort()
	o.Close() // nothing listens there any more
	r := get(t, m.URL+"/"+addr+"/file")
	if r.StatusCode != 502 {
		t.Fatalf("status %d; want 502", r.StatusCode)
	}
	if strings.Contains(string(r.body), "127.0.0.1") || strings.Contains(string(r.body), "refused") {
		t.Errorf("body leaks internal detail: %q", r.body)
	}
}

func TestUpstreamTimeout(t *testing.T) {
	o := newOrigin(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		<-release // never answers while the test runs
		return true
	})
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{
			RootCAs: o.CertPool(), AllowPrivate: true, ResponseHeaderTimeout: 200 * time.Millisecond,
		})
	})
	r := get(t, m.url(o, "/slow"))
	if r.StatusCode != 504 {
		t.Fatalf("status %d; want 504", r.StatusCode)
	}
}
