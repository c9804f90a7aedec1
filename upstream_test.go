package httpmirror_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"golang.org/x/net/dns/dnsmessage"
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
		{"0177.0.0.1:" + port, 403},
		{"0x7f.1:" + port, 403},
		{"2130706433:" + port, 403},
		{"0251.0376.0251.0376", 403},
		{"127.0.0.256:" + port, 404}, // numeric, but no address
		{"localhost:" + port, 404},   // the dotted-host rule rejects it first
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

// Numeric hosts in the spellings inet_aton reads (octal, hex, shortened)
// never reach a proxy as names it would resolve to loopback: through an
// HTTP CONNECT and a SOCKS5 proxy that do resolve them that way, requests
// and redirects for them are refused before the proxy is asked, without a
// DNS lookup, and neither origin sees a request.
func TestUpstreamProxiesRefuseNumericHosts(t *testing.T) {
	numeric := []string{"0177.0.0.1", "0x7f.0.0.1", "127.1", "127.0.1", "0x7f.1", "2130706433"}
	for _, kind := range []string{"http", "socks5"} {
		t.Run(kind, func(t *testing.T) {
			front, behind := newOrigin(t), newOrigin(t)
			_, frontPort, _ := net.SplitHostPort(front.HostPort())
			_, port, _ := net.SplitHostPort(behind.HostPort())
			front.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
				// /to/HOST redirects to the behind origin under HOST.
				host := strings.TrimPrefix(r.URL.Path, "/to/")
				http.Redirect(w, r, "https://"+host+":"+port+"/f", http.StatusFound)
				return true
			})
			behind.Put("/f", []byte("internal data"))
			// The proxy reads numeric hosts as inet_aton does.
			hosts := map[string]string{"example.com": "127.0.0.1", "0251.0376.0251.0376": "127.0.0.1"}
			for _, h := range numeric {
				hosts[h] = "127.0.0.1"
			}
			var p *testutil.Proxy
			if kind == "http" {
				p = testutil.NewHTTPProxy(t, hosts)
			} else {
				p = testutil.NewSOCKS5Proxy(t, hosts)
			}
			dns := newFakeDNS(t, nil)
			m := newMirror(t, front, func(m *httpmirror.MirrorHandler) {
				m.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{
					RootCAs:  front.CertPool(),
					ProxyURL: &url.URL{Scheme: kind, Host: p.Addr},
					Resolver: dns.resolver(),
				})
			})

			for _, h := range append(numeric, "0251.0376.0251.0376") {
				if r := get(t, m.URL+"/"+h+":"+port+"/f"); r.StatusCode != 403 {
					t.Errorf("%s: status %d; want 403", h, r.StatusCode)
				}
			}
			if got := p.Targets(); len(got) != 0 {
				t.Fatalf("the proxy was asked for %q; want nothing", got)
			}
			if n := dns.queries.Load(); n != 0 {
				t.Fatalf("%d DNS queries for numeric hosts; want none", n)
			}

			for _, h := range numeric {
				r := get(t, m.URL+"/example.com:"+frontPort+"/to/"+h)
				if r.StatusCode != 403 {
					t.Errorf("redirect to %s: status %d; want 403", h, r.StatusCode)
				}
			}
			for _, target := range p.Targets() {
				if target != "example.com:"+frontPort {
					t.Errorf("the proxy was asked for %q; want only the front origin", target)
				}
			}
			if got := front.Gets.Load(); got != int64(len(numeric)) {
				t.Errorf("front origin GETs %d; want %d", got, len(numeric))
			}
			if n := len(behind.Received()); n != 0 {
				t.Fatalf("the origin behind the redirects received %d requests; want none", n)
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

// fakeDNS is a DNS server on 127.0.0.1 that answers A and AAAA queries from
// a table, so tests can make names resolve to loopback or private addresses
// without touching the system resolver.
type fakeDNS struct {
	conn    net.PacketConn
	mu      sync.Mutex
	records map[string]netip.Addr // name without trailing dot -> address
	queries atomic.Int64
}

// set adds or replaces a record.
func (d *fakeDNS) set(name, addr string) {
	d.mu.Lock()
	d.records[name] = netip.MustParseAddr(addr)
	d.mu.Unlock()
}

func newFakeDNS(t *testing.T, records map[string]string) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{conn: pc, records: map[string]netip.Addr{}}
	for name, a := range records {
		d.records[name] = netip.MustParseAddr(a)
	}
	go d.serve()
	t.Cleanup(func() { pc.Close() })
	return d
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		d.queries.Add(1)
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		b.EnableCompression()
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		name := strings.TrimSuffix(q.Name.String(), ".")
		d.mu.Lock()
		a, ok := d.records[name]
		d.mu.Unlock()
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 1}
		switch {
		case ok && q.Type == dnsmessage.TypeA && a.Is4():
			b.AResource(rh, dnsmessage.AResource{A: a.As4()})
		case ok && q.Type == dnsmessage.TypeAAAA && a.Is6():
			b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		msg, err := b.Finish()
		if err == nil {
			d.conn.WriteTo(msg, from)
		}
	}
}

// resolver returns a pure-Go resolver that asks only this server.
func (d *fakeDNS) resolver() *net.Resolver {
	addr := d.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "udp", addr)
		},
	}
}
