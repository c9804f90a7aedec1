package httpmirror

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/internal/pipeline"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// Errors of the operator methods (Lookup, Purge, List, Prefetch ...).
var (
	// ErrNoCache: the handler has no RemoteCache, so there is nothing to
	// look up, purge or prefetch.
	ErrNoCache = errors.New("the mirror has no cache")
	// ErrInvalidRef is matched by the errors for a URL, key or prefix that
	// names nothing the mirror could cache.
	ErrInvalidRef = pipeline.ErrInvalidRef
	// ErrNotCached: no object is stored under the key.
	ErrNotCached = errors.New("not cached")
)

// MaxListLimit is the largest page List returns.
const MaxListLimit = 10000

// adminState is the handler's state for its operators: prefetch jobs and
// the recent failures and largest objects the status page shows.
type adminState struct {
	once    sync.Once
	ctx     context.Context // prefetch jobs stop when it ends (Close)
	stop    context.CancelFunc
	sem     chan struct{}  // one token per prefetched URL being fetched
	wg      sync.WaitGroup // prefetch jobs running
	mu      sync.Mutex
	jobs    map[string]*prefetchJob
	order   []string // job ids, oldest first
	errors  errorRing
	largest largestCache
	// verifies are the verify jobs (verify.go); they stop with ctx too.
	verifies verifyJobs
	// invalidations are the marks waiting for downloads to end
	// (invalidate.go); they stop with ctx too.
	invalidations pendingMarks
}

func (m *MirrorHandler) adminInit() *adminState {
	a := &m.admin
	a.once.Do(func() {
		a.ctx, a.stop = context.WithCancel(context.Background())
		n := m.PrefetchConcurrency
		if n <= 0 {
			n = DefaultPrefetchConcurrency
		}
		a.sem = make(chan struct{}, n)
		a.jobs = map[string]*prefetchJob{}
	})
	return a
}

// CacheKey returns the cache key and the upstream URL that ref names. ref
// is an upstream URL (https://example.com/a/b.tgz) or a cache key
// (example.com/a/b.tgz); either is resolved as a client request for it
// would be: the host canonicalised and allowed, the path cleaned, the
// query kept only with CacheQuery, blocked suffixes refused. With Host
// set, only URLs of that host are accepted.
func (m *MirrorHandler) CacheKey(ref string) (key, upstream string, err error) {
	if err := m.setup(); err != nil {
		return "", "", err
	}
	t, err := m.p.ResolveRef(ref)
	if err != nil {
		return "", "", err
	}
	return t.Key(), m.p.URL(t), nil
}

// underPrefix reports whether key is in the subtree prefix names: the key
// itself and its variants, and everything below it as a directory.
// "example.com/pool" covers example.com/pool, its variants
// (example.com/pool#vary=…), example.com/pool/ and example.com/pool/a, not
// example.com/pool2; an empty prefix covers everything.
func underPrefix(prefix, key string) bool {
	if !strings.HasPrefix(key, prefix) {
		return false
	}
	if len(key) == len(prefix) || prefix == "" || strings.HasSuffix(prefix, "/") {
		return true
	}
	c := key[len(prefix)]
	return c == '/' || c == '?' || c == '#'
}

// ofObject reports whether key is the object key names or one of its
// variants: what a purge of one URL removes.
func ofObject(object, key string) bool {
	if key == object {
		return true
	}
	base, ok := policy.BaseKey(key)
	return ok && base == object
}

// deleteVariants deletes the stored variants of the object under key and
// reports how many it deleted.
func (m *MirrorHandler) deleteVariants(ctx context.Context, key string) (int, error) {
	vs, err := m.p.Variants(ctx, key, maxVariantsListed)
	n := 0
	for _, v := range vs {
		if err != nil {
			break
		}
		if err = m.p.Store().Delete(ctx, v.Key); err == nil {
			n++
		}
	}
	return n, err
}

// maxVariantsListed bounds the variants of one object Lookup counts and
// a purge deletes: far more than MaxVariants lets a fill store, as many as
// a cache written with a higher limit may hold.
const maxVariantsListed = 100000

// ObjectStatus is what Lookup reports of a cache key.
type ObjectStatus struct {
	Key string `json:"key"`
	URL string `json:"url"`
	// Stored is false when no object is stored (Lookup then returns
	// ErrNotCached); the fields down to Location are then empty.
	Stored       bool        `json:"stored"`
	Size         int64       `json:"size"`
	StoredAt     time.Time   `json:"storedAt,omitzero"`
	ETag         string      `json:"etag,omitempty"`
	LastModified time.Time   `json:"lastModified,omitzero"`
	ContentType  string      `json:"contentType,omitempty"`
	Header       http.Header `json:"header,omitempty"`
	// SHA256 is the hex SHA-256 of the object's bytes kept with it
	// (verified against what the origin published, or computed when it
	// was stored); empty for objects stored before digests were kept.
	SHA256    string     `json:"sha256,omitempty"`
	Freshness *Freshness `json:"freshness,omitempty"`
	// Location is where the backend keeps the object (a file path, an
	// s3:// URL), when it can say.
	Location string `json:"location,omitempty"`
	// Fill is the download of the key in progress, if any.
	Fill *FillStatus `json:"fill,omitempty"`
	// Variants counts the other variants stored of an object that varies
	// (Vary), each under a key of its own, and VariantBytes their sizes.
	Variants     int   `json:"variants,omitempty"`
	VariantBytes int64 `json:"variantBytes,omitempty"`
}

// Freshness says when a stored object is revalidated.
type Freshness struct {
	// Rule is "immutable" (never revalidated: the origin gave no
	// freshness headers), "origin" (the origin's Cache-Control or
	// Expires) or "revalidate-pattern" (the key matches a revalidate
	// pattern: revalidated on every request).
	Rule string `json:"rule"`
	// Fresh reports whether a request now is served without asking the
	// origin.
	Fresh bool `json:"fresh"`
	// StaleAt is when the object needs revalidation; zero for immutable
	// objects.
	StaleAt        time.Time `json:"staleAt,omitzero"`
	MustRevalidate bool      `json:"mustRevalidate,omitempty"`
	// Invalidated is when an operator invalidated the object (see
	// Invalidate): it is stale until the origin confirms or replaces it,
	// whatever Rule says. Zero when it is not invalidated.
	Invalidated time.Time `json:"invalidated,omitzero"`
}

// Lookup reports the stored object that ref (see CacheKey) names, and the
// download of it in progress, if any. Without a stored object it returns
// the status (key, URL, fill) with ErrNotCached.
func (m *MirrorHandler) Lookup(ctx context.Context, ref string) (ObjectStatus, error) {
	if err := m.adminReady(); err != nil {
		return ObjectStatus{}, err
	}
	t, err := m.p.ResolveRef(ref)
	if err != nil {
		return ObjectStatus{}, err
	}
	key := t.Key()
	st := ObjectStatus{Key: key, URL: m.p.URL(t)}
	for _, p := range m.p.Progress() {
		if p.Key == key {
			fs := fillStatus(p, m.now())
			st.Fill = &fs
		}
	}
	store := m.p.Store()
	info, err := store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return st, ErrNotCached
	}
	if err != nil {
		return st, err
	}
	_, fresh := m.p.Freshness(t, info)
	// The rule is the origin's: an invalidation only makes it stale.
	invalidated, marked := invalidatedAt(info)
	fr, _ := m.p.Freshness(t, unmarked(info))
	st.Stored, st.Size, st.StoredAt, st.ETag = true, info.Size, info.StoredAt, info.ETag
	st.LastModified, st.ContentType, st.Header = info.LastModified, info.ContentType, info.Header
	if sum, ok := policy.StoredSHA256(info); ok {
		st.SHA256 = hex.EncodeToString(sum)
	}
	st.Freshness = &Freshness{Rule: "immutable", Fresh: fresh, MustRevalidate: fr.MustRevalidate}
	if marked {
		st.Freshness.Invalidated = invalidated
	}
	if fr.Mutable {
		st.Freshness.Rule = "revalidate-pattern"
		if fr.Explicit {
			st.Freshness.Rule = "origin"
		}
		st.Freshness.StaleAt = info.StoredAt.Add(fr.Lifetime)
	}
	st.Location, _ = store.(storage.Locator).Location(key)
	if info.Header["Vary"] != nil {
		vs, err := m.p.Variants(ctx, key, maxVariantsListed)
		if err != nil {
			return st, err
		}
		for _, v := range vs {
			st.Variants++
			st.VariantBytes += v.Size
		}
	}
	return st, nil
}

// adminReady initialises the handler and checks that it has a cache.
func (m *MirrorHandler) adminReady() error {
	if err := m.setup(); err != nil {
		return err
	}
	if !m.p.Cached() {
		return ErrNoCache
	}
	m.adminInit()
	return nil
}

// ListedObject is an object in a List page.
type ListedObject struct {
	Key      string    `json:"key"`
	Size     int64     `json:"size"`
	StoredAt time.Time `json:"storedAt,omitzero"`
	// VariantOf is, for a variant of an object that varies (Vary), the
	// object's key; empty for every other object.
	VariantOf string `json:"variantOf,omitempty"`
	// SHA256 is the hex SHA-256 kept with the object (see
	// ObjectStatus.SHA256), when the backend's listing has it (local disk
	// and memory; not S3, whose listing holds no metadata).
	SHA256 string `json:"sha256,omitempty"`
	// LastAccess is when the object was last read, or stored when it
	// has not been read since, and Hits counts its reads, as the backend
	// records them (see storage.Info); absent when it does not.
	LastAccess time.Time `json:"lastAccess,omitzero"`
	Hits       int64     `json:"hits"`
}

func listed(o storage.Info) ListedObject {
	base, _ := policy.BaseKey(o.Key)
	lo := ListedObject{Key: o.Key, Size: o.Size, StoredAt: o.StoredAt, VariantOf: base, LastAccess: o.LastAccess, Hits: o.Hits}
	if sum, ok := policy.StoredSHA256(o); ok {
		lo.SHA256 = hex.EncodeToString(sum)
	}
	return lo
}

// ListPage is a page of List.
type ListPage struct {
	Prefix  string         `json:"prefix"`
	Objects []ListedObject `json:"objects"`
	// Bytes sums the sizes of the page's objects, and Variants counts
	// those that are variants of another (ListedObject.VariantOf).
	Bytes    int64 `json:"bytes"`
	Variants int   `json:"variants"`
	// Next is the token of the next page; empty on the last one.
	Next string `json:"next,omitempty"`
}

// List returns a page of the stored objects under prefix (see PurgePrefix
// for what it covers; empty for every object), starting at the page named
// by token (empty for the first). A page holds at most limit objects (0
// means storage.DefaultListLimit, at most MaxListLimit) and may hold fewer
// even when more follow. Backends without storage.Lister give
// storage.ErrNotSupported; a token List did not issue gives
// storage.ErrInvalidToken.
func (m *MirrorHandler) List(ctx context.Context, prefix, token string, limit int) (ListPage, error) {
	if err := m.adminReady(); err != nil {
		return ListPage{}, err
	}
	if _, ok := m.RemoteCache.(storage.Lister); !ok {
		return ListPage{}, storage.ErrNotSupported
	}
	p, err := m.p.KeyPrefix(prefix)
	if err != nil {
		return ListPage{}, err
	}
	objs, next, err := m.p.Store().(storage.Lister).List(ctx, p, token, min(limit, MaxListLimit))
	if err != nil {
		return ListPage{}, err
	}
	page := ListPage{Prefix: p, Objects: []ListedObject{}, Next: next}
	for _, o := range objs {
		if underPrefix(p, o.Key) {
			lo := listed(o)
			page.Objects = append(page.Objects, lo)
			page.Bytes += o.Size
			if lo.VariantOf != "" {
				page.Variants++
			}
		}
	}
	return page, nil
}

// PurgeResult is what a purge did.
type PurgeResult struct {
	// Key is the key purged (Purge) or the key prefix (PurgePrefix).
	Key string `json:"key,omitempty"`
	// Purged counts the stored objects deleted.
	Purged int `json:"purged"`
	// CancelledFills counts the downloads in progress that were stopped.
	CancelledFills int `json:"cancelledFills"`
}

// Purge removes the object ref (see CacheKey) names, and every variant of
// it when it varies (Vary). A download of one in progress is cancelled
// first (its clients' responses are cut off) and waited for, so that
// nothing it fetched is stored afterwards; the next request fetches the
// object again. The origin's remembered 404 and the prebuilt response
// headers of the keys are dropped too.
func (m *MirrorHandler) Purge(ctx context.Context, ref string) (PurgeResult, error) {
	if err := m.adminReady(); err != nil {
		return PurgeResult{}, err
	}
	t, err := m.p.ResolveRef(ref)
	if err != nil {
		return PurgeResult{}, err
	}
	key := t.Key()
	res := PurgeResult{Key: key}
	match := func(k string) bool { return ofObject(key, k) }
	m.cancelQueuedPrefetches(match)
	if res.CancelledFills, err = m.p.Cancel(ctx, match); err != nil {
		return res, err
	}
	defer func() { m.Metrics.purged(res.Purged) }()
	// The variants first: the object under the key is the record of what
	// it varies on, the last thing to go.
	n, err := m.deleteVariants(ctx, key)
	if res.Purged += n; err != nil {
		return res, err
	}
	store := m.p.Store()
	if _, err := store.Stat(ctx, key); err == nil {
		res.Purged++
	}
	if err := store.Delete(ctx, key); err != nil {
		return res, err
	}
	m.p.Forget(match)
	return res, nil
}

// maxPurgePages bounds the listing pages one PurgePrefix walks (a hundred
// million objects at the default page size).
const maxPurgePages = 100000

// PurgePrefix removes every stored object under prefix: the key prefix
// itself and, as a directory, everything below it ("example.com/pool"
// covers example.com/pool and example.com/pool/a, not example.com/pool2).
// prefix is a key prefix or an upstream URL prefix and must name at least
// a host. Downloads in progress under it are cancelled first, as Purge
// does. Objects stored while the purge runs may stay.
func (m *MirrorHandler) PurgePrefix(ctx context.Context, prefix string) (PurgeResult, error) {
	if err := m.adminReady(); err != nil {
		return PurgeResult{}, err
	}
	p, err := m.p.KeyPrefix(prefix)
	if err != nil {
		return PurgeResult{}, err
	}
	if p == "" {
		return PurgeResult{}, fmt.Errorf("%w: a purge needs a prefix of at least a host", ErrInvalidRef)
	}
	if _, ok := m.RemoteCache.(storage.Lister); !ok {
		return PurgeResult{}, storage.ErrNotSupported
	}
	res := PurgeResult{Key: p}
	// A directory's own variants sit beside it (policy.VariantKey), not
	// under the prefix.
	match := func(k string) bool { return underPrefix(p, k) || ofObject(p, k) }
	m.cancelQueuedPrefetches(match)
	if res.CancelledFills, err = m.p.Cancel(ctx, match); err != nil {
		return res, err
	}
	defer func() { m.Metrics.purged(res.Purged) }()
	if strings.HasSuffix(p, "/") {
		n, err := m.deleteVariants(ctx, p)
		if res.Purged += n; err != nil {
			return res, err
		}
	}
	_, err = storage.Walk(ctx, m.p.Store().(storage.Lister), p, maxPurgePages, func(o storage.Info) error {
		if !underPrefix(p, o.Key) {
			return nil
		}
		if err := m.p.Store().Delete(ctx, o.Key); err != nil {
			return err
		}
		res.Purged++
		return nil
	})
	if err != nil {
		return res, err
	}
	m.p.Forget(match)
	return res, nil
}
