package pipeline

import (
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/httpmirror/httpmirror/internal/netguard"
	"github.com/httpmirror/httpmirror/policy"
)

// Errors of target resolution. Each maps to one status in classify.
var (
	// errBadRequest: the request is malformed or hostile (traversal, control
	// characters, invalid escapes). 400.
	errBadRequest = errors.New("bad request path")
	// errNoTarget: the request names no upstream the mirror serves. 404,
	// answered by the NotFound handler so an embedding program can serve
	// its own pages there.
	errNoTarget = errors.New("no upstream for this request")
	// errPathTooLong: 414.
	errPathTooLong = errors.New("request path too long")
	// errBlocked: the path ends in a blocked suffix. 403.
	errBlocked = errors.New("blocked suffix")
	// errHostNotAllowed: the origin host is not in AllowHosts. 403.
	errHostNotAllowed = errors.New("host not allowed")
)

// Target is what a request resolves to: the upstream host and path, the
// cache key and the upstream URL.
type Target struct {
	host  string // lowercase host, with ":port" when the request named one
	path  string // escaped, cleaned path; starts with "/", may end with "/"
	query string // "?" and the raw query with CacheQuery, else empty
	key   string // host + path + query; for a variant, its own key (policy.VariantKey)

	// base is, for a variant of an object that varies, the object's key;
	// empty otherwise. Freshness rules match it, not the variant's key.
	base string
	// vary are the request headers the stored object varies on, once
	// known: fills forward the client's values of them (forwardedHeaders).
	vary []string
}

// Key is the target's cache key.
func (t Target) Key() string { return t.key }

// Host is the target's origin host, with ":port" when one was named.
func (t Target) Host() string { return t.host }

// ruleKey is the key the revalidate patterns match: the object's, for a
// variant too.
func (t Target) ruleKey() string {
	if t.base != "" {
		return t.base
	}
	return t.key
}

// url returns the upstream URL of t under scheme.
func (t Target) url(scheme string) string { return scheme + "://" + t.host + t.path + t.query }

// HostMode is how a request names its origin.
type HostMode uint8

const (
	HostFromHeader    HostMode = iota // the Host header, minus BaseDomain
	HostFixed                         // HostRules.Host
	HostFromFirstPath                 // the first path segment
)

// HostRules find a request's origin and check it and its path.
type HostRules struct {
	Mode HostMode
	// Host is, with HostFixed, the origin host[:port] of every request.
	Host string
	// BaseDomain is, with HostFromHeader, the suffix removed from the
	// Host header; empty: the Host header names the origin as it is.
	BaseDomain string
	// Allow lists the origin hosts served, as globs (see Allowed); empty
	// means every host.
	Allow []string
	// BlockSuffix lists path suffixes refused (403), case-insensitively.
	BlockSuffix []string
	// MaxPathLength is the longest path (and query) served (414 past it).
	MaxPathLength int
	// CacheQuery keeps the query string in the key and the upstream URL.
	CacheQuery bool
}

// resolve finds the target of a request for the escaped path raw, with
// the query rawQuery and the Host header hostHeader, with the origin named
// as mode says (the operator API names objects in first-path form
// whatever the mode of requests), and checks it: path, host, allowed
// hosts, blocked suffixes. The query string is dropped unless CacheQuery
// is set.
func (h *HostRules) resolve(mode HostMode, raw, rawQuery, hostHeader string) (Target, error) {
	var query string
	if h.CacheQuery && rawQuery != "" {
		query = "?" + rawQuery
	}
	if len(raw)+len(query) > h.MaxPathLength {
		return Target{}, errPathTooLong
	}
	p, err := cleanPath(raw)
	if err != nil {
		return Target{}, err
	}

	var host string
	switch mode {
	case HostFixed:
		host = h.Host
	case HostFromFirstPath:
		first, _, found := strings.Cut(p[1:], "/")
		if first == "" || !found {
			// "/" or "/example.com": no file named.
			return Target{}, errNoTarget
		}
		host = first
		if strings.Contains(first, "%") {
			host, _ = url.PathUnescape(first) // cleanPath checked the escape
		}
		p = p[1+len(first):]
	case HostFromHeader:
		host = stripPort(hostHeader)
		if h.BaseDomain != "" {
			// A fully qualified Host ("….mirror.example.net.") is the
			// same name as the one without the final dot.
			host = strings.TrimSuffix(host, ".")
			base := "." + strings.Trim(strings.ToLower(h.BaseDomain), ".")
			lower := strings.ToLower(host)
			if !strings.HasSuffix(lower, base) {
				return Target{}, errNoTarget
			}
			host = host[:len(host)-len(base)]
		}
	}
	host, err = CanonicalHost(host)
	if err != nil {
		return Target{}, err
	}
	if !h.Allowed(host) {
		return Target{}, errHostNotAllowed
	}
	if p == "/" {
		// The upstream root itself is no file to mirror.
		return Target{}, errNoTarget
	}
	if h.blocked(p) {
		return Target{}, errBlocked
	}
	if query != "" && (badChars(query) || strings.Contains(query, "#")) {
		// A request target has no fragment (RFC 9112 section 3.2), and
		// '#' separates a variant's key from its object's.
		return Target{}, errBadRequest
	}
	return Target{host: host, path: p, query: query, key: host + p + query}, nil
}

// cleanPath returns an escaped URL path without empty and "." segments,
// keeping a trailing slash. It refuses ".." (in any escaping), invalid
// escapes, control characters, backslashes and a literal '#', because no legitimate file
// URL carries them and origins disagree about what they mean. A path that
// is clean already is returned as it is, without allocating.
func cleanPath(escaped string) (string, error) {
	if !strings.HasPrefix(escaped, "/") {
		return "", errBadRequest
	}
	if isClean(escaped) {
		return escaped, nil
	}
	return cleanSegments(escaped)
}

// cleanSegments is cleanPath's general case, segment by segment.
func cleanSegments(escaped string) (string, error) {
	dir := strings.HasSuffix(escaped, "/")
	var b strings.Builder
	for seg := range strings.SplitSeq(escaped[1:], "/") {
		if seg == "" {
			continue
		}
		dec, err := url.PathUnescape(seg)
		if err != nil || strings.IndexByte(seg, '#') >= 0 {
			// A literal '#' ends a URL's path (RFC 3986 section 3.5),
			// and in a cache key it separates a variant from its
			// object (policy.VariantKey): no request may name one.
			return "", errBadRequest
		}
		if dec == "." {
			continue
		}
		if hostile(dec, 2) {
			return "", errBadRequest
		}
		b.WriteByte('/')
		b.WriteString(seg)
	}
	if dir || b.Len() == 0 {
		b.WriteByte('/')
	}
	return b.String(), nil
}

// isClean reports whether an escaped path needs no cleaning or checking:
// no percent-escapes, control characters, backslashes or '#', and no empty or
// "." segment (a trailing slash aside) nor one starting with ".." (such as
// "..;", which servlet containers take for "..").
func isClean(p string) bool {
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c == '%' || c == '\\' || c == '#' || c < 0x20 || c >= 0x7f {
				return false
			}
			if c != '/' {
				continue
			}
		}
		seg := p[segStart:i]
		if (seg == "" && i < len(p)) || seg == "." || strings.HasPrefix(seg, "..") || (seg == "" && i == 1) {
			return false
		}
		segStart = i + 1
	}
	return true
}

// hostile reports whether an unescaped path segment could climb out of its
// directory at an origin that interprets it loosely: ".." on either side of
// an encoded slash, "..;" (servlet path parameters), control characters,
// backslashes, invalid UTF-8 (overlong encodings of '.' and '/'), and any of
// these hidden under another layer of percent-encoding (depth layers are
// unwrapped).
func hostile(dec string, depth int) bool {
	if badChars(dec) || !utf8.ValidString(dec) {
		return true
	}
	for part := range strings.SplitSeq(dec, "/") {
		if p, _, _ := strings.Cut(part, ";"); p == ".." {
			return true
		}
	}
	if depth > 0 && strings.Contains(dec, "%") {
		if again, err := url.PathUnescape(dec); err == nil && again != dec {
			return hostile(again, depth-1)
		}
	}
	return false
}

// badChars reports control characters (including NUL, CR and LF) and
// backslashes.
func badChars(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return true
		}
	}
	return false
}

// stripPort removes a ":port" suffix from a Host header value. In Host-header
// modes the port belongs to the mirror, not to the origin.
func stripPort(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return hostport
}

// CanonicalHost checks an upstream host[:port] and returns it lowercased,
// without a trailing dot. A host whose last label is numeric (all digits,
// or 0x and hex digits) is an IPv4 address in any spelling inet_aton reads
// (0177.0.0.1, 0x7f.1, 127.1) and becomes dotted decimal, so the cache key,
// the upstream URL and the address guard all see one form and no proxy is
// left to interpret it; one that is no valid address is refused. Bracketed
// IPv6 literals are put in their canonical form. Both are left to the
// address guard. Any other host must be a valid DNS name with at least one
// dot (which keeps "localhost" and bare words out: they would name hosts of
// the mirror's own network). Anything else is errNoTarget.
func CanonicalHost(hostport string) (string, error) {
	if hostport == "" || len(hostport) > 260 {
		return "", errNoTarget
	}
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return "", errNoTarget
		}
	}
	lower := strings.ToLower(strings.TrimSuffix(host, "."))
	changed := lower != host
	host = lower
	switch {
	case strings.HasPrefix(host, "["):
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
		if err != nil || !strings.HasSuffix(host, "]") || !a.Is6() || a.Zone() != "" {
			return "", errNoTarget
		}
		if canon := "[" + a.String() + "]"; canon != host {
			host, changed = canon, true
		}
	default:
		a, err := netguard.ParseIPv4Loose(host)
		switch {
		case err != nil || strings.HasSuffix(host, "."):
			return "", errNoTarget
		case a.IsValid():
			var buf [len("255.255.255.255")]byte
			if canon := a.AppendTo(buf[:0]); string(canon) != host {
				host, changed = string(canon), true
			}
		case !validDomain(host):
			return "", errNoTarget
		}
	}
	if !changed {
		return hostport, nil // already canonical: no allocation
	}
	if port != "" {
		return host + ":" + port, nil
	}
	return host, nil
}

// validDomain reports whether s is a DNS name of letters, digits, hyphens
// and underscores with at least two labels, each 1 to 63 bytes and not
// starting or ending with a hyphen.
func validDomain(s string) bool {
	if len(s) > 253 || !strings.Contains(s, ".") {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// Allowed reports whether the canonical host[:port] hostport matches one
// of Allow, or Allow is empty. A pattern is a glob ('*' matches any run of
// characters, dots included), matched case-insensitively against the host
// without its port, or against host:port when the pattern has a ':'.
func (h *HostRules) Allowed(hostport string) bool {
	if len(h.Allow) == 0 {
		return true
	}
	host := hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host = hostport[:i]
	}
	for _, p := range h.Allow {
		s := host
		if strings.Contains(p, ":") {
			s = hostport
		}
		if p != "" && policy.Glob(strings.ToLower(strings.TrimSuffix(p, ".")), s) {
			return true
		}
	}
	return false
}

// blocked reports whether the escaped path p ends in one of BlockSuffix,
// compared case-insensitively on the unescaped path.
func (h *HostRules) blocked(p string) bool {
	if len(h.BlockSuffix) == 0 {
		return false
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		dec = p
	}
	dec = strings.ToLower(dec)
	for _, s := range h.BlockSuffix {
		if s != "" && strings.HasSuffix(dec, strings.ToLower(s)) {
			return true
		}
	}
	return false
}
