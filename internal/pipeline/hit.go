package pipeline

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// sendObject acts on a Hit: the stored object's bytes, from memory with a
// prebuilt header for a plain request, else through http.ServeContent
// (Range, conditional requests, HEAD).
func (p *Pipeline) sendObject(w *responseWriter, r *http.Request, d *Decision) step {
	defer d.Close()
	p.setAge(w.Header(), d)
	if b, ok := d.Obj.(storage.InMemory); ok && plainHeader(r.Header) {
		copyHeader(w.Header(), p.hotEntry(d, int64(len(b.Bytes()))).header)
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(b.Bytes())
		}
	} else {
		p.serveBytes(w, r, d.Obj, d.Info)
	}
	return step{outcome: OutcomeHit}
}

// hotEntry returns the prebuilt header of d's object, whose body is size
// bytes: the one lookup found, or a new one.
func (p *Pipeline) hotEntry(d *Decision, size int64) *hotHeader {
	if d.hot != nil {
		return d.hot
	}
	return p.hot.entry(d.Target.key, d.Info, size, d.Fresh)
}

// sendRedirect acts on a Redirect: 302 to the signed URL of the stored object.
func (p *Pipeline) sendRedirect(w *responseWriter, r *http.Request, d *Decision) step {
	p.setAge(w.Header(), d)
	http.Redirect(w, r, d.URL, http.StatusFound)
	return step{outcome: OutcomeHit}
}

// setAge adds the Age header to the answer of a stored object whose
// freshness the origin stated: downstream caches count the time the object
// spent here (RFC 9111 section 5.1).
func (p *Pipeline) setAge(h http.Header, d *Decision) {
	if d.Fresh.Explicit {
		h["Age"] = []string{strconv.FormatInt(int64(p.age(d)/time.Second), 10)}
	}
}

func (p *Pipeline) age(d *Decision) time.Duration { return max(p.now().Sub(d.Info.StoredAt), 0) }

// HitRequest is a request as a serving loop outside net/http parsed it,
// for ServeHit.
type HitRequest struct {
	// Method is the request method.
	Method string
	// Path is the request target's path, escaped as the client sent it;
	// RawQuery is what followed '?', without it.
	Path, RawQuery string
	// Host is the Host header.
	Host string
	// Header holds the request's header fields in canonical form.
	Header http.Header
	// RemoteAddr is the client's address, for the access log.
	RemoteAddr string
}

// HitResponse is the answer ServeHit gives: a 200 whose header fields
// (without Date and Connection, which the serving loop adds) are in
// Header, in wire form, and whose body is Body, or File. Body is shared
// with the cache and must not be modified; it is nil for HEAD. Reset it
// (or use a new one) for each request.
type HitResponse struct {
	Header []byte
	Body   []byte
	// File, when not nil, is the body instead of Body: the FileSize bytes
	// of a stored object's file, to be read from its start. It implements
	// syscall.Conn, so that a TCP connection's ReadFrom sends it with
	// sendfile (through an io.LimitedReader of FileSize bytes). It stays
	// open until HitSent.
	File     io.Reader
	FileSize int64

	// What the access log needs once the response has been sent.
	start   time.Time
	host    string
	outcome Outcome

	req Request  // the request, as the pipeline sees it
	d   Decision // its decision
	x   Exchange // what the observer receives once the response is sent
}

// Reset empties r for the next request, keeping its buffer. ServeHit sets
// everything else.
func (r *HitResponse) Reset() {
	r.Header, r.Body, r.File, r.FileSize = r.Header[:0], nil, nil, 0
}

// ServeHit answers req when its decision is a plain hit, for a serving
// loop that answers such requests without net/http (cmd/httpmirror's
// public listener does, see internal/server): a GET or HEAD without
// conditions or ranges, of a stored object whose body is in memory or in
// a local file, that the client may have as it is. It fills resp and
// reports true; the loop then sends the response and calls HitSent, which
// releases the object. Otherwise it reports false, has answered nothing
// and counted nothing, and the loop hands the request to net/http: resp
// keeps the decision (HitResponse.Handover), so that ServeHTTP acts on it
// rather than deciding again.
//
// The decision is Lookup's, the one ServeHTTP acts on: ServeHit only
// writes what sendObject would for it. Its answers are those ServeHTTP
// gives the same requests, byte for byte but for the order of header
// fields.
func (p *Pipeline) ServeHit(hr *HitRequest, resp *HitResponse) bool {
	ctx := context.Background()
	var start time.Time
	if p.timed {
		start = time.Now()
	}
	resp.start, resp.host, resp.outcome = start, "", OutcomeNone
	resp.req = Request{Method: hr.Method, Path: hr.Path, RawQuery: hr.RawQuery, Host: hr.Host, Header: hr.Header, Remote: hr.RemoteAddr}
	d := &resp.d
	*d = Decision{Req: &resp.req}
	p.lookup(ctx, d)
	if d.Action != Hit || !resp.req.plain() {
		d.taken = false
		return false
	}
	var e *hotHeader
	if b, ok := d.Obj.(storage.InMemory); ok {
		e = p.hotEntry(d, int64(len(b.Bytes())))
		if hr.Method == http.MethodGet {
			// It stays valid: an in-memory object's bytes are
			// immutable.
			resp.Body = b.Bytes()
		}
	} else if _, ok := d.Obj.(syscall.Conn); ok {
		e = p.hotEntry(d, d.Info.Size)
		if hr.Method == http.MethodGet && d.Info.Size > 0 {
			resp.File, resp.FileSize = d.Obj, d.Info.Size
		}
	} else {
		d.taken = false
		return false
	}
	resp.Header = append(resp.Header, e.wire()...)
	if d.Fresh.Explicit {
		resp.Header = append(resp.Header, "Age: "...)
		resp.Header = strconv.AppendInt(resp.Header, int64(p.age(d)/time.Second), 10)
		resp.Header = append(resp.Header, "\r\n"...)
	}
	resp.start, resp.host, resp.outcome = start, d.Target.host, OutcomeHit
	if resp.File == nil {
		d.Close()
	}
	d.taken = true
	return true
}

// Handover returns the decision of a request ServeHit declined, for the
// loop to hand to net/http with the connection (see Handover); nil when
// ServeHit answered it. The decision holds what the lookup opened until
// it is acted on or closed.
func (r *HitResponse) Handover() *Handover {
	if r.d.Req == nil || r.d.taken {
		return nil
	}
	d := new(Decision)
	*d = r.d
	req := r.req
	req.Header = r.req.Header.Clone() // the loop reuses its header map
	d.Req = &req
	r.d = Decision{}
	h := new(Handover)
	h.d.Store(d)
	return h
}
