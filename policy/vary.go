package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// Internal stored headers. They are kept with an object's metadata, never
// sent to clients (see Internal), and never taken from an origin's
// response: KeptHeaders does not name them, so an origin cannot set them.
const (
	// VariantHeader holds the variant ID (see VariantID) of the request
	// that an object varying on request headers was fetched for.
	VariantHeader = "X-Httpmirror-Variant"
	// AuthHeader marks an object stored from a response to an
	// authenticated request that did not allow shared use (see
	// NeedsAuthorization): every client must be authorised before it is
	// served any of it.
	AuthHeader = "X-Httpmirror-Authorization-Required"
	// InvalidatedHeader marks an object an operator invalidated (see
	// Invalidated): it holds the time of the invalidation, and makes the
	// object stale until a revalidation replaces its metadata.
	InvalidatedHeader = "X-Httpmirror-Invalidated"
)

// Internal reports whether the stored header name k is one of the
// mirror's own (VariantHeader, AuthHeader), which clients never see.
func Internal(k string) bool { return strings.HasPrefix(k, "X-Httpmirror-") }

// notForwarded are the request headers a mirror's fill never sends
// upstream on a client's behalf: hop-by-hop fields, the mirror's own
// Range and validators, compression (the mirror stores the origin's
// bytes), credentials (authorisation has its own rule: NeedsAuthorization)
// and cookies (a shared cache must not carry sessions). A response cannot
// have been chosen by the client's value of one of them, so Vary naming
// them selects no variant.
var notForwarded = map[string]bool{
	"Accept-Encoding": true, "Authorization": true, "Cookie": true, "Proxy-Authorization": true,
	"Host": true, "Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
	"Range": true, "If-Range": true, "If-Match": true, "If-None-Match": true,
	"If-Modified-Since": true, "If-Unmodified-Since": true,
	"Forwarded": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "X-Real-Ip": true,
}

// Vary is what a response's Vary header means to the mirror (RFC 9110
// section 12.5.5, RFC 9111 section 4.1).
type Vary struct {
	// Fields are the request headers that select a variant, canonical,
	// sorted and without duplicates; header names the mirror never
	// forwards upstream (Accept-Encoding, Authorization, Cookie, ...) are
	// left out, because the client's value of them cannot have chosen the
	// stored response. Empty means one variant for every request.
	Fields []string
	// Any is set by "Vary: *": the response may vary on anything, so it
	// is never stored.
	Any bool
}

// ParseVary parses every Vary field of h.
func ParseVary(h http.Header) Vary {
	var v Vary
	for _, line := range h["Vary"] {
		for f := range strings.SplitSeq(line, ",") {
			f = textproto.TrimString(f)
			switch {
			case f == "":
			case f == "*":
				v.Any = true
			default:
				f = textproto.CanonicalMIMEHeaderKey(f)
				if !notForwarded[f] && !slices.Contains(v.Fields, f) {
					v.Fields = append(v.Fields, f)
				}
			}
		}
	}
	slices.Sort(v.Fields)
	return v
}

// Forwarded reports whether a fill sends the client's value of request
// header field (canonical) upstream when a stored Vary names it.
func Forwarded(field string) bool { return !notForwarded[field] }

// VariantID identifies the variant that request header h selects among
// the responses varying on fields (see Vary.Fields): a hash of the fields'
// normalised values (see NormalizeField), so requests that differ only in
// case, spacing or list syntax share a variant, while requests that could
// get different answers never do. An absent field and an empty one are
// the same.
func VariantID(fields []string, h http.Header) string {
	// Names and values are separated by bytes no field name or value may
	// contain, so no two different sets of values hash the same input: a
	// client cannot craft headers that select another client's variant.
	s := sha256.New()
	for _, f := range fields {
		s.Write([]byte(f))
		s.Write([]byte{1})
		s.Write([]byte(NormalizeField(f, h[f])))
		s.Write([]byte{2})
	}
	return hex.EncodeToString(s.Sum(nil)[:16])
}

// VariantKey is the cache key of the variant id of the object under key.
// Keys of objects without variants are never changed, so caches written
// before variants existed stay valid. The separator '#' never occurs in a
// request's key (a request target has no fragment; the handler refuses a
// literal '#'), so no request can name a variant's key. A directory-style
// key keeps its trailing slash, so that stores mapping keys to files keep
// the variant beside the object rather than inside it.
func VariantKey(key, id string) string {
	if strings.HasSuffix(key, "/") {
		return VariantPrefix(key) + id + "/"
	}
	return VariantPrefix(key) + id
}

// VariantPrefix is what the keys of every variant of the object under key
// start with (see VariantKey), and no other key does: a listing under it
// finds the object's variants.
func VariantPrefix(key string) string {
	return strings.TrimSuffix(key, "/") + variantSep
}

// BaseKey returns the key of the object whose variant key is, and false
// for a key that is no variant's.
func BaseKey(key string) (string, bool) {
	i := strings.Index(key, variantSep)
	if i < 0 {
		return "", false
	}
	if strings.HasSuffix(key, "/") {
		return key[:i] + "/", true
	}
	return key[:i], true
}

// variantSep separates a variant's key from its object's.
const variantSep = "#vary="

// NormalizeField returns the values of one request header field in a
// canonical form. Accept, Accept-Charset and Accept-Language, whose syntax
// RFC 9110 section 12.5 defines, become a canonical list: members split at
// commas outside quoted strings (several field lines are one list),
// whitespace around members, ';' and '=' removed, empty members dropped.
// The order of members is kept: members may share a q-value, and an
// origin may well break the tie by order. Case is folded only where RFC
// 9110 makes it meaningless: the whole of Accept-Charset and
// Accept-Language members (charsets, language tags, q), and Accept's media
// ranges and parameter names (section 8.3.1), not its parameter values.
// Any other field, whose syntax the mirror cannot know, only loses the
// whitespace around each field line.
func NormalizeField(field string, values []string) string {
	var b strings.Builder
	if field != "Accept" && field != "Accept-Charset" && field != "Accept-Language" {
		for i, v := range values {
			if i > 0 {
				b.WriteByte(0) // no field value contains a control character
			}
			b.WriteString(textproto.TrimString(v))
		}
		return b.String()
	}
	for _, v := range values {
		for _, member := range splitList(v) {
			m := normalizeMember(field, member)
			if m == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(m)
		}
	}
	return b.String()
}

// splitList splits a list field value at commas outside quoted strings.
func splitList(v string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// normalizeMember normalises one list member of field: see NormalizeField.
func normalizeMember(field, m string) string {
	parts := splitParams(m)
	for i, p := range parts {
		name, val, hasVal := strings.Cut(p, "=")
		name, val = textproto.TrimString(name), textproto.TrimString(val)
		switch field {
		case "Accept-Charset", "Accept-Language":
			name, val = strings.ToLower(name), strings.ToLower(val)
		case "Accept":
			// The media range (i == 0) and parameter names are
			// case-insensitive; parameter values may not be.
			name = strings.ToLower(name)
		}
		if hasVal {
			parts[i] = name + "=" + val
		} else {
			parts[i] = name
		}
	}
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return strings.Join(parts, ";")
}

// splitParams splits a list member at semicolons outside quoted strings.
func splitParams(m string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(m); i++ {
		switch c := m[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			out = append(out, m[start:i])
			start = i + 1
		}
	}
	return append(out, m[start:])
}
