package httpmirror

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// DefaultRevalidatePatterns are the paths revalidated on every request when
// MirrorHandler.RevalidatePatterns is nil: the index files of common
// package formats, which change in place at their origin without saying so
// in their headers. Go module lists (@v/list, @latest), PEP 503 simple
// pages, Debian and Ubuntu repository indexes, and Hugging Face API JSON.
var DefaultRevalidatePatterns = []string{
	"*/@v/list",
	"*/@latest",
	"*/simple/*",
	"*/InRelease",
	"*/Release",
	"*/Release.gpg",
	"*/Packages*",
	"*/Sources*",
	"*/api/*",
}

// cacheControl is the part of a Cache-Control header a shared cache acts on
// (RFC 9111 section 5.2.2).
type cacheControl struct {
	noStore        bool // no-store, or private: a shared cache keeps nothing
	noCache        bool // stored, but validated before every use
	mustRevalidate bool // never served stale: must-revalidate, proxy-revalidate
	maxAge         time.Duration
	hasMaxAge      bool // max-age or s-maxage given
}

func parseCacheControl(h http.Header) cacheControl {
	var cc cacheControl
	var sMaxAge, maxAge time.Duration
	hasS := false
	for _, v := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(d), "=")
			arg = strings.Trim(arg, `"`)
			switch strings.ToLower(name) {
			case "no-store", "private":
				cc.noStore = true
			case "no-cache":
				// A field-qualified no-cache ("no-cache=Set-Cookie") only
				// restricts those fields, which are not stored anyway.
				if arg == "" {
					cc.noCache = true
				}
			case "must-revalidate", "proxy-revalidate":
				cc.mustRevalidate = true
			case "s-maxage":
				if n, err := strconv.ParseInt(arg, 10, 64); err == nil && n >= 0 {
					sMaxAge, hasS = time.Duration(n)*time.Second, true
				}
			case "max-age":
				if n, err := strconv.ParseInt(arg, 10, 64); err == nil && n >= 0 {
					maxAge, cc.hasMaxAge = time.Duration(n)*time.Second, true
				}
			}
		}
	}
	// A shared cache prefers s-maxage (RFC 9111 section 5.2.2.10).
	if hasS {
		cc.maxAge, cc.hasMaxAge = sMaxAge, true
	} else {
		cc.maxAge = maxAge
	}
	return cc
}

// storable reports whether a response may be kept by a shared cache.
func storable(resp *http.Response) bool {
	return !parseCacheControl(resp.Header).noStore
}

// freshness says how a stored object may be used.
type freshness struct {
	mutable        bool          // subject to revalidation at all
	lifetime       time.Duration // how long after StoredAt it is fresh
	mustRevalidate bool          // stale-if-error is not allowed
	explicit       bool          // the origin gave freshness information
}

// freshnessOf decides how the stored object of key may be used. Objects
// whose origin sent Cache-Control (no-cache, max-age, s-maxage,
// must-revalidate) or Expires follow RFC 9111; objects without such headers
// keep the seed's semantics (immutable, never revalidated) unless key
// matches one of the revalidate patterns, which makes them revalidated on
// every use.
func (m *MirrorHandler) freshnessOf(key string, info storage.Info) freshness {
	cc := parseCacheControl(info.Header)
	f := freshness{mustRevalidate: cc.mustRevalidate}
	switch {
	case cc.noCache:
		f.mutable, f.explicit = true, true
	case cc.hasMaxAge:
		f.mutable, f.explicit, f.lifetime = true, true, cc.maxAge
	case info.Header.Get("Expires") != "":
		f.mutable, f.explicit = true, true
		// An invalid date (such as "0") means already expired (RFC 9111
		// section 5.3). The origin's Date is approximated by StoredAt.
		if t, err := http.ParseTime(info.Header.Get("Expires")); err == nil && t.After(info.StoredAt) {
			f.lifetime = t.Sub(info.StoredAt)
		}
	case cc.mustRevalidate:
		f.mutable, f.explicit = true, true
	case m.matchesRevalidate(key):
		f.mutable = true
	}
	return f
}

// stale reports whether the object must be revalidated before use.
func (f freshness) stale(info storage.Info, now time.Time) bool {
	return f.mutable && now.Sub(info.StoredAt) >= f.lifetime
}

func (m *MirrorHandler) matchesRevalidate(key string) bool {
	patterns := m.RevalidatePatterns
	if patterns == nil {
		patterns = DefaultRevalidatePatterns
	}
	for _, p := range patterns {
		if glob(p, key) {
			return true
		}
	}
	return false
}

// glob matches s against pattern, where '*' matches any run of bytes ('/'
// included, unlike path.Match) and every other byte matches itself.
func glob(pattern, s string) bool {
	// Classic greedy matching with one backtrack point: linear in practice.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// validators returns the conditional request headers that revalidate a
// stored object (RFC 9110 section 13.1), or an empty header when it has no
// validator: the origin then answers with the whole object.
func validators(info storage.Info) http.Header {
	h := http.Header{}
	if info.ETag != "" {
		h.Set("If-None-Match", info.ETag)
	}
	if !info.LastModified.IsZero() {
		h.Set("If-Modified-Since", info.LastModified.UTC().Format(http.TimeFormat))
	}
	return h
}

// refreshed returns info updated by the headers of a 304 response (RFC 9111
// section 4.3.4): freshness headers replace the stored ones, and StoredAt
// restarts the object's age.
func refreshed(info storage.Info, h http.Header, now time.Time) storage.Info {
	info.StoredAt = now
	hdr := info.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	for _, k := range []string{"Cache-Control", "Expires", "X-Repo-Commit", "X-Linked-Etag", "X-Linked-Size"} {
		if v := h.Values(k); len(v) > 0 {
			hdr[k] = v
		}
	}
	info.Header = hdr
	return info
}
