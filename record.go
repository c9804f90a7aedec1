package httpmirror

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// recorder wraps a ResponseWriter to learn the status and body size of a
// response, and carries the request's outcome and upstream host for the
// access log and metrics. The handler passes it explicitly to everything
// that serves a request. It keeps ReadFrom, so bodies
// from local files still go out through sendfile, and Unwrap, so
// http.ResponseController reaches the connection.
type recorder struct {
	http.ResponseWriter
	status  int
	bytes   int64
	outcome outcome
	host    string // upstream host, once resolved
	retried bool   // a failed fill the request joined was retried (see serveFetch)
	// encoding is a stored object's Content-Encoding, added when a
	// successful status is written (see setObjectHeaders).
	encoding []string
}

var recorders = sync.Pool{New: func() any { return new(recorder) }}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 && code >= 200 {
		rec.begin(code)
	}
	rec.ResponseWriter.WriteHeader(code)
}

// begin records the final status, just before it is written.
func (rec *recorder) begin(code int) {
	rec.status = code
	if rec.encoding != nil && (code < 300 || code == http.StatusNotModified) {
		rec.ResponseWriter.Header()["Content-Encoding"] = rec.encoding
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.status == 0 {
		rec.begin(http.StatusOK)
	}
	n, err := rec.ResponseWriter.Write(p)
	rec.bytes += int64(n)
	return n, err
}

func (rec *recorder) ReadFrom(src io.Reader) (int64, error) {
	if rec.status == 0 {
		rec.begin(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := rec.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(rec.ResponseWriter, src)
	}
	rec.bytes += n
	return n, err
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// finish records a finished (or aborted) request in the metrics and the
// access log.
func (m *MirrorHandler) finish(rec *recorder, r *http.Request, start time.Time, aborted bool) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
		if r.Context().Err() != nil {
			status = StatusClientClosedRequest
		}
	}
	m.Metrics.request(rec.outcome, status, rec.bytes)
	if start.IsZero() {
		return // no access log
	}
	m.logRequest(r.Context(), &accessEntry{
		method: r.Method, host: rec.host, path: logPath(r.URL.Path), status: status, bytes: rec.bytes,
		duration: time.Since(start), outcome: rec.outcome, remote: r.RemoteAddr, aborted: aborted,
	})
}
