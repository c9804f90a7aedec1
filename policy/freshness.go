package policy

import (
	"net/http"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// DefaultRevalidatePatterns are the cache keys revalidated on every use when
// the origin gave no freshness information: the index files of common
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

// Freshness says how a stored object may be used.
type Freshness struct {
	// Mutable objects are subject to revalidation at all.
	Mutable bool
	// Lifetime is how long after StoredAt the object is fresh.
	Lifetime time.Duration
	// MustRevalidate forbids serving the object stale when a revalidation
	// fails (no stale-if-error): must-revalidate and proxy-revalidate say
	// so, s-maxage implies proxy-revalidate for a shared cache (RFC 9111
	// section 5.2.2.10), and no-cache allows no use without a successful
	// validation (section 5.2.2.4).
	MustRevalidate bool
	// Explicit is set when the origin gave freshness information; hits of
	// such objects carry an Age header.
	Explicit bool
}

// Stale reports whether an object stored at storedAt must be revalidated
// before it is used at now.
func (f Freshness) Stale(storedAt, now time.Time) bool {
	return f.Mutable && now.Sub(storedAt) >= f.Lifetime
}

// Rules decide the freshness of stored objects.
type Rules struct {
	// RevalidatePatterns lists glob patterns ('*' matches any run of bytes,
	// '/' included) matched against the cache key. Objects whose key
	// matches and whose origin gave no freshness headers are revalidated on
	// every use. Nil means none.
	RevalidatePatterns []string
}

// Freshness decides how the stored object of key, with metadata info, may
// be used. Objects whose origin sent Cache-Control (no-cache, max-age,
// s-maxage, must-revalidate) or Expires follow RFC 9111. Objects without
// such headers are immutable, the way release files, archives and module
// zips are: they are never revalidated, unless key matches one of the
// revalidate patterns, which makes them revalidated on every use. An
// object an operator invalidated (InvalidatedHeader) is stale, whatever
// else applies.
func (r Rules) Freshness(key string, info storage.Info) Freshness {
	cc := ParseCacheControl(info.Header)
	f := Freshness{MustRevalidate: cc.MustRevalidate || cc.SMaxAge || cc.NoCache}
	switch {
	case cc.NoCache:
		f.Mutable, f.Explicit = true, true
	case cc.HasMaxAge:
		f.Mutable, f.Explicit, f.Lifetime = true, true, cc.MaxAge
	case info.Header.Get("Expires") != "":
		f.Mutable, f.Explicit = true, true
		// An invalid date (such as "0") means already expired (RFC 9111
		// section 5.3). The origin's Date is approximated by StoredAt.
		if t, err := http.ParseTime(info.Header.Get("Expires")); err == nil && t.After(info.StoredAt) {
			f.Lifetime = t.Sub(info.StoredAt)
		}
	case cc.MustRevalidate:
		f.Mutable, f.Explicit = true, true
	case r.matchesRevalidate(key):
		f.Mutable = true
	}
	if len(info.Header[InvalidatedHeader]) > 0 {
		// Invalidated by an operator: stale whatever the origin said,
		// until a revalidation replaces the metadata (Refreshed drops the
		// mark, a new object has none). Whether it may be served stale
		// when the origin fails stays the origin's word (MustRevalidate).
		f.Mutable, f.Lifetime = true, 0
	}
	return f
}

// Invalidated returns info marked invalidated at time at (see
// InvalidatedHeader). The header is copied, not modified.
func Invalidated(info storage.Info, at time.Time) storage.Info {
	hdr := info.Header.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	hdr[InvalidatedHeader] = []string{at.UTC().Format(time.RFC3339)}
	info.Header = hdr
	return info
}

func (r Rules) matchesRevalidate(key string) bool {
	for _, p := range r.RevalidatePatterns {
		if Glob(p, key) {
			return true
		}
	}
	return false
}

// Glob matches s against pattern, where '*' matches any run of bytes ('/'
// included, unlike path.Match) and every other byte matches itself.
func Glob(pattern, s string) bool {
	// Greedy matching with one backtrack point: linear in practice.
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
