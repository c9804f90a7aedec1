package httpmirror_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

func TestAllowHosts(t *testing.T) {
	allow := []string{"*.huggingface.co", "huggingface.co", "GitHub.com.", "127.0.0.1:8443"}
	tests := []struct {
		host   string // Host header; "" for first-path mode
		target string
		status int
	}{
		{"", "/huggingface.co/api/models", 200},
		{"", "/cdn-lfs.huggingface.co/a", 200},
		{"", "/a.b.huggingface.co/a", 200},
		{"", "/HuggingFace.CO./a", 200},
		{"", "/github.com/o/r/releases/download/v1/x.tgz", 200},
		{"", "/github.com:444/a", 200}, // no ':' in the pattern: any port
		{"", "/127.0.0.1:8443/a", 200},
		{"", "/0x7f.1:8443/a", 200}, // canonicalised before matching
		{"", "/evilhuggingface.co/a", 403},
		{"", "/huggingface.co.evil.example/a", 403},
		{"", "/api.github.com/a", 403},
		{"", "/example.com/a", 403},
		{"", "/127.0.0.1:8444/a", 403},
		{"", "/127.0.0.1/a", 403},
		{"huggingface.co", "/a", 200},
		{"example.com:8080", "/a", 403},
	}
	for _, tc := range tests {
		t.Run(tc.host+tc.target, func(t *testing.T) {
			rt := &recordingTransport{}
			m := &httpmirror.MirrorHandler{Client: &http.Client{Transport: rt}, AllowHosts: allow, HostFromFirstPath: tc.host == ""}
			req := httptest.NewRequest("GET", "http://mirror.local"+tc.target, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			w := httptest.NewRecorder()
			m.ServeHTTP(w, req)
			if w.Code != tc.status {
				t.Fatalf("status %d; want %d (body %q)", w.Code, tc.status, w.Body.String())
			}
			if tc.status == 403 {
				if len(rt.urls) != 0 {
					t.Errorf("upstream contacted (%q) for a host not allowed", rt.urls)
				}
				if got := strings.TrimSpace(w.Body.String()); got != "host not allowed" {
					t.Errorf("body %q; want %q", got, "host not allowed")
				}
			}
		})
	}
}

func TestAllowHostsFixedHostMustMatch(t *testing.T) {
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"files.example.org", true},
		{"Files.Example.org:8443", true},
		{"other.example.org", false},
	} {
		m := &httpmirror.MirrorHandler{Host: tc.host, AllowHosts: []string{"files.example.org"}}
		if err := m.Validate(); (err == nil) != tc.ok {
			t.Errorf("Host %q: Validate() = %v; want ok %v", tc.host, err, tc.ok)
		}
	}
}

// Against real origins: the allowed one is served, the other refused
// without a request, and a redirect from the allowed one to the other is
// refused before it is followed.
func TestAllowHostsOrigins(t *testing.T) {
	allowed, other := newOrigin(t), newOrigin(t)
	allowed.Put("/ok.bin", []byte("allowed"))
	allowed.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		switch r.URL.Path {
		case "/to-other":
			http.Redirect(w, r, other.URL+"/f", http.StatusFound)
		case "/to-self":
			http.Redirect(w, r, "/ok.bin", http.StatusFound)
		default:
			return false
		}
		return true
	})
	other.Put("/f", []byte("other"))
	m := newMirror(t, allowed, func(m *httpmirror.MirrorHandler) {
		m.AllowHosts = []string{allowed.HostPort()} // 127.0.0.1:PORT
	})
	for path, want := range map[string]int{"/ok.bin": 200, "/to-self": 200, "/to-other": 403} {
		if r := get(t, m.url(allowed, path)); r.StatusCode != want {
			t.Errorf("%s: status %d; want %d", path, r.StatusCode, want)
		}
	}
	if r := get(t, m.url(other, "/f")); r.StatusCode != 403 || string(r.body) != "host not allowed\n" {
		t.Errorf("other origin: status %d body %q; want 403 host not allowed", r.StatusCode, r.body)
	}
	if n := len(other.Received()); n != 0 {
		t.Fatalf("the origin not allowed received %d requests; want none", n)
	}
	// /ok.bin, /to-self and the /ok.bin it redirects to, /to-other.
	if n := allowed.Gets.Load(); n != 4 {
		t.Errorf("allowed origin GETs %d; want 4", n)
	}
}

// Every way into the origin honours AllowHosts: a prefetch of a host that
// clients are refused is refused as an invalid URL, before any fetch, and
// the rest of its list is not fetched either.
func TestAllowHostsPrefetch(t *testing.T) {
	allowed, other := newOrigin(t), newOrigin(t)
	allowed.Put("/ok.bin", []byte("allowed"))
	other.Put("/f", []byte("other"))
	m := newMirror(t, allowed, func(m *httpmirror.MirrorHandler) {
		m.AllowHosts = []string{allowed.HostPort()}
	})
	_, err := m.h.Prefetch([]string{allowed.URL + "/ok.bin", other.URL + "/f", "https://example.com/x"})
	var pe *httpmirror.PrefetchError
	if !errors.As(err, &pe) || pe.Count != 2 || pe.Invalid[0].Index != 1 || !strings.Contains(pe.Invalid[0].Reason, "allowed hosts") {
		t.Fatalf("Prefetch: %v; want 2 invalid URLs, the first at index 1, for the allowed hosts", err)
	}
	if _, err := m.h.Lookup(context.Background(), other.URL+"/f"); !errors.Is(err, httpmirror.ErrInvalidRef) {
		t.Errorf("Lookup of a host not allowed: %v; want ErrInvalidRef", err)
	}
	waitFills(t, m)
	if n, g := len(other.Received()), allowed.Gets.Load(); n != 0 || g != 0 {
		t.Errorf("origins received %d and %d requests; want none", n, g)
	}
}
