package s3

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// metaKey is the user-metadata entry (x-amz-meta-httpmirror) that holds an
// object's origin metadata.
const metaKey = "httpmirror"

// metaBudget bounds the encoded entry: AWS allows 2 KiB of user metadata
// per object, names included.
const metaBudget = 1900

// meta is the JSON form of the metadata entry. The object's size is S3's
// own Content-Length.
type meta struct {
	ETag         string      `json:"etag,omitempty"`
	LastModified int64       `json:"lastModified,omitempty"` // Unix seconds
	ContentType  string      `json:"contentType,omitempty"`
	StoredAt     int64       `json:"storedAt"` // Unix nanoseconds
	Header       http.Header `json:"header,omitempty"`
	// Key is the storage key of an object stored under a hashed name
	// (see objectKey), so that List can name it; empty for the others,
	// whose object key says it.
	Key string `json:"key,omitempty"`
}

// encodeMeta returns the metadata entry for info. Header values that do
// not fit the budget are left out, largest first: the cache still works
// without them, and the PUT would fail with them. A non-empty key (that of
// an object stored under a hashed name) is recorded when it fits in what
// the rest leaves of the budget: serving needs the rest, only listing
// needs the key.
func encodeMeta(info storage.Info, key string) string {
	m := meta{
		ETag:        info.ETag,
		ContentType: info.ContentType,
		StoredAt:    info.StoredAt.UnixNano(),
		Header:      info.Header,
	}
	if !info.LastModified.IsZero() {
		m.LastModified = info.LastModified.Unix()
	}
	m, s := fitMeta(m)
	if key != "" {
		m.Key = key
		if withKey := metaString(m); len(withKey) <= metaBudget {
			return withKey
		}
	}
	return s
}

// fitMeta returns m, with what does not fit the budget left out, and its
// encoding.
func fitMeta(m meta) (meta, string) {
	s := metaString(m)
	if len(s) <= metaBudget {
		return m, s
	}
	names := make([]string, 0, len(m.Header))
	for k := range m.Header {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Compare(len(strings.Join(m.Header[b], "")), len(strings.Join(m.Header[a], "")))
	})
	m.Header = m.Header.Clone()
	for _, k := range names {
		delete(m.Header, k)
		if s = metaString(m); len(s) <= metaBudget {
			return m, s
		}
	}
	// An ETag of absurd length: drop it too rather than fail the object.
	m.ETag = ""
	return m, metaString(m)
}

func metaString(m meta) string {
	b, _ := json.Marshal(m) // cannot fail: strings, numbers and string slices
	return escapeMeta(string(b))
}

// escapeMeta percent-encodes '%', spaces, control characters and non-ASCII
// bytes. S3 metadata travels in HTTP headers: it must be ASCII, and stores
// trim surrounding spaces. url.PathUnescape reverses it.
func escapeMeta(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// decodeMeta reads a metadata entry into info. It reports false for a
// missing or damaged entry (an object written by another program), leaving
// info as it was.
func decodeMeta(s string, info *storage.Info) bool {
	if s == "" {
		return false
	}
	raw, err := url.PathUnescape(s)
	if err != nil {
		return false
	}
	var m meta
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return false
	}
	info.ETag = m.ETag
	info.ContentType = m.ContentType
	info.Header = m.Header
	if m.LastModified != 0 {
		info.LastModified = time.Unix(m.LastModified, 0).UTC()
	}
	if m.StoredAt != 0 {
		info.StoredAt = time.Unix(0, m.StoredAt)
	}
	return true
}

// metaStorageKey returns the storage key recorded in a metadata entry, or
// "".
func metaStorageKey(s string) string {
	raw, err := url.PathUnescape(s)
	if err != nil {
		return ""
	}
	var m meta
	if json.Unmarshal([]byte(raw), &m) != nil {
		return ""
	}
	return m.Key
}

// native returns v for a header that S3 stores natively and sends back
// itself, so that clients following a presigned URL get it too, or nil for
// an empty value or one S3 cannot carry (not printable ASCII, or very
// long); the metadata entry keeps those for hits served by httpmirror.
func native(v string) *string {
	if v == "" || len(v) > 1024 {
		return nil
	}
	for i := 0; i < len(v); i++ {
		if v[i] < ' ' || v[i] >= 0x7f {
			return nil
		}
	}
	return &v
}

// nativeHeader is native for the values of h's header name.
func nativeHeader(h http.Header, name string) *string {
	return native(strings.Join(h.Values(name), ", "))
}
