// Package policy holds httpmirror's HTTP caching rules: which origin
// responses may be stored (RFC 9111 section 3), how long a stored object
// stays fresh and when it must be revalidated (section 4.2), the validators
// a revalidation sends (RFC 9110 section 13.1), which origin response
// headers are kept with an object and replayed to clients, how Vary
// selects a stored variant (RFC 9110 section 12.5.5, RFC 9111 section
// 4.1), when a response to an authenticated request may be shared
// (RFC 9111 section 3.5), and which digests of an object its URL and its
// origin publish (RFC 9530 and the stores' own headers).
//
// The handler and the fill engine ask this package; neither decides header
// policy itself. Everything here is a pure function of headers, metadata and
// the time, so it is table-tested directly.
package policy

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// CacheControl is the part of a response's Cache-Control header a shared
// cache acts on (RFC 9111 section 5.2.2).
type CacheControl struct {
	// NoStore is set by no-store or private: a shared cache keeps nothing.
	NoStore bool
	// NoCache (unqualified) means stored, but validated before every use.
	NoCache bool
	// MustRevalidate is set by must-revalidate or proxy-revalidate: a
	// stale object is never served without a successful revalidation.
	MustRevalidate bool
	// SMaxAge is set when s-maxage was given; it implies proxy-revalidate
	// for a shared cache (RFC 9111 section 5.2.2.10).
	SMaxAge bool
	// MaxAge is the freshness lifetime from s-maxage (preferred by a
	// shared cache) or max-age, valid when HasMaxAge is set.
	MaxAge    time.Duration
	HasMaxAge bool
	// Public is set by public.
	Public bool
}

// ParseCacheControl parses every Cache-Control field of h. Unknown
// directives and invalid arguments are ignored, as RFC 9111 section 5.2
// asks.
func ParseCacheControl(h http.Header) CacheControl {
	var cc CacheControl
	var sMaxAge, maxAge time.Duration
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(d), "=")
			arg = strings.Trim(strings.TrimSpace(arg), `"`)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "private":
				cc.NoStore = true
			case "no-cache":
				// A field-qualified no-cache ("no-cache=Set-Cookie") only
				// restricts those fields, which are not stored anyway.
				if arg == "" {
					cc.NoCache = true
				}
			case "must-revalidate", "proxy-revalidate":
				cc.MustRevalidate = true
			case "public":
				cc.Public = true
			case "s-maxage":
				if n, ok := deltaSeconds(arg); ok {
					sMaxAge, cc.SMaxAge = n, true
				}
			case "max-age":
				if n, ok := deltaSeconds(arg); ok {
					maxAge, cc.HasMaxAge = n, true
				}
			}
		}
	}
	// A shared cache prefers s-maxage (RFC 9111 section 5.2.2.10).
	if cc.SMaxAge {
		cc.MaxAge, cc.HasMaxAge = sMaxAge, true
	} else {
		cc.MaxAge = maxAge
	}
	return cc
}

// deltaSeconds parses a delta-seconds argument (RFC 9111 section 1.2.2);
// values too large to represent are capped rather than refused.
func deltaSeconds(s string) (time.Duration, bool) {
	if s == "" {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	const max = int64(1<<63-1) / int64(time.Second)
	if err != nil || n > max {
		n = max
	}
	return time.Duration(n) * time.Second, true
}

// Storable reports whether a shared cache may keep a response with header
// h.
func Storable(h http.Header) bool {
	return !ParseCacheControl(h).NoStore
}
