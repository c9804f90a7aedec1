package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// This file is the seam the operator features (the admin API, prefetch,
// the status page) use: they resolve references, start and cancel fills,
// and read progress through these methods, and touch nothing else of the
// pipeline.

// ErrInvalidRef is matched by the errors for a URL, key or prefix that
// names nothing the mirror could cache.
var ErrInvalidRef = errors.New("invalid reference")

// Store returns the cache, behind its instrumenting decorator; nil without
// one.
func (p *Pipeline) Store() storage.Backend { return p.store }

// URL returns the upstream URL of t.
func (p *Pipeline) URL(t Target) string { return t.url(p.cfg.Scheme) }

// ResolveRef resolves ref, an upstream URL (https://example.com/a/b.tgz) or
// a cache key (example.com/a/b.tgz), as a client request for it would be:
// in first-path form whatever the mode of requests, the host
// canonicalised and allowed, the path cleaned, the query kept only with
// CacheQuery, blocked suffixes refused; with a fixed Host, only URLs of
// that host. With a fixed Host, ref may also be the path clients request
// (/a/b.tgz, or a/b.tgz), resolved by the very function that resolves
// their requests; a key of the fixed host (example.com/a/b.tgz) is taken
// as a key, not as the path /example.com/a/b.tgz. Its errors match
// ErrInvalidRef and never echo ref: it may carry credentials.
func (p *Pipeline) ResolveRef(ref string) (Target, error) {
	rest := ref
	scheme, after, isURL := strings.Cut(ref, "://")
	if isURL {
		if s := strings.ToLower(scheme); s != "http" && s != "https" {
			return Target{}, fmt.Errorf("%w: scheme is neither http nor https", ErrInvalidRef)
		}
		rest, _, _ = strings.Cut(after, "#")
	}
	path, query, _ := strings.Cut(strings.TrimPrefix(rest, "/"), "?")
	dec, err := url.PathUnescape(path)
	if err != nil || path == "" || strings.HasPrefix(path, "/") {
		return Target{}, fmt.Errorf("%w: want https://host/path or host/path", ErrInvalidRef)
	}
	u := &url.URL{Path: "/" + dec, RawPath: "/" + path}
	// The handler's own rules: the allowed hosts among them, so that the
	// operator API never fetches (nor names) a host clients are refused.
	t, err := p.cfg.Hosts.resolve(HostFromFirstPath, u.EscapedPath(), query, "")
	if h := p.cfg.Hosts; h.Mode == HostFixed && !isURL && !startsWithHost(path, h.Host) {
		// Not a key of the fixed host: the path clients request.
		t, err = h.resolve(HostFixed, u.EscapedPath(), query, "")
	}
	switch {
	case errors.Is(err, errHostNotAllowed):
		return Target{}, fmt.Errorf("%w: the host is not among the allowed hosts (--allow-host)", ErrInvalidRef)
	case errors.Is(err, errNoTarget):
		return Target{}, fmt.Errorf("%w: no valid host and file path", ErrInvalidRef)
	case errors.Is(err, errBlocked):
		return Target{}, fmt.Errorf("%w: the path ends in a blocked suffix", ErrInvalidRef)
	case errors.Is(err, errPathTooLong):
		return Target{}, fmt.Errorf("%w: the path is too long", ErrInvalidRef)
	case err != nil:
		return Target{}, fmt.Errorf("%w: malformed path", ErrInvalidRef)
	}
	if h := p.cfg.Hosts; h.Mode == HostFixed && h.Host != t.host {
		return Target{}, fmt.Errorf("%w: this mirror serves %s only", ErrInvalidRef, h.Host)
	}
	return t, nil
}

// ResolvePrefix checks a prefix of keys (example.com/pool/) or of
// upstream URLs (https://example.com/pool/) and returns it as a key
// prefix. Its first segment must be a whole host. An empty prefix stays
// empty.
func ResolvePrefix(prefix string) (string, error) {
	rest := prefix
	if scheme, after, ok := strings.Cut(prefix, "://"); ok {
		if s := strings.ToLower(scheme); s != "http" && s != "https" {
			return "", fmt.Errorf("%w: prefix scheme is neither http nor https", ErrInvalidRef)
		}
		rest = after
	}
	rest = strings.TrimPrefix(rest, "/")
	if rest == "" {
		return "", nil
	}
	host, path, _ := strings.Cut(rest, "/")
	h, err := CanonicalHost(host)
	if err != nil {
		return "", fmt.Errorf("%w: the prefix must start with a whole host name", ErrInvalidRef)
	}
	if !strings.Contains(rest, "/") {
		return h, nil
	}
	u := &url.URL{Path: "/" + path}
	if dec, err := url.PathUnescape(path); err == nil {
		u = &url.URL{Path: "/" + dec, RawPath: "/" + path}
	}
	clean, err := cleanPath(u.EscapedPath())
	if err != nil {
		return "", fmt.Errorf("%w: malformed path in the prefix", ErrInvalidRef)
	}
	return h + clean, nil
}

// startsWithHost reports whether the first segment of the escaped path p
// names host: then p is a key, and no path of a client.
func startsWithHost(p, host string) bool {
	first, _, _ := strings.Cut(p, "/")
	if dec, err := url.PathUnescape(first); err == nil {
		first = dec
	}
	h, err := CanonicalHost(first)
	return err == nil && h == host
}

// KeyPrefix is ResolvePrefix with the handler's mode of requests: with a
// fixed Host, a prefix that does not start with that host (nor is a URL)
// is a prefix of the paths clients request ("/pool/" or "pool/" is
// "example.com/pool/"), as ResolveRef takes their paths.
func (p *Pipeline) KeyPrefix(prefix string) (string, error) {
	h := p.cfg.Hosts
	rest := strings.TrimPrefix(prefix, "/")
	if h.Mode != HostFixed || strings.Contains(prefix, "://") || rest == "" {
		return ResolvePrefix(prefix)
	}
	if startsWithHost(rest, h.Host) {
		return ResolvePrefix(prefix)
	}
	return ResolvePrefix(h.Host + "/" + rest)
}

// Freshness reports how the stored object of t, with metadata info, is
// used now: its freshness and whether it is fresh.
func (p *Pipeline) Freshness(t Target, info storage.Info) (fr policy.Freshness, fresh bool) {
	fr = p.cfg.Rules.Freshness(t.ruleKey(), info)
	return fr, !fr.Stale(info.StoredAt, p.now())
}

// Prefetched is what Prefetch did.
type Prefetched struct {
	// Fill is the fill of the object, which the caller follows and
	// releases; Joined says that another request started it.
	Fill   *fill.Fill
	Joined bool
	// Stored is the metadata of the object stored already (fresh or not):
	// nothing was fetched.
	Stored *storage.Info
}

// ErrRemembered is matched by a Prefetch refused because the origin
// recently answered 404 or 410 for the object.
var ErrRemembered = errors.New("the origin's answer, remembered")

// Prefetch fetches t into the cache as an anonymous client's GET for it
// would be decided (Lookup) and fetched (the fetcher of a miss): the
// origin's remembered 404 refuses it (an error matching ErrRemembered and
// the *fill.StatusError), a stored object, fresh or not, is there already,
// and a miss starts (or joins) a fill. A CIDN transfer is waited for.
func (p *Pipeline) Prefetch(ctx context.Context, t Target) (Prefetched, error) {
	req := &Request{Kind: Prefetch, Method: http.MethodGet, Header: http.Header{}}
	d := &Decision{Req: req, Target: t}
	if code, ok := p.negatives.get(t.key, p.now); ok {
		return Prefetched{}, fmt.Errorf("%w: %w", ErrRemembered, &fill.StatusError{Code: code})
	}
	for range maxSteps {
		switch p.lookupStored(ctx, d); d.Action {
		case Fail:
			return Prefetched{}, d.Err
		case Miss:
		default: // stored
			info := d.Info
			d.Close()
			return Prefetched{Stored: &info}, nil
		}
		pl := p.plan(ctx, d, p.source(t, req))
		switch pl.next {
		case Miss:
			f, joined := p.fills.Miss(t.key, pl.src)
			if !joined {
				pl.started(f)
			}
			return Prefetched{Fill: f, Joined: joined}, nil
		case Fail:
			p.remember(d, pl.err)
			return Prefetched{}, pl.err
		case Direct:
			return Prefetched{}, errors.New("cidn transfer still running")
		}
		// Reopen: stored now; look again.
	}
	return Prefetched{}, errors.New("too many decisions")
}

// Remember records what a prefetch's fill that produced no object tells
// about the origin, as for a client's (see remember).
func (p *Pipeline) Remember(t Target, err error) {
	p.remember(&Decision{Req: &Request{Header: http.Header{}}, Target: t, Action: Miss}, err)
}

// Progress reports the fills in progress.
func (p *Pipeline) Progress() []fill.Progress {
	if p.fills == nil {
		return nil
	}
	return p.fills.Progress()
}

// Cancel cancels the fills of the keys that match (their clients see
// their responses cut off, or 503 before they started) and waits until
// they have ended, or ctx is done. It returns how many it cancelled.
func (p *Pipeline) Cancel(ctx context.Context, match func(key string) bool) (int, error) {
	done := p.fills.Cancel(match, fill.ErrCancelled)
	for _, d := range done {
		select {
		case <-d:
		case <-ctx.Done():
			return len(done), ctx.Err()
		}
	}
	return len(done), nil
}

// Running returns, by key, the fills in progress whose keys match, each as
// a channel closed once it has finished; the fills go on undisturbed.
func (p *Pipeline) Running(match func(key string) bool) map[string]<-chan struct{} {
	if p.fills == nil {
		return nil
	}
	return p.fills.Running(match)
}

// Variants lists the stored variants of the object under key (see
// policy.VariantKey), at most limit of them; none when the backend cannot
// list.
func (p *Pipeline) Variants(ctx context.Context, key string, limit int) ([]storage.Info, error) {
	if !p.cfg.Lists {
		return nil, nil
	}
	l := p.store.(storage.Lister)
	var out []storage.Info
	token := ""
	for len(out) < limit {
		objs, next, err := l.List(ctx, policy.VariantPrefix(key), token, min(limit-len(out), storage.DefaultListLimit))
		if err != nil {
			return out, err
		}
		out = append(out, objs...)
		if token = next; token == "" {
			break
		}
	}
	return out, nil
}

// Resolve returns the target of req, as Lookup resolves it.
func (p *Pipeline) Resolve(req *Request) (Target, error) {
	return p.cfg.Hosts.resolve(p.cfg.Hosts.Mode, req.Path, req.RawQuery, req.Host)
}
