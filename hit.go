package httpmirror

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// HitRequest is a request as a serving loop outside net/http parsed it,
// for ServeHit.
type HitRequest struct {
	// Method is the request method.
	Method string
	// Path is the request target's path, escaped as the client sent it;
	// RawQuery is what followed '?', without it.
	Path, RawQuery string
	// Host is the Host header.
	Host string
	// Header holds the request's header fields in canonical form.
	Header http.Header
	// RemoteAddr is the client's address, for the access log.
	RemoteAddr string
}

// HitResponse is the answer ServeHit gives: a 200 whose header fields
// (without Date and Connection, which the serving loop adds) are in
// Header, in wire form, and whose body is Body. Body is shared with the
// cache and must not be modified; it is nil for HEAD. Reset it (or use a
// new one) for each request.
type HitResponse struct {
	Header []byte
	Body   []byte

	// What the access log needs once the response has been sent.
	start   time.Time
	host    string
	outcome outcome
}

// Reset empties r for the next request, keeping its buffer.
func (r *HitResponse) Reset() {
	*r = HitResponse{Header: r.Header[:0]}
}

// ServeHit answers req when it is a plain hit, for a serving loop that
// answers such requests without net/http (cmd/httpmirror's public
// listener does, see internal/server): a GET or HEAD without conditions or
// ranges, for a fresh stored object whose body is in memory, that needs no
// authorisation, no redirect to the store and no check at the origin. It
// fills resp and reports true; the loop then sends the response and calls
// HitSent. Otherwise it reports false, has answered nothing and counted
// nothing, and req must be served by ServeHTTP.
//
// Its answers are those ServeHTTP gives the same requests, byte for byte
// but for the order of header fields.
func (m *MirrorHandler) ServeHit(req *HitRequest, resp *HitResponse) bool {
	if m.init() != nil || m.RemoteCache == nil || m.CheckSyncTimeout > 0 ||
		(req.Method != http.MethodGet && req.Method != http.MethodHead) || !plainHeader(req.Header) ||
		len(req.Header["Authorization"]) > 0 {
		return false
	}
	var start time.Time
	if m.accessLogEnabled(context.Background()) {
		start = time.Now()
	}
	t, err := m.resolve(req.Path, req.RawQuery, req.Host)
	if err != nil {
		return false
	}
	if _, ok := m.negatives.get(t.key, m.now); ok {
		return false
	}
	// The backend itself, not the timing decorator: a request this
	// declines is opened again by ServeHTTP, and counted there once.
	ctx := context.Background()
	obj, err := m.RemoteCache.Open(ctx, t.key)
	if err != nil {
		return false
	}
	defer obj.Close()
	b, ok := obj.(storage.InMemory)
	if !ok {
		return false
	}
	info := obj.Info()
	if info.Header[policy.AuthHeader] != nil {
		return false
	}
	if info.Header["Vary"] != nil {
		if _, other := m.variant(&http.Request{Header: req.Header}, t, info); other {
			return false
		}
	}
	e := m.hot.get(t.key, info)
	var fr policy.Freshness
	if e != nil {
		fr = e.fresh
	} else {
		fr = m.rules.Freshness(t.ruleKey(), info)
	}
	if fr.Mutable && fr.Stale(info.StoredAt, m.now()) {
		return false
	}
	if !m.NoRedirect && req.Method == http.MethodGet {
		if u, err := m.store.(storage.Redirector).SignedURL(ctx, t.key, http.MethodGet, m.linkExpires()); err != nil || u != "" {
			return false
		}
	}
	body := b.Bytes()
	if e == nil {
		e = m.hot.entry(t.key, info, int64(len(body)), fr)
	}
	resp.Header = append(resp.Header, e.wire()...)
	if fr.Explicit {
		// Downstream caches count the time the object spent here
		// (RFC 9111 section 5.1).
		age := max(m.now().Sub(info.StoredAt), 0)
		resp.Header = append(resp.Header, "Age: "...)
		resp.Header = strconv.AppendInt(resp.Header, int64(age/time.Second), 10)
		resp.Header = append(resp.Header, "\r\n"...)
	}
	if req.Method == http.MethodGet {
		resp.Body = body
	}
	resp.start, resp.host, resp.outcome = start, t.host, outcomeHit
	return true
}

// HitSent records a response of ServeHit once the serving loop has sent
// it (sent body bytes; aborted when the connection failed): in the metrics
// and the access log, as ServeHTTP records its responses.
func (m *MirrorHandler) HitSent(req *HitRequest, resp *HitResponse, sent int64, aborted bool) {
	m.Metrics.request(resp.outcome, http.StatusOK, sent)
	if resp.start.IsZero() {
		return // no access log
	}
	// The path as net/http's URL.Path has it: unescaped.
	path := req.Path
	if strings.IndexByte(path, '%') >= 0 {
		if p, err := url.PathUnescape(path); err == nil {
			path = p
		}
	}
	m.logRequest(context.Background(), &accessEntry{
		method: req.Method, host: resp.host, path: logPath(path), status: http.StatusOK, bytes: sent,
		duration: time.Since(resp.start), outcome: resp.outcome, remote: req.RemoteAddr, aborted: aborted,
	})
}

// plainHeader is plainRequest of a request's header.
func plainHeader(h http.Header) bool {
	return len(h["Range"]) == 0 && len(h["If-None-Match"]) == 0 && len(h["If-Modified-Since"]) == 0 &&
		len(h["If-Match"]) == 0 && len(h["If-Unmodified-Since"]) == 0 && len(h["If-Range"]) == 0
}

// wire returns the entry's header fields in wire form ("Name: value\r\n",
// sorted by name, as net/http writes them), built once.
func (e *hotHeader) wire() []byte {
	e.wireOnce.Do(func() {
		keys := make([]string, 0, len(e.header))
		for k, v := range e.header {
			if len(v) > 0 {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		var b []byte
		for _, k := range keys {
			for _, v := range e.header[k] {
				b = append(b, k...)
				b = append(b, ": "...)
				b = append(b, headerValue(v)...)
				b = append(b, "\r\n"...)
			}
		}
		e.wireBytes = b
	})
	return e.wireBytes
}

// headerValue is v as net/http writes a header value: line breaks become
// spaces, so a stored value can never end the header early.
func headerValue(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] == '\r' || v[i] == '\n' {
			b := []byte(v)
			for j := i; j < len(b); j++ {
				if b[j] == '\r' || b[j] == '\n' {
					b[j] = ' '
				}
			}
			return string(b)
		}
	}
	return v
}
