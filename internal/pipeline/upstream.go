package pipeline

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MaxRedirects is how many redirects an upstream request follows; an origin
// that redirects more often gets 502.
const MaxRedirects = 10

// ErrRedirectNotAllowed: an origin redirected to a URL the mirror would not
// fetch for a client (bad scheme or host). 502. A redirect to a host not
// in AllowHosts or to a blocked suffix is refused as a request for it
// would be (403).
var ErrRedirectNotAllowed = errors.New("upstream redirect target not allowed")

// ErrTooManyRedirects is returned when an origin redirects more than
// MaxRedirects times.
var ErrTooManyRedirects = errors.New("too many upstream redirects")

// upstreamClient returns a copy of c whose redirects must pass the
// handler's policy: at most MaxRedirects of them, each to an http or https
// URL whose host is a valid upstream host by the same rules as a request's
// and whose path has no blocked suffix. The redirect's host is rewritten
// to its canonical form (a numeric IPv4 host in dotted decimal), so that
// the address guard, in the client's dialer or before a proxy sees the
// request, checks the address the host means. Authorization follows
// redirects to the same origin only. c's own CheckRedirect, if any, runs
// first. Every request of the copy, the first and each redirect, passes
// the allowed-hosts guard (see allowGuard).
func (p *Pipeline) upstreamClient(c *http.Client) *http.Client {
	cc := *c
	inner := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if inner != nil {
			if err := inner(req, via); err != nil {
				return err
			}
		}
		if len(via) > MaxRedirects {
			return ErrTooManyRedirects
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return ErrRedirectNotAllowed
		}
		host, err := CanonicalHost(req.URL.Host)
		if err != nil {
			return ErrRedirectNotAllowed
		}
		req.URL.Host = host
		if p.cfg.Hosts.blocked(req.URL.EscapedPath()) {
			return errBlocked
		}
		if len(via) > 0 && !sameOrigin(req.URL, via[0].URL) {
			// The client's credential is for the origin it asked: a
			// redirect elsewhere (a CDN's signed URL, a subdomain,
			// another port, plain http) goes without it. net/http
			// drops it only for hosts that are not subdomains.
			req.Header.Del("Authorization")
		}
		return nil
	}
	if len(p.cfg.Hosts.Allow) > 0 {
		rt := cc.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		cc.Transport = allowGuard{rt: rt, allowed: p.cfg.Hosts.Allowed}
	}
	return &cc
}

// allowGuard is the one place AllowHosts is enforced on the way out: every
// request the mirror sends to an origin goes through it, whatever sent it
// (a client's miss or direct request, a redirect, a revalidation, an
// authorisation or size check, a prefetch or warm, a resume, a peer
// replica's fill, the source of a CIDN transfer), and a host not allowed
// is refused before a byte leaves the machine. Target resolution refuses
// such requests earlier still (403, no work done); the guard makes sure no
// other way in forgets to.
type allowGuard struct {
	rt      http.RoundTripper
	allowed func(hostport string) bool
}

func (g allowGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	host, err := CanonicalHost(req.URL.Host)
	if err != nil || !g.allowed(host) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, errHostNotAllowed
	}
	return g.rt.RoundTrip(req)
}

// sameOrigin reports whether a and b have the same origin (RFC 6454):
// scheme, host and port, the scheme's default port written or not.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "http") {
		return "80"
	}
	return "443"
}

// upstream sends one request to an origin: the one fetch path of every way
// into the origin (fills, the direct proxy, revalidations, authorisation
// and size checks, the continuation of a response), through the client
// of upstreamClient, with the headers h, timing the response for the
// observer.
func (p *Pipeline) upstream(ctx context.Context, method, url string, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	if err == nil {
		p.obs.UpstreamResponse(time.Since(start))
	}
	return resp, err
}
