package pipeline

import (
	"context"
	"net/http"
	"time"

	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// variant finds what r gets of t, whose stored object (or fill) has
// metadata info. An object without Vary is the answer for every request:
// t itself. An object that varies is one variant, the one of the request
// it was fetched for (policy.VariantHeader); when r selects that one,
// the answer is t, set to forward the Vary'd headers when it is fetched
// again. Otherwise r's own variant lives under a key of its own
// (policy.VariantKey) and other is true.
//
// The base key's object is thus also the record of what the object
// varies on: a restart, or another replica sharing the store, finds it
// there. Should it be evicted, the next request fetches it again, for its
// own variant.
func (p *Pipeline) variant(r *Request, t Target, info storage.Info) (vt Target, other bool) {
	if t.base != "" || info.Header["Vary"] == nil {
		return t, false
	}
	v := policy.ParseVary(info.Header)
	if len(v.Fields) == 0 {
		return t, false
	}
	t.vary = v.Fields
	id := policy.VariantID(v.Fields, r.Header)
	if id == info.Header.Get(policy.VariantHeader) {
		return t, false
	}
	t.base, t.key = t.key, policy.VariantKey(t.key, id)
	return t, true
}

// forwardedHeaders returns the client's request headers that a fill of t
// sends upstream: Accept always (the origin may negotiate, and the
// answer is stored as that request's variant), the other headers t's
// stored Vary names (see policy.Forwarded; never Accept-Encoding: the
// mirror stores the origin's own bytes), and Authorization, which the
// upstream client sends to the same origin only (withRedirectPolicy).
// The values are copied: the fill outlives the request.
func forwardedHeaders(r *Request, t Target) http.Header {
	h := http.Header{}
	add := func(k string) {
		if v := r.Header[k]; len(v) > 0 {
			h[k] = append([]string(nil), v...)
		}
	}
	add("Accept")
	add("Authorization")
	for _, f := range t.vary {
		if policy.Forwarded(f) {
			add(f)
		}
	}
	return h
}

// objectInfo returns the metadata a response stores beyond policy.Info: the
// variant of the request it answers when it varies, and the mark of an
// object that needs authorisation.
func (p *Pipeline) objectInfo(resp *http.Response) storage.Info {
	info := policy.Info(resp, p.now())
	set := func(k, v string) {
		if info.Header == nil {
			info.Header = http.Header{}
		}
		info.Header[k] = []string{v}
	}
	if v := policy.ParseVary(resp.Header); len(v.Fields) > 0 {
		var sent http.Header
		if req := policy.FirstRequest(resp); req != nil {
			sent = req.Header
		}
		set(policy.VariantHeader, policy.VariantID(v.Fields, sent))
	}
	if policy.NeedsAuthorization(resp) {
		set(policy.AuthHeader, "1")
	}
	return info
}

// storable reports whether the fill engine may store resp, fetched for the
// object of key: when the origin allows it (policy.Storable), when it does
// not vary on everything (Vary: *), when it is no variant beyond the
// MaxVariants of its URL (see variantsFull), and, for a response to an authenticated request that does not
// allow shared use (RFC 9111 section 3.5), only with AuthCache and only
// when an origin's answer could prove that it gave the object to another
// credential (a validator: see policy.SameObject); without one, no client
// but its first could ever be served the stored copy.
func (p *Pipeline) storable(key string, resp *http.Response) bool {
	if !policy.Storable(resp.Header) || policy.ParseVary(resp.Header).Any {
		return false
	}
	if base, ok := policy.BaseKey(key); ok && p.variantsFull(base, key) {
		return false
	}
	if !policy.NeedsAuthorization(resp) {
		return true
	}
	info := policy.Info(resp, p.now())
	return p.cfg.AuthCache && policy.SameObject(info, info)
}

// variantsFull reports whether the object under base has as many variants
// stored as MaxVariants allows (the object under base counts as one),
// other than the one under key: a new one is then served but not stored,
// and counted (httpmirror_variants_not_stored_total). A store that fails
// to list keeps nothing more; one that cannot list keeps every variant.
func (p *Pipeline) variantsFull(base, key string) bool {
	limit := p.cfg.MaxVariants
	if limit < 0 {
		return false
	}
	full := true
	ctx, cancel := context.WithTimeout(context.Background(), variantListTimeout)
	defer cancel()
	if objs, err := p.Variants(ctx, base, limit); err == nil {
		n := 1 // the object under base
		for _, o := range objs {
			if o.Key != key {
				n++
			}
		}
		full = n >= limit
	} else {
		p.log.Warn("listing variants failed; not storing another", "key", base, "err", err)
	}
	if full {
		p.obs.VariantNotStored()
		p.log.Debug("variant limit reached; serving without storing", "key", key, "limit", limit)
	}
	return full
}

// variantListTimeout bounds the listing variantsFull makes.
const variantListTimeout = 10 * time.Second

// published returns the digests published for the object of key that
// resp brings (see policy.DigestRules), for the fill to check. A digest
// of an algorithm the mirror cannot check is logged once, at debug level,
// and the object stored as without it.
func (p *Pipeline) published(key string, resp *http.Response) []policy.Expected {
	exp, unknown := p.cfg.Digests.Digests(key, resp)
	for _, alg := range unknown {
		if _, seen := p.unknownDigests.LoadOrStore(alg, true); !seen {
			p.log.Debug("digest of an unknown algorithm not checked", "alg", alg, "key", key)
		}
	}
	return exp
}
