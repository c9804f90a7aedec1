package httpmirror_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

func TestSSRFRefused(t *testing.T) {
	o := newOrigin(t)
	o.Put("/secret", []byte("internal data"))
	_, port, _ := net.SplitHostPort(o.HostPort())
	dns := newFakeDNS(t, map[string]string{
		"loopback.example.com": "127.0.0.1",
		"metadata.example.com": "169.254.169.254",
		"private.example.com":  "10.0.0.1",
		"v6loop.example.com":   "::1",
		"mapped.example.com":   "::ffff:127.0.0.1",
	})
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{
			RootCAs:  o.CertPool(),
			Resolver: dns.resolver(),
			// A short connect timeout keeps the test quick should a
			// refused address ever be dialled after all.
			ConnectTimeout: 2e9,
		})
	})

	tests := []struct {
		host string
		want int
	}{
		{"127.0.0.1:" + port, 403},
		{"127.0.0.2:" + port, 403},
		{"0.0.0.0:" + port, 403},
		{"10.1.2.3:" + port, 403},
		{"192.168.0.1:" + port, 403},
		{"169.254.169.254", 403},
		{"[::1]:" + port, 403},
		{"[::ffff:127.0.0.1]:" + port, 403},
		{"[::ffff:7f00:1]:" + port, 403},
		{"[fe80::1]:" + port, 403},
		{"loopback.example.com:" + port, 403},
		{"metadata.example.com", 403},
		{"private.example.com:" + port, 403},
		{"v6loop.example.com:" + port, 403},
		{"mapped.example.com:" + port, 403},
		{"localhost:" + port, 404}, // the dotted-host rule rejects it first
		{"::1", 404},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			r := get(t, m.URL+"/"+tc.host+"/secret")
			if r.StatusCode != tc.want {
				t.Fatalf("status %d; want %d (body %q)", r.StatusCode, tc.want, r.body)
			}
			if strings.Contains(string(r.body), "internal data") {
				t.Fatalf("internal data served")
			}
		})
	}
	if n := len(o.Received()); n != 0 {
		t.Fatalf("the origin received %d requests; want none", n)
	}
	if dns.queries.Load() == 0 {
		t.Fatalf("the fake DNS server was never asked; the name cases tested nothing")
	}
}

func TestSSRFAllowedWithFlag(t *testing.T) {
	o := newOrigin(t)
	o.Put("/ok", []byte("fine"))
	m := newMirror(t, o) // the helper's client allows private upstreams
	if r := get(t, m.url(o, "/ok")); r.StatusCode != 200 || string(r.body) != "fine" {
		t.Fatalf("status %d body %q; want 200 fine", r.StatusCode, r.body)
	}
}

func TestSSRFDefaultClientRefuses(t *testing.T) {
	o := newOrigin(t)
	o.Put("/ok", []byte("fine"))
	// No Client: the handler builds its own, guarded one.
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.Client = nil })
	if r := get(t, m.url(o, "/ok")); r.StatusCode != 403 {
		t.Fatalf("status %d; want 403", r.StatusCode)
	}
	if n := len(o.Received()); n != 0 {
		t.Fatalf("the origin received %d requests; want none", n)
	}
}

// An origin that is allowed redirects to a loopback address that is not:
// the redirect is refused like a direct request, and the second server
// never sees a request.
func TestSSRFRedirectRefused(t *testing.T) {
	var innerHits atomic.Int64
	inner := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		innerHits.Add(1)
		w.Write([]byte("internal"))
	}))
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	inner.Listener = ln
	inner.StartTLS()
	defer inner.Close()

	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		http.Redirect(w, r, inner.URL+"/data", http.StatusFound)
		return true
	})
	pool := o.CertPool()
	pool.AddCert(inner.Certificate())
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{
			RootCAs:       pool,
			AllowNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		})
	})
	r := get(t, m.url(o, "/file"))
	if r.StatusCode != 403 {
		t.Fatalf("status %d; want 403", r.StatusCode)
	}
	if o.Gets.Load() != 1 || innerHits.Load() != 0 {
		t.Fatalf("origin GETs %d, redirect target hits %d; want 1 and 0", o.Gets.Load(), innerHits.Load())
	}
}
