package pipeline

import (
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// bounded is a map that holds at most limit entries, for what the
// pipeline remembers about requests (answers about credentials, the
// origin's 404s, prebuilt headers): a client sending ever new keys costs
// the others a little work, never memory. When it is full, a new entry
// first drops the entries expired says are past use, then arbitrary ones.
type bounded[K comparable, V any] struct {
	mu      sync.RWMutex
	m       map[K]V
	limit   int
	expired func(V, time.Time) bool // nil: entries never expire
}

func (b *bounded[K, V]) get(k K) (V, bool) {
	b.mu.RLock()
	v, ok := b.m[k]
	b.mu.RUnlock()
	return v, ok
}

func (b *bounded[K, V]) put(k K, v V, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = make(map[K]V)
	}
	if _, ok := b.m[k]; !ok && len(b.m) >= b.limit {
		if b.expired != nil {
			for k, v := range b.m {
				if b.expired(v, now) {
					delete(b.m, k)
				}
			}
		}
		for k := range b.m {
			if len(b.m) < b.limit {
				break
			}
			delete(b.m, k)
		}
	}
	b.m[k] = v
}

// remove deletes the entry of k if it still is v.
func (b *bounded[K, V]) remove(k K, still func(V) bool) {
	b.mu.Lock()
	if v, ok := b.m[k]; ok && still(v) {
		delete(b.m, k)
	}
	b.mu.Unlock()
}

// forget deletes the entries whose keys match.
func (b *bounded[K, V]) forget(match func(K) bool) {
	b.mu.Lock()
	for k := range b.m {
		if match(k) {
			delete(b.m, k)
		}
	}
	b.mu.Unlock()
}

// maxNegative bounds the number of remembered misses; a flood of requests
// for distinct missing paths cannot grow memory beyond it.
const maxNegative = 16384

// negativeCache remembers which keys the origin recently answered 404 or
// 410 for, so repeated requests for missing files do not reach it.
type negativeCache struct{ b bounded[string, negative] }

type negative struct {
	code    int
	expires time.Time
}

func newNegativeCache() negativeCache {
	return negativeCache{bounded[string, negative]{limit: maxNegative, expired: func(n negative, now time.Time) bool { return !now.Before(n.expires) }}}
}

// get returns the remembered status of key, if any and not expired. The
// clock is read only when there is an entry: every hit asks.
func (c *negativeCache) get(key string, now func() time.Time) (int, bool) {
	e, ok := c.b.get(key)
	if !ok {
		return 0, false
	}
	if !now().Before(e.expires) {
		c.b.remove(key, func(v negative) bool { return v == e })
		return 0, false
	}
	return e.code, true
}

// remember records the origin's 404 or 410 of key for ttl; a ttl <= 0
// remembers nothing.
func (c *negativeCache) remember(key string, code int, now time.Time, ttl time.Duration) {
	if ttl > 0 {
		c.b.put(key, negative{code: code, expires: now.Add(ttl)}, now)
	}
}

// maxHotHeaders bounds hotHeaders; past it, an arbitrary entry makes room.
const maxHotHeaders = 4096

// hotHeaders keeps the finished response header of the objects the hit
// loop serves (from memory or from their files), so that a plain GET of
// one builds nothing: the hit path of hot files is what a mirror of
// package indexes and metadata spends its time on. An entry is used only
// while the object it was built for (same size, ETag and StoredAt, and as
// invalidated as it was: an operator's invalidation changes nothing else,
// see policy.InvalidatedHeader) is the one being served.
type hotHeaders struct{ b bounded[string, *hotHeader] }

func newHotHeaders() hotHeaders { return hotHeaders{bounded[string, *hotHeader]{limit: maxHotHeaders}} }

type hotHeader struct {
	size     int64
	etag     string
	storedAt time.Time
	marked   bool             // the object carried policy.InvalidatedHeader
	header   http.Header      // never modified once stored
	fresh    policy.Freshness // the object's freshness, a function of its metadata

	wireOnce  sync.Once // builds wireBytes, header in wire form (see wire)
	wireBytes []byte
}

// get returns the entry built for the object of key with metadata info, or
// nil.
func (h *hotHeaders) get(key string, info storage.Info) *hotHeader {
	e, _ := h.b.get(key)
	if e == nil || e.size != info.Size || e.etag != info.ETag || !e.storedAt.Equal(info.StoredAt) || e.marked != invalidated(info) {
		return nil
	}
	return e
}

// entry returns the entry of the object of key, with metadata info, size
// bytes and freshness fresh, building and keeping it the first time.
func (h *hotHeaders) entry(key string, info storage.Info, size int64, fresh policy.Freshness) *hotHeader {
	if e := h.get(key, info); e != nil {
		return e
	}
	e := &hotHeader{size: info.Size, etag: info.ETag, storedAt: info.StoredAt, marked: invalidated(info), header: wholeBodyHeader(info, size), fresh: fresh}
	h.b.put(key, e, time.Time{})
	return e
}

// invalidated reports whether info carries an operator's invalidation mark.
func invalidated(info storage.Info) bool { return len(info.Header[policy.InvalidatedHeader]) > 0 }

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

// wholeBodyHeader is the header of a 200 answer with the whole body of
// size bytes of an object, as http.ServeContent would send it. Content-Type
// is present with no value when the origin sent none: net/http then sends
// none rather than sniffing one.
func wholeBodyHeader(info storage.Info, size int64) http.Header {
	hdr := http.Header{
		"Accept-Ranges":  {"bytes"},
		"Content-Length": {strconv.FormatInt(size, 10)},
		"Content-Type":   nil,
	}
	for k, v := range info.Header {
		if name, ok := clientField(k); ok {
			hdr[name] = v
		}
	}
	if info.ETag != "" {
		hdr["Etag"] = []string{info.ETag}
	}
	if info.ContentType != "" {
		hdr["Content-Type"] = []string{info.ContentType}
	}
	if !info.LastModified.IsZero() {
		hdr["Last-Modified"] = []string{info.LastModified.UTC().Format(http.TimeFormat)}
	}
	return hdr
}

// Forget drops what the pipeline remembers of the keys that match,
// besides storage: the origin's 404s and prebuilt response headers. A
// purge calls it.
func (p *Pipeline) Forget(match func(key string) bool) {
	p.negatives.b.forget(match)
	p.hot.b.forget(match)
}
