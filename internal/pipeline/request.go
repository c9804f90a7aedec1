package pipeline

import (
	"net/http"
	"strconv"
	"strings"
)

// Kind is who asks.
type Kind uint8

const (
	// Client is a client of the public listener.
	Client Kind = iota
	// Peer is another replica reading an object this one fills or
	// stores (peer.go): it is never fetched for it.
	Peer
	// Prefetch is the operator's prefetch: an anonymous client that wants
	// the object stored, and no bytes.
	Prefetch
)

// Request is a request as the pipeline sees it, whichever server parsed
// it: net/http (FromHTTP) or the hit loop (HitRequest.request).
type Request struct {
	Kind   Kind
	Method string
	// Path is the request target's path, escaped as the client sent it;
	// RawQuery what followed '?', without it.
	Path, RawQuery string
	// Host is the Host header.
	Host string
	// Header holds the request's header fields in canonical form.
	Header http.Header
	// Remote is the client's address, for the log.
	Remote string
	// fragment: the request target had a literal '#' (which net/http
	// escapes in the path it gives), refused as target.go refuses it.
	fragment bool
}

// FromHTTP is the Request of r.
func FromHTTP(r *http.Request) *Request {
	req := new(Request)
	req.set(r)
	return req
}

// set makes req the Request of r.
func (req *Request) set(r *http.Request) {
	*req = Request{
		Method: r.Method, Path: r.URL.EscapedPath(), RawQuery: r.URL.RawQuery, Host: r.Host,
		Header: r.Header, Remote: r.RemoteAddr, fragment: strings.IndexByte(r.RequestURI, '#') >= 0,
	}
}

// Authenticated reports whether the request carries a credential.
func (r *Request) Authenticated() bool { return len(r.Header["Authorization"]) > 0 }

// plain reports whether the request asks for the whole body with no
// condition.
func (r *Request) plain() bool { return plainHeader(r.Header) }

// plainHeader reports whether a request with header h asks for the whole
// body with no condition.
func plainHeader(h http.Header) bool {
	return len(h["Range"]) == 0 && len(h["If-None-Match"]) == 0 && len(h["If-Modified-Since"]) == 0 &&
		len(h["If-Match"]) == 0 && len(h["If-Unmodified-Since"]) == 0 && len(h["If-Range"]) == 0
}

// rangeStart returns the first byte a request for one range from a known
// offset ("bytes=N-" or "bytes=N-M") asks for, else 0: a cold miss for
// such a range has the fill ask for it at once (fill.Source.Want).
func (r *Request) rangeStart() int64 {
	v := r.Header["Range"]
	if len(v) != 1 {
		return 0
	}
	spec, ok := strings.CutPrefix(v[0], "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0
	}
	first, _, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(first, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// same reports whether r and o are one request: the hit loop's parse of
// a request it hands to net/http and net/http's parse of it (see
// HitResponse), so that what the loop decided serves it.
func (r *Request) same(o *Request) bool {
	if r.Method != o.Method || r.Path != o.Path || r.RawQuery != o.RawQuery || r.Host != o.Host ||
		r.fragment != o.fragment || len(r.Header) != len(o.Header) {
		return false
	}
	for k, v := range r.Header {
		w := o.Header[k]
		if len(v) != len(w) {
			return false
		}
		for i := range v {
			if v[i] != w[i] {
				return false
			}
		}
	}
	return true
}
