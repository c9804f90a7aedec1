package server

import (
	"bytes"
	"net/http"
	"net/textproto"

	"github.com/httpmirror/httpmirror"
	"golang.org/x/net/http/httpguts"
)

// parseRequest parses a request head (the request line and the header
// lines, each ending in CRLF, without the empty line) into req, and sets
// *close when the client asked to close the connection. It reports whether
// the loop may answer the request: a GET or HEAD of an origin-form target
// over HTTP/1.1, without a body, an upgrade or an expectation, with one
// Host, and nothing net/http would refuse or read otherwise. Anything else
// (including every malformed request) is left to net/http, which answers
// it as it always does.
func parseRequest(head []byte, req *httpmirror.HitRequest, close *bool) bool {
	*close = false
	clear(req.Header)
	line, rest, ok := bytes.Cut(head, []byte("\r\n"))
	if !ok {
		return false
	}
	method, target, version, ok := requestLine(line)
	if !ok || version != "HTTP/1.1" {
		return false
	}
	switch method {
	case "GET":
		req.Method = http.MethodGet
	case "HEAD":
		req.Method = http.MethodHead
	default:
		return false
	}
	path, query, ok := originForm(target)
	if !ok {
		return false
	}
	req.Path, req.RawQuery = path, query
	hosts := 0
	for len(rest) > 0 {
		line, rest, ok = bytes.Cut(rest, []byte("\r\n"))
		if !ok {
			return false
		}
		name, value, ok := headerLine(line)
		if !ok {
			return false
		}
		switch name {
		case "Host":
			// net/http's rule, so both paths refuse the same hosts.
			if !httpguts.ValidHostHeader(value) {
				return false
			}
			hosts++
			req.Host = value
			continue
		case "Content-Length":
			if value != "0" {
				return false
			}
		case "Transfer-Encoding", "Expect", "Upgrade", "Te", "Trailer":
			return false
		case "Connection":
			for tok := range bytes.SplitSeq([]byte(value), []byte(",")) {
				switch string(bytes.ToLower(bytes.TrimSpace(tok))) {
				case "close":
					*close = true
				case "keep-alive", "":
				default:
					return false // upgrades and other hop-by-hop fields: net/http
				}
			}
		}
		req.Header[name] = append(req.Header[name], value)
	}
	return hosts == 1 && req.Host != ""
}

// requestLine splits "METHOD SP target SP version".
func requestLine(line []byte) (method string, target []byte, version string, ok bool) {
	m, rest, ok1 := bytes.Cut(line, []byte(" "))
	t, v, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || len(m) == 0 || len(t) == 0 {
		return "", nil, "", false
	}
	return string(m), t, string(v), true
}

// originForm splits an origin-form target ("/path?query") whose bytes are
// all ones a URL path or query may hold as they are, so that the path is
// exactly what net/http's URL.EscapedPath would give. Anything else is
// left to net/http.
func originForm(t []byte) (path, query string, ok bool) {
	if t[0] != '/' {
		return "", "", false
	}
	q := -1
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case bytes.IndexByte([]byte("-._~!$&'()*+,;=:@/"), c) >= 0:
		case c == '%':
			if i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2]) {
				return "", "", false
			}
		case c == '?' && q < 0:
			q = i
		default:
			return "", "", false
		}
	}
	if q < 0 {
		return string(t), "", true
	}
	return string(t[:q]), string(t[q+1:]), true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// headerLine parses "Name: value" with a token name and a value of visible
// characters, spaces and tabs. The name is returned in canonical form.
func headerLine(line []byte) (name, value string, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", "", false
	}
	name = canonicalName(line[:i])
	value = string(bytes.Trim(line[i+1:], " \t"))
	// net/http's rules for names and values, so both paths refuse the
	// same requests.
	if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
		return "", "", false
	}
	return name, value, true
}

// commonNames are header names clients send on nearly every request,
// returned without allocating.
var commonNames = func() map[string]string {
	m := map[string]string{}
	for _, n := range []string{"Host", "User-Agent", "Accept", "Accept-Encoding", "Accept-Language",
		"Connection", "Content-Length", "Range", "If-None-Match", "If-Modified-Since", "Authorization",
		"Cache-Control", "Pragma", "Referer", "Cookie", "X-Forwarded-For"} {
		m[n] = n
	}
	return m
}()

func canonicalName(b []byte) string {
	if n, ok := commonNames[string(b)]; ok { // no allocation: map lookup by []byte
		return n
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}
