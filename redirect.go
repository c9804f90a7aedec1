package httpmirror

import (
	"errors"
	"net/http"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/storage"
)

// errRedirectNotAllowed: an origin redirected to a URL the mirror would not
// fetch for a client (bad scheme or host, or a blocked suffix). 502.
var errRedirectNotAllowed = errors.New("upstream redirect target not allowed")

// withRedirectPolicy returns a copy of c whose redirects must also pass the
// handler's host policy: the target must be http or https, its host a
// valid upstream host by the same rules as a request's, and its path free
// of blocked suffixes. The address guard in the client's dialer checks the
// addresses on top of that. c's own CheckRedirect (its redirect limit) runs
// first.
func (m *MirrorHandler) withRedirectPolicy(c *http.Client) *http.Client {
	cc := *c
	inner := c.CheckRedirect
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if inner != nil {
			if err := inner(req, via); err != nil {
				return err
			}
		} else if len(via) >= 10 {
			return errTooManyRedirects
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return errRedirectNotAllowed
		}
		if _, err := canonicalHost(req.URL.Host); err != nil {
			return errRedirectNotAllowed
		}
		if m.blocked(req.URL.EscapedPath()) {
			return errBlocked
		}
		return nil
	}
	return &cc
}

// redirectKeptHeaders are response headers that an origin puts on a
// redirect rather than on the final response, and that clients need on the
// mirrored object. The Hugging Face Hub answers /resolve/ for large files
// with a redirect to its CDN that carries the file's commit, ETag and size.
var redirectKeptHeaders = []string{"X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size"}

// infoFromResponse is fill.InfoFromResponse plus the headers of
// redirectKeptHeaders found on the redirects that led to resp. StoredAt is
// the time of the response, which the object's age counts from (RFC 9111
// section 4.2.3).
func (m *MirrorHandler) infoFromResponse(resp *http.Response) storage.Info {
	info := fill.InfoFromResponse(resp)
	info.StoredAt = m.now()
	for req := resp.Request; req != nil && req.Response != nil; req = req.Response.Request {
		for _, k := range redirectKeptHeaders {
			if v := req.Response.Header.Values(k); len(v) > 0 && info.Header.Get(k) == "" {
				if info.Header == nil {
					info.Header = http.Header{}
				}
				info.Header[k] = v
			}
		}
	}
	return info
}
