package httpmirror

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/httpmirror/httpmirror/internal/pipeline"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// ErrNoRefresh: the storage backend cannot rewrite an object's metadata
// (storage.Refresher), which an invalidation does.
var ErrNoRefresh = errors.New("the storage backend cannot rewrite an object's metadata")

// MaxGlobLength bounds the glob of InvalidateGlob: matching costs the
// length of the key times that of the glob at worst.
const MaxGlobLength = 1024

// InvalidateResult is what an invalidation did.
type InvalidateResult struct {
	// Kind is "key", "prefix", "glob" or "all".
	Kind string `json:"kind"`
	// Key is the key (Invalidate), the key prefix (InvalidatePrefix) or
	// the glob of keys (InvalidateGlob); empty for InvalidateAll.
	Key string `json:"key"`
	// Invalidated counts the stored objects marked stale, variants
	// included.
	Invalidated int `json:"invalidated"`
	// Failed counts the stored objects the store could not mark (S3
	// cannot rewrite the metadata of an object over 5 GiB): they stay as
	// they were. The mirror's log has the first error.
	Failed int `json:"failed,omitempty"`
	// Fills counts the downloads of matching keys in progress: what they
	// store is marked when they end, if the origin answered them before
	// the invalidation.
	Fills int `json:"fills"`
}

// Invalidate marks the stored object ref (see CacheKey) names, and every
// variant of it when it varies (Vary), stale without deleting it: the
// next request for it asks the origin with the stored validators
// (If-None-Match, If-Modified-Since). A 304 keeps the stored bytes and
// refreshes their metadata; a 200 replaces the object. The mark is kept
// with the object in the store (policy.InvalidatedHeader), so that it
// survives a restart and every replica sharing the store sees it. While
// the origin cannot be reached, the object is served stale unless its
// origin forbade that (must-revalidate, s-maxage, no-cache): then the
// request gets 504, as for any stale object. A download of the object in
// progress goes on; what it stores is marked when it ends, if the
// origin's answer predates the invalidation. Without a stored object or a
// download of one, it returns ErrNotCached.
func (m *MirrorHandler) Invalidate(ctx context.Context, ref string) (InvalidateResult, error) {
	if err := m.invalidateReady(); err != nil {
		return InvalidateResult{Kind: "key"}, err
	}
	t, err := m.p.ResolveRef(ref)
	if err != nil {
		return InvalidateResult{Kind: "key"}, err
	}
	key := t.Key()
	res := InvalidateResult{Kind: "key", Key: key}
	at := m.now()
	defer func() { m.Metrics.invalidated(res.Kind, res.Invalidated) }()
	vs, err := m.p.Variants(ctx, key, maxVariantsListed)
	if err != nil {
		return res, err
	}
	for _, v := range vs {
		if err := m.markInvalidated(ctx, v.Key, at, &res); err != nil {
			return res, err
		}
	}
	if err := m.markInvalidated(ctx, key, at, &res); err != nil {
		return res, err
	}
	res.Fills = m.invalidateFills(res.Kind, func(k string) bool { return ofObject(key, k) }, at)
	if res.Invalidated+res.Failed+res.Fills == 0 {
		return res, ErrNotCached
	}
	return res, nil
}

// ErrEmptyPrefix is matched by the error of InvalidatePrefix for a prefix
// that names no host: it would cover every object, which InvalidateAll
// asks for explicitly. It matches ErrInvalidRef too.
var ErrEmptyPrefix = fmt.Errorf("%w: an empty prefix would invalidate every object", ErrInvalidRef)

// InvalidatePrefix marks every stored object under prefix stale, as
// Invalidate does: the key prefix itself and, as a directory, everything
// below it (see PurgePrefix). prefix is a key prefix or an upstream URL
// prefix, and must name at least a host (else ErrEmptyPrefix). It costs
// a listing of the keys under the prefix, and a metadata rewrite per
// object.
func (m *MirrorHandler) InvalidatePrefix(ctx context.Context, prefix string) (InvalidateResult, error) {
	res := InvalidateResult{Kind: "prefix"}
	if err := m.invalidateReady(); err != nil {
		return res, err
	}
	p, err := pipeline.ResolvePrefix(prefix)
	if err != nil {
		return res, err
	}
	if p == "" {
		return res, ErrEmptyPrefix
	}
	return m.invalidateUnder(ctx, res, p)
}

// InvalidateAll marks every stored object stale, as Invalidate does.
func (m *MirrorHandler) InvalidateAll(ctx context.Context) (InvalidateResult, error) {
	res := InvalidateResult{Kind: "all"}
	if err := m.invalidateReady(); err != nil {
		return res, err
	}
	return m.invalidateUnder(ctx, res, "")
}

// invalidateUnder marks the objects under the key prefix p.
func (m *MirrorHandler) invalidateUnder(ctx context.Context, res InvalidateResult, p string) (InvalidateResult, error) {
	if _, ok := m.RemoteCache.(storage.Lister); !ok {
		return res, storage.ErrNotSupported
	}
	res.Key = p
	match := func(k string) bool { return underPrefix(p, k) || ofObject(p, k) }
	return m.invalidateListed(ctx, res, p, strings.HasSuffix(p, "/"), match)
}

// InvalidateGlob marks every stored object whose key matches glob stale,
// as Invalidate does. In glob, '*' matches any run of characters, '/'
// included (as in the revalidate patterns); every other character matches
// itself. A variant goes with its object: it matches when its object's
// key does. glob is a glob of keys (example.com/dists/*/InRelease) or of
// upstream URLs (https://example.com/dists/*); its host, when the part
// before the first '*' holds one, is canonicalised as a request's. Only
// the keys that start with the part before the first '*' are listed: a
// glob starting with '*' lists every object. Brackets and braces are
// refused: they are no wildcards here, and a glob meaning them as such
// would match nothing the operator meant.
func (m *MirrorHandler) InvalidateGlob(ctx context.Context, glob string) (InvalidateResult, error) {
	res := InvalidateResult{Kind: "glob"}
	if err := m.invalidateReady(); err != nil {
		return res, err
	}
	pattern, literal, err := ResolveGlob(glob)
	if err != nil {
		return res, err
	}
	if _, ok := m.RemoteCache.(storage.Lister); !ok {
		return res, storage.ErrNotSupported
	}
	res.Key = pattern
	match := func(k string) bool {
		if base, ok := policy.BaseKey(k); ok {
			k = base
		}
		return policy.Glob(pattern, k)
	}
	return m.invalidateListed(ctx, res, literal, strings.HasSuffix(literal, "/"), match)
}

// ResolveGlob checks a glob of keys or upstream URLs (see InvalidateGlob)
// and returns it as a glob of keys, with its literal part: what every key
// it matches starts with. Runs of '*' become one. Its errors match
// ErrInvalidRef.
func ResolveGlob(glob string) (pattern, literal string, err error) {
	rest := glob
	if scheme, after, ok := strings.Cut(glob, "://"); ok {
		if s := strings.ToLower(scheme); s != "http" && s != "https" {
			return "", "", fmt.Errorf("%w: glob scheme is neither http nor https", ErrInvalidRef)
		}
		rest = after
	}
	rest = strings.TrimPrefix(rest, "/")
	switch {
	case rest == "":
		return "", "", fmt.Errorf("%w: empty glob", ErrInvalidRef)
	case len(rest) > MaxGlobLength:
		return "", "", fmt.Errorf("%w: the glob is longer than %d bytes", ErrInvalidRef, MaxGlobLength)
	case !utf8.ValidString(rest):
		return "", "", fmt.Errorf("%w: the glob is not UTF-8", ErrInvalidRef)
	case strings.ContainsAny(rest, "[]{}"):
		return "", "", fmt.Errorf("%w: only '*' is a wildcard in a glob (it matches any run of characters, '/' included); [ ] { } are not supported", ErrInvalidRef)
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "", "", fmt.Errorf("%w: control character or backslash in the glob", ErrInvalidRef)
		}
	}
	for strings.Contains(rest, "**") {
		rest = strings.ReplaceAll(rest, "**", "*")
	}
	literal = rest
	if i := strings.IndexByte(rest, '*'); i >= 0 {
		literal = rest[:i]
	}
	host, _, whole := strings.Cut(literal, "/")
	if !whole {
		// The literal part is a host or the start of one: hosts are
		// lower case in keys.
		low := strings.ToLower(literal)
		return low + rest[len(literal):], low, nil
	}
	h, err := pipeline.CanonicalHost(host)
	if err != nil {
		return "", "", fmt.Errorf("%w: the glob must start with a whole host name, or with '*'", ErrInvalidRef)
	}
	return h + rest[len(host):], h + literal[len(host):], nil
}

// invalidateReady initialises the handler and checks that it has a cache
// that can mark objects.
func (m *MirrorHandler) invalidateReady() error {
	if err := m.adminReady(); err != nil {
		return err
	}
	if _, ok := m.RemoteCache.(storage.Refresher); !ok {
		return ErrNoRefresh
	}
	return nil
}

// invalidateListed marks the stored objects whose keys start with prefix
// and match, and, with dirVariants, the variants of the directory prefix
// itself, which sit beside it (policy.VariantKey), not under it. It walks
// at most maxPurgePages pages of the listing.
func (m *MirrorHandler) invalidateListed(ctx context.Context, res InvalidateResult, prefix string, dirVariants bool, match func(string) bool) (InvalidateResult, error) {
	at := m.now()
	defer func() { m.Metrics.invalidated(res.Kind, res.Invalidated) }()
	if dirVariants {
		vs, err := m.p.Variants(ctx, prefix, maxVariantsListed)
		if err != nil {
			return res, err
		}
		for _, v := range vs {
			if !match(v.Key) {
				continue
			}
			if err := m.markInvalidated(ctx, v.Key, at, &res); err != nil {
				return res, err
			}
		}
	}
	_, err := storage.Walk(ctx, m.p.Store().(storage.Lister), prefix, maxPurgePages, func(o storage.Info) error {
		if !strings.HasPrefix(o.Key, prefix) || !match(o.Key) {
			return nil
		}
		return m.markInvalidated(ctx, o.Key, at, &res)
	})
	if err != nil {
		return res, err
	}
	res.Fills = m.invalidateFills(res.Kind, match, at)
	return res, nil
}

// markInvalidated marks the stored object of key invalidated at at,
// counting it in res. An object that is gone, or replaced between the
// read of its metadata and the rewrite, is left alone: its replacement
// came from the origin since. A rewrite the store refuses is counted as
// failed (the first is logged); a failing read stops the invalidation.
func (m *MirrorHandler) markInvalidated(ctx context.Context, key string, at time.Time, res *InvalidateResult) error {
	store := m.p.Store()
	info, err := store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	err = store.(storage.Refresher).Refresh(ctx, key, policy.Invalidated(info, at))
	switch {
	case err == nil:
		res.Invalidated++
	case errors.Is(err, storage.ErrNotFound):
	case ctx.Err() != nil:
		return context.Cause(ctx)
	default:
		if res.Failed == 0 {
			m.log.Warn("invalidating object failed; it stays as it was", "key", key, "err", err)
		}
		res.Failed++
	}
	return nil
}

// invalidateFills arranges for the downloads in progress of the keys that
// match to be marked when they end, and returns how many there are. A
// download's object is marked only when the origin answered it before the
// invalidation (its StoredAt is earlier than at): an answer given since,
// such as a revalidation's 304 that arrives afterwards, is current.
// Marking waits at most until the handler is closed.
func (m *MirrorHandler) invalidateFills(kind string, match func(string) bool, at time.Time) int {
	running := m.p.Running(match)
	a := m.adminInit()
	for key, done := range running {
		a.invalidations.add()
		go func() {
			defer a.invalidations.done()
			select {
			case <-done:
			case <-a.ctx.Done():
				return
			}
			info, err := m.p.Store().Stat(a.ctx, key)
			if err != nil || !info.StoredAt.Before(at) {
				return // not stored, or answered since the invalidation
			}
			var res InvalidateResult
			m.markInvalidated(a.ctx, key, at, &res)
			m.Metrics.invalidated(kind, res.Invalidated)
		}()
	}
	return len(running)
}

// stopInvalidations waits for the marks that wait for downloads to end
// (invalidateFills); the admin context is cancelled first, by
// stopPrefetches.
func (m *MirrorHandler) stopInvalidations() {
	<-m.adminInit().invalidations.idle()
}

// invalidated counts objects marked stale by an invalidation of kind
// (key, prefix, glob, all).
func (m *Metrics) invalidated(kind string, n int) {
	if m != nil && n > 0 {
		m.invalidations.WithLabelValues(kind).Add(float64(n))
	}
}

// waitInvalidations waits until no mark waits for a download to end
// (invalidateFills), or ctx is done.
func (m *MirrorHandler) waitInvalidations(ctx context.Context) error {
	select {
	case <-m.adminInit().invalidations.idle():
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// pendingMarks counts the marks waiting for downloads to end. Unlike a
// sync.WaitGroup, it may be waited for while marks are added.
type pendingMarks struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0
}

func (p *pendingMarks) add() {
	p.mu.Lock()
	if p.n == 0 {
		p.zero = make(chan struct{})
	}
	p.n++
	p.mu.Unlock()
}

func (p *pendingMarks) done() {
	p.mu.Lock()
	if p.n--; p.n == 0 {
		close(p.zero)
	}
	p.mu.Unlock()
}

// idle returns a channel closed once no mark is pending.
func (p *pendingMarks) idle() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.zero
}

// invalidatedAt returns when the object of info was invalidated, and
// whether it carries the mark (an unreadable time is the zero time).
func invalidatedAt(info storage.Info) (time.Time, bool) {
	v := info.Header[policy.InvalidatedHeader]
	if len(v) == 0 {
		return time.Time{}, false
	}
	at, _ := time.Parse(time.RFC3339, v[0])
	return at, true
}

// unmarked returns info without the invalidation mark.
func unmarked(info storage.Info) storage.Info {
	if _, ok := info.Header[policy.InvalidatedHeader]; ok {
		info.Header = info.Header.Clone()
		delete(info.Header, policy.InvalidatedHeader)
	}
	return info
}
