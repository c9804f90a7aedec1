package httpmirror_test

import (
	"bytes"
	"net"
	"net/url"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// Through an HTTP CONNECT proxy and a SOCKS5 proxy on loopback, the origin
// is reached only via the proxy: its name resolves nowhere but in the
// proxy, and the address guard stays on for everything else.
func TestUpstreamProxies(t *testing.T) {
	for _, kind := range []string{"http", "socks5"} {
		t.Run(kind, func(t *testing.T) {
			o := newOrigin(t)
			data := payload(50, 300000)
			o.Put("/via-proxy.bin", data)
			_, port, _ := net.SplitHostPort(o.HostPort())
			// The origin's certificate is valid for example.com; only the
			// proxy knows that example.com is the loopback origin.
			hosts := map[string]string{"example.com": "127.0.0.1"}
			var p *testutil.Proxy
			if kind == "http" {
				p = testutil.NewHTTPProxy(t, hosts)
			} else {
				p = testutil.NewSOCKS5Proxy(t, hosts)
			}
			dns := newFakeDNS(t, nil) // the mirror itself resolves nothing
			m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
				m.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{
					RootCAs:  o.CertPool(),
					ProxyURL: &url.URL{Scheme: kind, Host: p.Addr},
					Resolver: dns.resolver(),
				})
			})

			r := get(t, m.URL+"/example.com:"+port+"/via-proxy.bin")
			if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
				t.Fatalf("through the proxy: status %d, %d bytes", r.StatusCode, len(r.body))
			}
			if got := p.Targets(); len(got) != 1 || got[0] != "example.com:"+port {
				t.Fatalf("proxy targets %q; want [example.com:%s]", got, port)
			}
			if o.Gets.Load() != 1 {
				t.Fatalf("origin GETs %d; want 1", o.Gets.Load())
			}

			// An internal literal is refused before the proxy is asked.
			r = get(t, m.URL+"/127.0.0.1:"+port+"/via-proxy.bin")
			if r.StatusCode != 403 {
				t.Fatalf("private literal through the proxy: status %d; want 403", r.StatusCode)
			}
			// So is a name that resolves to an internal address.
			dns.set("internal.example.com", "10.0.0.7")
			r = get(t, m.URL+"/internal.example.com:"+port+"/x")
			if r.StatusCode != 403 {
				t.Fatalf("private name through the proxy: status %d; want 403", r.StatusCode)
			}
			if got := p.Targets(); len(got) != 1 {
				t.Fatalf("proxy asked for %q; want only the first target", got)
			}
		})
	}
}

// With the proxy taken from the environment, NO_PROXY hosts are reached
// directly and the others through the proxy.
func TestProxyFromEnvironmentHonoursNoProxy(t *testing.T) {
	o := newOrigin(t)
	o.Put("/f", []byte("data"))
	_, port, _ := net.SplitHostPort(o.HostPort())
	p := testutil.NewHTTPProxy(t, map[string]string{"example.com": "127.0.0.1", "files.other.org": "127.0.0.1"})
	dns := newFakeDNS(t, map[string]string{"example.com": "127.0.0.1"})
	t.Setenv("HTTPS_PROXY", "http://"+p.Addr)
	t.Setenv("NO_PROXY", "example.com")
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{
			RootCAs: o.CertPool(), AllowPrivate: true, ProxyFromEnvironment: true, Resolver: dns.resolver(),
		})
	})
	if r := get(t, m.URL+"/example.com:"+port+"/f"); r.StatusCode != 200 || p.Tunnels.Load() != 0 {
		t.Fatalf("NO_PROXY host: status %d, tunnels %d; want 200 reached directly", r.StatusCode, p.Tunnels.Load())
	}
	// Any other name goes through the proxy (which alone can resolve it;
	// the certificate is for example.com, so the TLS handshake fails after
	// the tunnel is up: the tunnel is what this checks).
	get(t, m.URL+"/files.other.org:"+port+"/f")
	if p.Tunnels.Load() != 1 {
		t.Fatalf("proxied host: tunnels %d; want 1", p.Tunnels.Load())
	}
}
