package pipeline

import (
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 section 7.6.1, which a
// proxy must not forward, in either direction.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// copyEndToEnd copies the end-to-end headers of src into dst: everything
// but the hop-by-hop headers and those src's Connection header lists.
func copyEndToEnd(dst, src http.Header) {
	var listed map[string]bool
	for _, v := range src["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				if listed == nil {
					listed = make(map[string]bool)
				}
				listed[textproto.CanonicalMIMEHeaderKey(f)] = true
			}
		}
	}
next:
	for k, v := range src {
		if listed[k] {
			continue
		}
		for _, h := range hopHeaders {
			if k == h {
				continue next
			}
		}
		dst[k] = append([]string(nil), v...)
	}
}

// direct acts on a Direct decision: it proxies r to its origin without
// caching (when there is no cache, or for a request the cache must not
// answer): the client's end-to-end headers go upstream, and the origin's
// status, end-to-end headers and body come back. X-Forwarded-* headers are
// neither added nor passed on: origins are third parties and learn nothing
// about the mirror's clients.
func (p *Pipeline) direct(w *responseWriter, r *http.Request, d *Decision) step {
	ctx := r.Context()
	h := make(http.Header, len(r.Header))
	copyEndToEnd(h, r.Header)
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "X-Real-Ip"} {
		h.Del(k)
	}
	resp, err := p.upstream(ctx, r.Method, d.Target.url(p.cfg.Scheme), h)
	if err != nil {
		if ctx.Err() == nil {
			p.obs.UpstreamError(Classify(ctx, err).Kind)
		}
		return step{outcome: OutcomeDirect, next: d.fail(err)}
	}
	defer resp.Body.Close()
	copyEndToEnd(w.Header(), resp.Header)
	if resp.StatusCode == http.StatusTooManyRequests {
		// As for a 429 of a fill (fail): seconds, the origin's or a
		// default, so that every 429 a client gets says when to retry.
		w.Header().Set("Retry-After", strconv.Itoa(RetryAfter(resp.Header, p.now())))
	}
	if resp.ContentLength < 0 {
		w.Header().Del("Content-Length")
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return step{outcome: OutcomeDirect}
	}
	copyBody := copyFlushing // a body of unknown length goes out as it comes
	if resp.ContentLength >= 0 {
		copyBody = func(w http.ResponseWriter, body io.Reader) error {
			_, err := io.Copy(w, body)
			return err
		}
	}
	if err := copyBody(w, resp.Body); err != nil {
		return step{outcome: OutcomeDirect, abort: &abortError{d.Target.key, err}}
	}
	return step{outcome: OutcomeDirect}
}

// copyFlushing copies a body of unknown length, flushing after every read
// so the client sees bytes as soon as the origin sends them.
func copyFlushing(w http.ResponseWriter, body io.Reader) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			rc.Flush()
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
