package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/httpmirror/httpmirror"
)

// maxInvalidateBody bounds the body of POST /cache/invalidate: one key,
// prefix or glob.
const maxInvalidateBody = 64 << 10

// invalidateRequest is the body of POST /cache/invalidate: one of Key,
// Prefix and Glob, or All alone. Pointers tell an absent field from an
// empty one: an empty prefix is refused, not taken for "everything".
type invalidateRequest struct {
	Key    *string `json:"key"`
	Prefix *string `json:"prefix"`
	Glob   *string `json:"glob"`
	All    bool    `json:"all"`
}

// invalidateUsage is the message of a body that says nothing valid.
const invalidateUsage = `want a JSON object with one of "key" (a URL or cache key), "prefix" (a host, host/path or URL prefix) or "glob" (a key or URL glob, '*' matching any characters), or {"all": true}`

// invalidate serves POST /cache/invalidate: it marks the objects the body
// names stale, so that the next request for each revalidates it with the
// origin (see httpmirror.MirrorHandler.Invalidate), and answers with how
// many it marked. A key with no stored object is 404.
func (s *Server) invalidate(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInvalidateBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "request body over 64 KiB")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request body failed")
		return
	}
	var req invalidateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		writeError(w, http.StatusBadRequest, "the body is not a JSON object of the invalidate API: "+invalidateUsage)
		return
	}
	named := 0
	for _, v := range []*string{req.Key, req.Prefix, req.Glob} {
		if v != nil {
			named++
		}
	}
	switch {
	case named > 1 || (named == 1 && req.All):
		writeError(w, http.StatusBadRequest, `give one of "key", "prefix", "glob" and "all", not several`)
		return
	case named == 0 && !req.All:
		writeError(w, http.StatusBadRequest, "nothing to invalidate: "+invalidateUsage)
		return
	case req.Prefix != nil && *req.Prefix == "":
		writeError(w, http.StatusBadRequest, `an empty prefix would invalidate every object: send {"all": true} for that`)
		return
	}
	// Like a purge, an invalidation goes on when the operator's client
	// gives up waiting.
	ctx := context.WithoutCancel(r.Context())
	var res httpmirror.InvalidateResult
	switch {
	case req.Key != nil:
		res, err = s.Mirror.Invalidate(ctx, *req.Key)
	case req.Prefix != nil:
		res, err = s.Mirror.InvalidatePrefix(ctx, *req.Prefix)
	case req.Glob != nil:
		res, err = s.Mirror.InvalidateGlob(ctx, *req.Glob)
	default:
		res, err = s.Mirror.InvalidateAll(ctx)
	}
	audit(r, "kind", res.Kind)
	if res.Key != "" {
		audit(r, res.Kind, res.Key)
	}
	if errors.Is(err, httpmirror.ErrNotCached) {
		audit(r, "objects", 0, "err", err.Error())
		writeJSON(w, http.StatusNotFound, struct {
			apiError
			httpmirror.InvalidateResult
		}{apiError{Error: "not cached"}, res})
		return
	}
	if err != nil {
		audit(r, "objects", res.Invalidated, "err", err.Error())
		s.fail(w, r, err)
		return
	}
	audit(r, "objects", res.Invalidated, "failed", res.Failed, "fills", res.Fills)
	writeJSON(w, http.StatusOK, res)
}
