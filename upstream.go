package httpmirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/httpmirror/httpmirror/internal/netguard"
	"github.com/httpmirror/httpmirror/internal/pipeline"
)

// UpstreamOptions configure the HTTP client httpmirror uses to reach origins.
// The zero value gives a client that refuses private addresses, trusts the
// system roots, and uses the default timeouts.
type UpstreamOptions struct {
	// RootCAs, when non-nil, replaces the system roots for verifying
	// origins.
	RootCAs *x509.CertPool
	// AllowPrivate disables the address guard, letting origins resolve to
	// loopback, private, link-local and other internal addresses.
	AllowPrivate bool
	// AllowNetworks are exceptions to the address guard: origins in these
	// networks are reached even though they are private.
	AllowNetworks []netip.Prefix
	// Resolver resolves origin names. Nil means the system resolver.
	Resolver *net.Resolver
	// ProxyURL, when set, routes every upstream connection through this
	// HTTP, HTTPS or SOCKS5 (socks5://, socks5h://) proxy.
	ProxyURL *url.URL
	// ProxyFromEnvironment, when ProxyURL is nil, takes the proxy from
	// HTTPS_PROXY, HTTP_PROXY and NO_PROXY (and their lower-case forms).
	ProxyFromEnvironment bool
	// ProxyDial, when set, makes every upstream connection (for example
	// through a SOCKS dialer). The address guard then checks only IP literals, since the
	// proxy resolves names.
	ProxyDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds TCP connect plus TLS handshake. Zero means 10s.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the origin's response
	// headers after the request is sent. Zero means 30s.
	ResponseHeaderTimeout time.Duration
}

// NewUpstreamClient returns the HTTP client for reaching origins. It never
// asks for compression (so stored bytes are the origin's bytes), follows up
// to MaxRedirects redirects, and, unless AllowPrivate, refuses every address
// the netguard package forbids, on the first request and on every redirect.
func NewUpstreamClient(o UpstreamOptions) *http.Client {
	connect := o.ConnectTimeout
	if connect == 0 {
		connect = 10 * time.Second
	}
	header := o.ResponseHeaderTimeout
	if header == 0 {
		header = 30 * time.Second
	}
	guard := netguard.Guard{Allow: o.AllowNetworks}
	proxy, proxyAddrs := proxyConfig(o)
	t := upstreamTransport(o.RootCAs, connect, header,
		upstreamDial(o, guard, connect, proxyAddrs),
		guardedProxy(o, guard, proxy))
	// Redirects are followed up to MaxRedirects, to http and https URLs
	// only; MirrorHandler adds its host rules (withRedirectPolicy).
	return &http.Client{
		Transport: &userAgent{rt: t, ua: "httpmirror"},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > MaxRedirects {
				return pipeline.ErrTooManyRedirects
			}
			if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
				return pipeline.ErrRedirectNotAllowed
			}
			return nil
		},
	}
}

// upstreamDial returns the transport's dial function. Unless
// o.AllowPrivate, the address guard checks every address dialled, after
// resolution (netguard.Guard.Control), so that a name resolving to a
// private address is refused too; the dials to proxyAddrs, the proxies'
// own addresses, are not guarded. With o.ProxyDial every connection is
// made through it instead, and the guard checks only IP literals, since
// the proxy resolves names.
func upstreamDial(o UpstreamOptions, guard netguard.Guard, connect time.Duration, proxyAddrs map[string]bool) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if o.ProxyDial != nil {
		pd := o.ProxyDial
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !o.AllowPrivate {
				if err := guard.CheckHost(addr); err != nil {
					return nil, err
				}
			}
			return pd(ctx, network, addr)
		}
	}
	plain := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second, Resolver: o.Resolver}
	dialer := plain
	if !o.AllowPrivate {
		guarded := *plain
		guarded.Control = guard.Control
		dialer = &guarded
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		// The proxy itself may well live on a private network; what the
		// guard protects is the origin behind it, checked in the Proxy
		// function (guardedProxy).
		if proxyAddrs[addr] {
			return plain.DialContext(ctx, network, addr)
		}
		return dialer.DialContext(ctx, network, addr)
	}
}

// guardedProxy returns the transport's Proxy function: proxy (nil for no
// proxy, then so is the result), with, unless o.AllowPrivate, the address
// guard applied to each request's origin whenever it goes through a
// proxy (checkProxiedTarget), since the proxy, not the dialer, then
// connects to it. The transport calls it for the first request and for
// every redirect.
func guardedProxy(o UpstreamOptions, guard netguard.Guard, proxy func(*url.URL) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	if proxy == nil {
		return nil
	}
	resolver := o.Resolver
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	return func(req *http.Request) (*url.URL, error) {
		u, err := proxy(req.URL)
		if u != nil && err == nil && !o.AllowPrivate {
			if err := checkProxiedTarget(req.Context(), guard, resolver, req.URL.Host); err != nil {
				return nil, err
			}
		}
		return u, err
	}
}

// upstreamTransport is the transport to origins: it never asks for
// compression, so that stored bytes are the origin's; connect bounds the
// TLS handshake (the dialer bounds the TCP connect) and header the wait
// for response headers; rootCAs, when non-nil, replaces the system roots.
func upstreamTransport(rootCAs *x509.CertPool, connect, header time.Duration,
	dial func(ctx context.Context, network, addr string) (net.Conn, error),
	proxy func(*http.Request) (*url.URL, error)) *http.Transport {
	return &http.Transport{
		Proxy:                 proxy,
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: rootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: header,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}
}

// userAgent sets the User-Agent of requests that have none.
type userAgent struct {
	rt http.RoundTripper
	ua string
}

func (u *userAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("User-Agent") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("User-Agent", u.ua)
	}
	return u.rt.RoundTrip(r)
}

// CertPoolFromPEM returns the system roots plus the certificates in pem. It
// fails when pem holds no certificate.
func CertPoolFromPEM(pem []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate found")
	}
	return pool, nil
}

// proxyConfig returns the proxy function the options ask for (nil for
// none) and the set of proxy addresses ("host:port", as the transport dials
// them).
func proxyConfig(o UpstreamOptions) (func(*url.URL) (*url.URL, error), map[string]bool) {
	addrs := map[string]bool{}
	add := func(u *url.URL) {
		if u == nil || u.Host == "" {
			return
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]
		}
		addrs[net.JoinHostPort(host, port)] = true
	}
	switch {
	case o.ProxyURL != nil:
		add(o.ProxyURL)
		u := o.ProxyURL
		return func(*url.URL) (*url.URL, error) { return u, nil }, addrs
	case o.ProxyFromEnvironment:
		cfg := httpproxy.FromEnvironment()
		for _, raw := range []string{cfg.HTTPProxy, cfg.HTTPSProxy} {
			if raw == "" {
				continue
			}
			if !strings.Contains(raw, "://") {
				raw = "http://" + raw
			}
			if u, err := url.Parse(raw); err == nil {
				add(u)
			}
		}
		return cfg.ProxyFunc(), addrs
	}
	return nil, addrs
}

// checkProxiedTarget applies the address guard to an origin reached through
// a proxy, which resolves the name itself: IP literals are checked (numeric
// IPv4 hosts in every spelling inet_aton reads, which is how many proxies
// resolve them), and names are resolved here and refused if any address
// is. A name that does
// not resolve here is left to the proxy (it may know internal names the
// mirror does not); deployments that must rule that out keep the proxy
// itself from reaching private networks.
func checkProxiedTarget(ctx context.Context, guard netguard.Guard, r *net.Resolver, hostport string) error {
	if err := guard.CheckHost(hostport); err != nil {
		return err
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return nil // a literal, checked above
	}
	if a, _ := netguard.ParseIPv4Loose(host); a.IsValid() {
		return nil // a numeric host, checked above as the address it means
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := guard.Control("tcp", netip.AddrPortFrom(a, 443).String(), nil); err != nil {
			return err
		}
	}
	return nil
}
