package pipeline

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// FuzzCleanPath checks that the allocation-free fast path of cleanPath
// agrees with the general segment-by-segment cleaning.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a//b/", "/a/./b", "/a/../b", "/..;/x", "/a%2Fb", "/a\\b", "/a/b/.", "/a/..", "//", "/./", "/a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !strings.HasPrefix(p, "/") {
			return
		}
		fast, ferr := cleanPath(p)
		slow, serr := cleanSegments(p)
		if (ferr == nil) != (serr == nil) || fast != slow {
			t.Fatalf("cleanPath(%q) = %q, %v; segment cleaning gives %q, %v", p, fast, ferr, slow, serr)
		}
	})
}

// Hosts already in canonical form, names and dotted-decimal addresses
// alike, are checked without allocating.
func TestCanonicalHostDoesNotAllocate(t *testing.T) {
	for _, h := range []string{"huggingface.co", "objects.githubusercontent.com:443", "93.184.216.34", "127.0.0.1:8080"} {
		if got, err := CanonicalHost(h); err != nil || got != h {
			t.Fatalf("CanonicalHost(%q) = %q, %v; want it unchanged", h, got, err)
		}
		if n := testing.AllocsPerRun(100, func() { CanonicalHost(h) }); n != 0 {
			t.Errorf("CanonicalHost(%q) allocates %v times", h, n)
		}
	}
}

// The allowed-hosts guard sits in the upstream client itself: a request
// that no resolution checked (any future way into the origin) is refused
// before it reaches the transport, in any spelling of the host.
func TestAllowGuardInClient(t *testing.T) {
	var sent []string
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = append(sent, r.URL.String())
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	})
	m := New(Config{Client: &http.Client{Transport: rt}, Hosts: HostRules{Mode: HostFromFirstPath, Allow: []string{"files.example.org", "127.0.0.1:8443"}}})
	for _, u := range []string{"https://evil.example/a", "https://127.0.0.1/a", "https://2130706432:8443/a", "https://files.example.org.evil.example/a"} {
		if _, err := m.client.Get(u); !errors.Is(err, errHostNotAllowed) {
			t.Errorf("GET %s: %v; want errHostNotAllowed", u, err)
		}
	}
	for _, u := range []string{"https://files.example.org/a", "https://FILES.example.org./a", "https://0x7f.1:8443/a"} {
		if _, err := m.client.Get(u); err != nil {
			t.Errorf("GET %s: %v", u, err)
		}
	}
	if len(sent) != 3 {
		t.Errorf("transport got %q; want the 3 allowed requests", sent)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
