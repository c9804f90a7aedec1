package httpmirror

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/httpmirror/httpmirror/internal/netguard"
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
	// Proxy chooses a proxy for each request, as http.Transport.Proxy.
	// Nil means no proxy.
	Proxy func(*http.Request) (*url.URL, error)
	// ProxyDial, when set, makes every upstream connection (the seed's
	// ProxyDial). The address guard then checks only IP literals, since the
	// proxy resolves names.
	ProxyDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ConnectTimeout bounds TCP connect plus TLS handshake. Zero means 10s.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the origin's response
	// headers after the request is sent. Zero means 30s.
	ResponseHeaderTimeout time.Duration
	// MaxRedirects is how many redirects are followed. Zero means 10; a
	// negative value follows none.
	MaxRedirects int
	// UserAgent is sent with every upstream request. Empty means
	// "httpmirror".
	UserAgent string
}

// errTooManyRedirects is returned when an origin redirects more than
// MaxRedirects times.
var errTooManyRedirects = errors.New("too many upstream redirects")

// NewUpstreamClient returns the HTTP client for reaching origins. It never
// asks for compression (so stored bytes are the origin's bytes), follows
// redirects up to the limit, and, unless AllowPrivate, refuses every address
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
	maxRedirects := o.MaxRedirects
	if maxRedirects == 0 {
		maxRedirects = 10
	}
	dialer := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second, Resolver: o.Resolver}
	if !o.AllowPrivate {
		dialer.Control = netguard.Guard{Allow: o.AllowNetworks}.Control
	}
	dial := dialer.DialContext
	if o.ProxyDial != nil {
		pd := o.ProxyDial
		guard := netguard.Guard{Allow: o.AllowNetworks}
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !o.AllowPrivate {
				if err := guard.CheckHost(addr); err != nil {
					return nil, err
				}
			}
			return pd(ctx, network, addr)
		}
	}
	t := &http.Transport{
		Proxy:                 o.Proxy,
		DialContext:           dial,
		TLSClientConfig:       &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: header,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   32,
		DisableCompression:    true,
		ForceAttemptHTTP2:     true,
	}
	ua := o.UserAgent
	if ua == "" {
		ua = "httpmirror"
	}
	return &http.Client{
		Transport: &userAgent{rt: t, ua: ua},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects || maxRedirects < 0 {
				return errTooManyRedirects
			}
			if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
				return fmt.Errorf("redirect to unsupported scheme %q", req.URL.Scheme)
			}
			return nil
		},
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
