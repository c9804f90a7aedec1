package httpmirror

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// maxHotHeaders bounds hotHeaders; past it, an arbitrary entry makes room.
const maxHotHeaders = 4096

// hotHeaders keeps the finished response header of small objects served
// from memory, so that a plain GET of one builds nothing: the hit path of
// small hot files is what a mirror of package indexes and metadata spends
// its time on. An entry is used only while the object it was built for
// (same size, ETag and StoredAt) is the one being served.
type hotHeaders struct {
	mu sync.RWMutex
	m  map[string]*hotHeader
}

type hotHeader struct {
	size     int64
	etag     string
	storedAt time.Time
	header   http.Header      // never modified once stored
	fresh    policy.Freshness // the object's freshness, a function of its metadata

	wireOnce  sync.Once // builds wireBytes, header in wire form (see wire)
	wireBytes []byte
}

// get returns the entry built for the object of key with metadata info, or
// nil.
func (h *hotHeaders) get(key string, info storage.Info) *hotHeader {
	h.mu.RLock()
	e := h.m[key]
	h.mu.RUnlock()
	if e == nil || e.size != info.Size || e.etag != info.ETag || !e.storedAt.Equal(info.StoredAt) {
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
	return h.put(key, info, wholeBodyHeader(info, size), fresh)
}

func (h *hotHeaders) put(key string, info storage.Info, hdr http.Header, fresh policy.Freshness) *hotHeader {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = make(map[string]*hotHeader)
	}
	if _, ok := h.m[key]; !ok && len(h.m) >= maxHotHeaders {
		for k := range h.m {
			delete(h.m, k)
			break
		}
	}
	e := &hotHeader{size: info.Size, etag: info.ETag, storedAt: info.StoredAt, header: hdr, fresh: fresh}
	h.m[key] = e
	return e
}

// freshness returns how the stored object of t, with metadata info, may be
// used. For small hot objects it is kept with their prebuilt header, so
// their hits do not parse Cache-Control and match the revalidate patterns
// every time.
func (m *MirrorHandler) freshness(t target, info storage.Info) policy.Freshness {
	if e := m.hot.get(t.key, info); e != nil {
		return e.fresh
	}
	return m.rules.Freshness(t.ruleKey(), info)
}

// plainRequest reports whether r asks for the whole body with no
// condition: what serveMemory answers without http.ServeContent.
func plainRequest(r *http.Request) bool { return plainHeader(r.Header) }

// serveMemory answers a plain GET or HEAD of an object held in memory with
// the header http.ServeContent would send, built once per object.
func (m *MirrorHandler) serveMemory(w http.ResponseWriter, r *http.Request, key string, info storage.Info, fresh policy.Freshness, body []byte) {
	copyHeader(w.Header(), m.hot.entry(key, info, int64(len(body)), fresh).header)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
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
		if !policy.Internal(k) {
			hdr[k] = v
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
