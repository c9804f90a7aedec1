package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/storage"
)

// busyRetryAfter is the Retry-After, in seconds, of a job refused
// because every kept job still runs.
const busyRetryAfter = 10

// maxPrefetchBody bounds a prefetch request's body: MaxPrefetchURLs URLs
// of up to about 800 bytes each.
const maxPrefetchBody = 8 << 20

// mirrorHandler adds the cache API and the status page to mux:
//
//	GET    /cache/<URL or key>        the stored object (JSON), or its download in progress; 404 when neither
//	DELETE /cache/<URL or key>        purge one object
//	GET    /cache/?prefix=P&limit=N&next=T   list the objects under P, paged
//	DELETE /cache/?prefix=P           purge the objects under P
//	POST   /cache/invalidate          {"key"|"prefix"|"glob": …} or {"all": true}: mark objects stale (invalidate.go)
//	POST   /prefetch                  JSON array of URLs, or one per line: 202 with the job's id
//	GET    /prefetch/<id>?wait=D&urls=U  the job's counts and per-URL state and bytes, once done or after D;
//	                                  U: all, none, or states (failed,cancelled) of the URLs listed
//	DELETE /prefetch/<id>?urls=U      cancel the job; its status once its running URLs stopped
//	POST   /verify?prefix=P&purge=B&rate=R&from=T   (or a JSON body) verify stored objects: 202 with the job's id
//	GET    /verify/<id>?wait=D        the job's counts and mismatches, once ended or after D
//	DELETE /verify/<id>               cancel the job; its status, with where to resume
//	GET    /                          the status page; /status.json its data
//
// Paths under /cache/ hold URLs ("https://host/…"), which the mux would
// clean of their double slash: they are routed before it.
func (s *Server) mirrorHandler(mux *http.ServeMux) http.Handler {
	mux.HandleFunc("/prefetch", s.prefetch)
	mux.HandleFunc("/prefetch/{id}", s.prefetchJob)
	mux.HandleFunc("/verify", s.verify)
	mux.HandleFunc("/verify/{id}", s.verifyJob)
	// The collection paths without an id: a JSON 404 that says what
	// belongs there.
	mux.HandleFunc("/prefetch/{$}", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no prefetch job id: use /prefetch/<id> with the id POST /prefetch answered")
	})
	mux.HandleFunc("/verify/{$}", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no verify job id: use /verify/<id> with the id POST /verify answered")
	})
	mux.HandleFunc("/{$}", s.statusPage)
	mux.HandleFunc("/status.json", s.statusJSON)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		if p == "/cache/invalidate" && r.Method == http.MethodPost {
			// POST to an object is no operation of the API: the path
			// keeps its other methods for an object of that name.
			s.invalidate(w, r)
			return
		}
		if p == "/cache" || strings.HasPrefix(p, "/cache/") {
			s.cache(w, r, strings.TrimPrefix(strings.TrimPrefix(p, "/cache"), "/"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// apiError is the body of every error answer of the cache API.
type apiError struct {
	Error string `json:"error"`
	// Invalid lists a prefetch list's invalid entries, Count how many.
	Invalid []httpmirror.InvalidURL `json:"invalid,omitempty"`
	Count   int                     `json:"count,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Error: msg})
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
}

// fail answers err from the mirror's operator methods with its status.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var pe *httpmirror.PrefetchError
	switch {
	case errors.As(err, &pe):
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid URLs in the list; nothing was prefetched", Invalid: pe.Invalid, Count: pe.Count})
	case errors.Is(err, httpmirror.ErrInvalidRef), errors.Is(err, httpmirror.ErrInvalidResumeToken):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, storage.ErrInvalidToken):
		writeError(w, http.StatusBadRequest, "invalid page token (next)")
	case errors.Is(err, httpmirror.ErrTooManyURLs):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, httpmirror.ErrUnknownPrefetch), errors.Is(err, httpmirror.ErrUnknownVerify):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, httpmirror.ErrTooManyPrefetches), errors.Is(err, httpmirror.ErrTooManyVerifies):
		// When a running job ends is not known: a short wait, and the
		// client asks again (RFC 6585 section 4).
		w.Header().Set("Retry-After", strconv.Itoa(busyRetryAfter))
		writeError(w, http.StatusTooManyRequests, err.Error())
	case errors.Is(err, fill.ErrShutdown):
		writeError(w, http.StatusServiceUnavailable, "the mirror is shutting down")
	case errors.Is(err, httpmirror.ErrNoCache):
		writeError(w, http.StatusNotImplemented, "the mirror runs without a cache (--storage-url is empty)")
	case errors.Is(err, httpmirror.ErrNoRefresh):
		writeError(w, http.StatusNotImplemented, "this storage backend cannot rewrite an object's metadata, which invalidating needs")
	case errors.Is(err, storage.ErrNotSupported):
		writeError(w, http.StatusNotImplemented, "this storage backend cannot list its objects")
	case r.Context().Err() != nil:
		// The operator went away; nobody reads the answer.
	default:
		s.log().Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, "storage error (see the mirror's log)")
	}
}

// cache serves /cache/<ref>; ref is the escaped rest of the path, empty
// for the collection.
func (s *Server) cache(w http.ResponseWriter, r *http.Request, ref string) {
	if ref == "" {
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			s.list(w, r)
		case http.MethodDelete:
			s.purgePrefix(w, r)
		default:
			methodNotAllowed(w, "GET, HEAD, DELETE")
		}
		return
	}
	if r.URL.RawQuery != "" {
		// Kept in the key only by mirrors that cache by query.
		ref += "?" + r.URL.RawQuery
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		st, err := s.Mirror.Lookup(r.Context(), ref)
		if errors.Is(err, httpmirror.ErrNotCached) && st.Fill != nil {
			// Not stored yet, but on its way: an answer about the
			// object ("stored": false and the download's progress), not
			// a 404 that reads as "nobody has asked for it".
			writeJSON(w, http.StatusOK, st)
			return
		}
		if errors.Is(err, httpmirror.ErrNotCached) {
			writeJSON(w, http.StatusNotFound, struct {
				apiError
				httpmirror.ObjectStatus
			}{apiError{Error: "not cached"}, st})
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	case http.MethodDelete:
		res, err := s.Mirror.Purge(r.Context(), ref)
		if res.Key != "" {
			audit(r, "key", res.Key)
		}
		if err != nil {
			audit(r, "err", err.Error())
			s.fail(w, r, err)
			return
		}
		audit(r, "objects", res.Purged, "cancelledFills", res.CancelledFills)
		writeJSON(w, http.StatusOK, res)
	default:
		methodNotAllowed(w, "GET, HEAD, DELETE")
	}
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > httpmirror.MaxListLimit {
			writeError(w, http.StatusBadRequest, "limit must be a number from 1 to "+strconv.Itoa(httpmirror.MaxListLimit))
			return
		}
		limit = n
	}
	page, err := s.Mirror.List(r.Context(), q.Get("prefix"), q.Get("next"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) purgePrefix(w http.ResponseWriter, r *http.Request) {
	prefix := r.URL.Query().Get("prefix")
	if prefix == "" {
		writeError(w, http.StatusBadRequest, "DELETE /cache/ needs ?prefix= with at least a host (example.com/ or https://example.com/path/)")
		return
	}
	// A purge goes on when the operator's client gives up waiting: half a
	// purge helps nobody.
	res, err := s.Mirror.PurgePrefix(context.WithoutCancel(r.Context()), prefix)
	if res.Key != "" {
		audit(r, "prefix", res.Key)
	}
	if err != nil {
		audit(r, "objects", res.Purged, "err", err.Error())
		s.fail(w, r, err)
		return
	}
	audit(r, "objects", res.Purged, "cancelledFills", res.CancelledFills)
	writeJSON(w, http.StatusOK, res)
}

// prefetch starts a prefetch job from a JSON array of URLs or a list of
// URLs one per line (blank lines and lines starting with # ignored).
func (s *Server) prefetch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPrefetchBody))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, "request body over 8 MiB")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "reading the request body failed")
		return
	}
	urls, err := parseURLList(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	audit(r, "urls", len(urls))
	if len(urls) > httpmirror.MaxPrefetchURLs {
		s.fail(w, r, httpmirror.ErrTooManyURLs)
		return
	}
	id, err := s.Mirror.Prefetch(urls)
	if err != nil {
		audit(r, "err", err.Error())
		s.fail(w, r, err)
		return
	}
	audit(r, "id", id)
	go s.logPrefetchEnd(id, auditedBy(r))
	w.Header().Set("Location", "/prefetch/"+id)
	writeJSON(w, http.StatusAccepted, struct {
		ID     string `json:"id"`
		URLs   int    `json:"urls"`
		Status string `json:"status"`
	}{id, len(urls), "/prefetch/" + id})
}

// logPrefetchEnd waits until the prefetch job id has ended (every job
// does, at the latest when the mirror closes) and logs one line of how it
// went, naming the token that started it (by): the audit line of the
// start is all an operator has of a job nobody followed.
func (s *Server) logPrefetchEnd(id, by string) {
	st, err := s.Mirror.WaitPrefetch(context.Background(), id)
	if err != nil {
		return // forgotten already: not a job of ours
	}
	s.log().Info("prefetch job ended", "id", id, "by", by, "urls", st.Total, "done", st.Done, "cached", st.Cached,
		"notStored", st.NotStored, "failed", st.Failed, "cancelled", st.Cancelled, "bytes", st.Bytes,
		"duration", st.Finished.Sub(st.Created).Round(time.Millisecond))
}

// errNotURLList refuses a body that is JSON but not an array of strings.
var errNotURLList = errors.New(`body must be a JSON array of URLs (["https://example.com/a", …]), or one URL per line`)

// parseURLList reads a JSON array of strings, or one URL per line.
func parseURLList(body []byte) ([]string, error) {
	trimmed := bytes.TrimSpace(body)
	if bytes.HasPrefix(trimmed, []byte("{")) || bytes.HasPrefix(trimmed, []byte(`"`)) {
		// JSON, but no array ({"urls": […]}, a lone string): read as a
		// list of lines it would fail at "index 0" with a reason about
		// URLs, which says nothing of what is wrong.
		return nil, errNotURLList
	}
	if bytes.HasPrefix(trimmed, []byte("[")) {
		var urls []string
		if err := json.Unmarshal(trimmed, &urls); err != nil {
			return nil, errNotURLList
		}
		if len(urls) == 0 {
			return nil, errors.New("no URLs to prefetch")
		}
		return urls, nil
	}
	var urls []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), maxPrefetchBody)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			urls = append(urls, line)
		}
	}
	if len(urls) == 0 {
		return nil, errors.New("no URLs to prefetch: send a JSON array of URLs or one URL per line")
	}
	return urls, nil
}

// prefetchJob serves /prefetch/<id>: the job's status, or its cancel.
func (s *Server) prefetchJob(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.prefetchStatus(w, r)
	case http.MethodDelete:
		s.cancelPrefetch(w, r)
	default:
		methodNotAllowed(w, "GET, HEAD, DELETE")
	}
}

// urlFilter reads ?urls= of a prefetch job request: which URLs its answer
// lists. "all" (the default) lists every URL, "none" only the counts, and
// a comma-separated list of states (failed,cancelled) the URLs in those
// states: a client following a job of 10,000 URLs polls the counts, not
// 2 MB of URLs a second. An unknown value is answered 400 and ok is false.
func urlFilter(w http.ResponseWriter, r *http.Request) (keep func(httpmirror.PrefetchURL) bool, ok bool) {
	v := r.URL.Query().Get("urls")
	switch v {
	case "", "all":
		return nil, true
	case "none":
		return func(httpmirror.PrefetchURL) bool { return false }, true
	}
	states := map[string]bool{}
	for st := range strings.SplitSeq(v, ",") {
		switch st {
		case httpmirror.PrefetchQueued, httpmirror.PrefetchRunning, httpmirror.PrefetchDone, httpmirror.PrefetchCached,
			httpmirror.PrefetchNotStored, httpmirror.PrefetchFailed, httpmirror.PrefetchCancelled:
			states[st] = true
		default:
			writeError(w, http.StatusBadRequest, "urls must be all, none, or states separated by commas (queued, running, done, cached, not_stored, failed, cancelled)")
			return nil, false
		}
	}
	return func(u httpmirror.PrefetchURL) bool { return states[u.State] }, true
}

// filterURLs leaves the URLs of st that keep keeps (all with a nil keep).
func filterURLs(st *httpmirror.PrefetchStatus, keep func(httpmirror.PrefetchURL) bool) {
	if keep == nil {
		return
	}
	kept := st.URLs[:0]
	for _, u := range st.URLs {
		if keep(u) {
			kept = append(kept, u)
		}
	}
	st.URLs = kept
}

// cancelPrefetch cancels a job and answers with its status once its
// running URLs have stopped (they stop at once; the bound is for a
// storage backend that does not).
func (s *Server) cancelPrefetch(w http.ResponseWriter, r *http.Request) {
	keep, ok := urlFilter(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	audit(r, "id", id)
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	st, err := s.Mirror.CancelPrefetch(ctx, id)
	if err != nil {
		audit(r, "err", err.Error())
		s.fail(w, r, err)
		return
	}
	audit(r, "state", st.State, "urls", st.Total, "cancelled", st.Cancelled, "ended", st.Ended())
	filterURLs(&st, keep)
	writeJSON(w, http.StatusOK, st)
}

// prefetchStatus answers with the job's status (see waitContext), with
// the URLs urlFilter keeps.
func (s *Server) prefetchStatus(w http.ResponseWriter, r *http.Request) {
	keep, ok := urlFilter(w, r)
	if !ok {
		return
	}
	ctx, cancel, ok := waitContext(w, r)
	if !ok {
		return
	}
	defer cancel()
	st, err := s.Mirror.WaitPrefetch(ctx, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	filterURLs(&st, keep)
	writeJSON(w, http.StatusOK, st)
}

// waitContext is the context of a job status request: ?wait=D answers
// once the job has ended, or after D (at most a minute), so that a client
// follows a job without polling it in a loop. A bad D is answered 400 and
// ok is false.
func waitContext(w http.ResponseWriter, r *http.Request) (ctx context.Context, cancel context.CancelFunc, ok bool) {
	var d time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 0 || d > time.Minute {
			writeError(w, http.StatusBadRequest, "wait must be a duration from 0s to 1m")
			return nil, nil, false
		}
	}
	ctx, cancel = context.WithTimeout(r.Context(), d)
	return ctx, cancel, true
}
