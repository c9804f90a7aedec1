package server

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/pipeline"
)

// Hits answers plain hits outside net/http; *httpmirror.MirrorHandler
// implements it.
type Hits interface {
	ServeHit(*httpmirror.HitRequest, *httpmirror.HitResponse) bool
	HitSent(req *httpmirror.HitRequest, resp *httpmirror.HitResponse, sent int64, aborted bool)
}

// Server serves a listener with two paths. Each connection starts on a
// small HTTP/1.1 loop of its own that answers plain hits of cached objects
// (Hits.ServeHit) with no per-request work of net/http's: one write system
// call for an object in memory, a header held for the first packet and
// sendfile for one in a file. That is the hit path of package indexes,
// metadata and the many files of a package mirror, what a mirror spends
// most of its requests on. The first request it does not
// answer (a miss, a range, a conditional request, any error, anything but
// a simple GET or HEAD over HTTP/1.1) hands the connection, that request
// included, to HTTP, a net/http server with the same handler, which serves
// it from then on. A client therefore sees one HTTP/1.1 server: keep-alive
// and pipelining work across the hand-over, and the limits are the same
// (request headers that do not fit the loop's buffer go to net/http, which
// answers 431 past MaxHeaderBytes, and a request's header deadline runs on
// across the hand-over).
type Server struct {
	// HTTP serves every request the loop does not answer. Configure it as
	// any public server (see Configure); Server runs it.
	HTTP *http.Server
	// Hits answers the plain hits.
	Hits Hits
	// ReadHeaderTimeout bounds the reading of a request's header on the
	// loop: of the first one from the accept, as net/http counts it, and
	// of later ones from their first byte. A header the loop hands over
	// unfinished keeps its deadline on net/http.
	//
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection, and the sending of each of the loop's answers.
	//
	// Zero means HTTP's (as Configure sets them), or the package's
	// constants when those are zero too.
	ReadHeaderTimeout, IdleTimeout time.Duration

	header, idle time.Duration // the timeouts in effect
	// httpHeaderDeadline: HTTP sets a read deadline before it reads a
	// connection's first request header (see handoffConn).
	httpHeaderDeadline bool

	handoff *handoffListener
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	ln      net.Listener
	closing atomic.Bool
	wg      sync.WaitGroup
}

// headBufSize is the loop's read buffer: a request whose header does not
// fit goes to net/http.
const headBufSize = 4 << 10

// Serve accepts connections on ln until Shutdown or Close; it returns
// http.ErrServerClosed then, or the error that stopped it.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.conns = make(map[net.Conn]struct{})
	s.header = positive(s.ReadHeaderTimeout, s.HTTP.ReadHeaderTimeout, ReadHeaderTimeout)
	s.idle = positive(s.IdleTimeout, s.HTTP.IdleTimeout, IdleTimeout)
	// net/http's rule (Server.readHeaderTimeout in net/http/server.go).
	s.httpHeaderDeadline = cmp.Or(s.HTTP.ReadHeaderTimeout, s.HTTP.ReadTimeout) > 0
	s.handoff = newHandoffListener(ln.Addr())
	s.mu.Unlock()
	// The handler finds the decision the loop made for a request it
	// handed over in the request's context.
	connContext := s.HTTP.ConnContext
	s.HTTP.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if connContext != nil {
			ctx = connContext(ctx, c)
		}
		if hc, ok := c.(*handoffConn); ok && hc.handover != nil {
			ctx = hc.handover.Context(ctx)
		}
		return ctx
	}
	// It returns when Shutdown or Close closes the hand-off listener.
	go s.HTTP.Serve(s.handoff)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of file descriptors and the like: back off, as
				// net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if !s.track(c, true) {
			c.Close()
			return http.ErrServerClosed
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// positive returns the first of ds above zero.
func positive(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d > 0 {
			return d
		}
	}
	return 0
}

// track adds c to (or removes it from) the connections the loop serves.
func (s *Server) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// Shutdown stops accepting, ends the loop's idle connections (those in a
// request finish it first), then shuts HTTP down, which waits for its
// requests in flight, until ctx is done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.HTTP.Shutdown(ctx)
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error {
	s.stop()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	return s.HTTP.Close()
}

func (s *Server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Swap(true) {
		return
	}
	if s.ln != nil {
		s.ln.Close()
	}
	// A connection waiting for its next request stops waiting; one in the
	// middle of a response finishes it, then sees closing.
	now := time.Now()
	for c := range s.conns {
		c.SetReadDeadline(now)
	}
}

// conn is one connection on the loop.
type conn struct {
	s      *Server
	c      net.Conn
	br     *bufio.Reader
	remote string
	header time.Time // the deadline of the current request's header
	req    httpmirror.HitRequest
	resp   httpmirror.HitResponse
	head   []byte
	out    net.Buffers
}

var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headBufSize) }}

func (s *Server) serveConn(nc net.Conn) {
	defer s.wg.Done()
	br := readers.Get().(*bufio.Reader)
	br.Reset(nc)
	c := &conn{s: s, c: nc, br: br, remote: nc.RemoteAddr().String()}
	c.req.Header = make(http.Header)
	c.req.RemoteAddr = c.remote
	handedOff := c.loop()
	s.track(nc, false)
	if !handedOff {
		nc.Close()
		br.Reset(nil)
		readers.Put(br)
	}
}

// loop answers requests until the connection ends (false) or is handed to
// net/http (true).
func (c *conn) loop() bool {
	// A new connection is not idle between requests: it has the header
	// timeout, from the accept, to send its first request's header, as on
	// net/http, whether it sends nothing or drips.
	c.header = time.Now().Add(c.s.header)
	if !c.setReadDeadline(c.header) {
		return false
	}
	for first := true; ; first = false {
		if !first {
			// Between requests a client may stay silent for the idle
			// timeout; the header timeout starts with the next
			// request's first byte (net/http waits the same way).
			if !c.setReadDeadline(time.Now().Add(c.s.idle)) {
				return false
			}
			if _, err := c.br.Peek(1); err != nil {
				return false
			}
			c.header = time.Now().Add(c.s.header)
			c.c.SetReadDeadline(c.header)
		}
		n, close, ok, err := c.readRequest()
		if err != nil {
			return false // the client went away, or was too slow
		}
		if !ok {
			return c.handOff(nil)
		}
		c.resp.Reset()
		if !c.s.Hits.ServeHit(&c.req, &c.resp) {
			// The decision made for the request serves it on net/http.
			return c.handOff(c.resp.Handover())
		}
		c.br.Discard(n)
		sent, err := c.write(close)
		c.s.Hits.HitSent(&c.req, &c.resp, sent, err != nil)
		if err != nil || close {
			return false
		}
	}
}

// setReadDeadline sets the connection's read deadline, and reports false
// when the server is closing: stop sets every connection's deadline to now
// once closing is set, which a deadline set after it must not undo.
func (c *conn) setReadDeadline(t time.Time) bool {
	c.c.SetReadDeadline(t)
	return !c.s.closing.Load()
}

// handOff gives the connection, with the bytes read but not consumed, and
// the decision made for the request it declined (nil when it made none),
// to net/http.
func (c *conn) handOff(h *pipeline.Handover) bool {
	if c.s.closing.Load() {
		if h != nil {
			h.Close()
		}
		return false
	}
	// The read deadline stays: it is the deadline of the header of the
	// request handed over, which net/http may still be reading (see
	// handoffConn). The write deadline of the loop's last answer must
	// not cut net/http's answers, which may take hours.
	c.c.SetWriteDeadline(time.Time{})
	hc := &handoffConn{Conn: c.c, r: c.br, header: c.header, handover: h}
	hc.capHeader.Store(c.s.httpHeaderDeadline)
	if !c.s.handoff.push(hc) {
		hc.closeHandover()
		return false
	}
	return true
}

// write sends the response: the status line, Date, the hit's header
// fields, Connection when closing, and the body: from memory in one
// writev, or from a file with the header held back for the body's first
// packet (see writeHeader) and the body sent by sendfile.
//
// Its deadline is the idle timeout, for the answer from memory and for
// each fileChunk of a file: a client that has not taken them in the time
// it could anyway hold the connection silent between requests has stopped
// reading (as one does that pipelines requests and never reads the
// answers, until the socket buffers are full); without a deadline the
// write would wait for it forever.
func (c *conn) write(close bool) (int64, error) {
	c.c.SetWriteDeadline(time.Now().Add(c.s.idle))
	h := append(c.head[:0], "HTTP/1.1 200 OK\r\nDate: "...)
	h = append(h, date()...)
	h = append(h, "\r\n"...)
	h = append(h, c.resp.Header...)
	if close {
		h = append(h, "Connection: close\r\n"...)
	}
	h = append(h, "\r\n"...)
	c.head = h
	if c.resp.File == nil {
		c.out = append(c.out[:0], h, c.resp.Body)
		bufs := c.out // WriteTo consumes the slice
		n, err := bufs.WriteTo(c.c)
		return max(n-int64(len(h)), 0), err
	}
	if err := writeHeader(c.c, h); err != nil {
		return 0, err
	}
	var sent int64
	for sent < c.resp.FileSize {
		if sent > 0 {
			c.c.SetWriteDeadline(time.Now().Add(c.s.idle))
		}
		// TCPConn.ReadFrom sends a file's bytes with sendfile.
		n, err := io.Copy(c.c, &io.LimitedReader{R: c.resp.File, N: min(fileChunk, c.resp.FileSize-sent)})
		sent += n
		if err != nil {
			return sent, err
		}
		if n == 0 {
			return sent, io.ErrUnexpectedEOF // the file is shorter than its object
		}
	}
	return sent, nil
}

// fileChunk is how much of a file the loop sends within one deadline.
const fileChunk = 4 << 20

// readRequest reads the next request's head from the buffer and parses
// it into c.req. It reports the head's length, whether the client asked to
// close the connection, and false when the request is not one for the loop
// (or not complete within the buffer): net/http then reads it again. An
// error means the connection ended or the header took too long.
func (c *conn) readRequest() (n int, close, ok bool, err error) {
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			ok := parseRequest(buf[:i+2], &c.req, &close)
			return i + 4, close, ok, nil
		}
		if c.br.Buffered() == c.br.Size() {
			return 0, false, false, nil // a large header: net/http's business
		}
		if _, err := c.br.Peek(c.br.Buffered() + 1); err != nil {
			return 0, false, false, err
		}
	}
}

// handoffConn is a connection handed to net/http: its first bytes are the
// ones the loop read and did not consume, and the header of its first
// request keeps the deadline the loop set for it.
type handoffConn struct {
	net.Conn
	r io.Reader
	// header is the deadline of the first request's header. net/http
	// (conn.serve in net/http/server.go) sets a read deadline, now plus
	// its ReadHeaderTimeout, before it reads that header, on its serving
	// goroutine, before any other deadline and before any other goroutine
	// uses the connection; when it will (capHeader), that one deadline is
	// capped to header, so that the hand-over gives a slow client no
	// fresh header timeout. The deadlines it sets later pass unchanged:
	// it clears the deadline once the header is read, and before its
	// background read during a request, which would cancel the request's
	// context if the deadline expired. When net/http sets no header
	// deadline, the loop's stays on the connection until that clearing.
	header    time.Time
	capHeader atomic.Bool
	// handover is the decision the loop made for the request it handed
	// over, for the handler (through the connection's context, see
	// Serve); nil when it made none.
	handover *pipeline.Handover
}

func (c *handoffConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Close closes the connection and releases a decision no request took.
func (c *handoffConn) Close() error {
	c.closeHandover()
	return c.Conn.Close()
}

func (c *handoffConn) closeHandover() {
	if c.handover != nil {
		c.handover.Close()
	}
}

func (c *handoffConn) SetReadDeadline(t time.Time) error {
	if c.capHeader.CompareAndSwap(true, false) && (t.IsZero() || t.After(c.header)) {
		t = c.header
	}
	return c.Conn.SetReadDeadline(t)
}

// ReadFrom keeps sendfile for net/http's responses from files.
func (c *handoffConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}

// CloseWrite lets net/http close its side gracefully after a bad request.
func (c *handoffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handoffListener is the listener HTTP serves: it yields the connections
// the loop hands over.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// push hands c over; false when the listener is closed.
func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// The Date header of the current second, built once a second.
var dateCache atomic.Pointer[dateEntry]

type dateEntry struct {
	sec   int64
	value []byte
}

func date() []byte {
	now := time.Now()
	if e := dateCache.Load(); e != nil && e.sec == now.Unix() {
		return e.value
	}
	e := &dateEntry{sec: now.Unix(), value: now.UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(e)
	return e.value
}

// StartPublic serves h on a new listener on 127.0.0.1 the way the
// httpmirror command serves its public listener: the limits of Configure,
// plain hits on the loop when h answers them (Hits), everything else with
// net/http. It returns the server and its base URL; tests use it so that
// they exercise what the command runs.
func StartPublic(h http.Handler) (*Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	Configure(srv)
	s := &Server{HTTP: srv}
	if hits, ok := h.(Hits); ok {
		s.Hits = hits
	} else {
		s.Hits = noHits{}
	}
	go s.Serve(ln)
	return s, "http://" + ln.Addr().String(), nil
}

// noHits answers no request on the loop.
type noHits struct{}

func (noHits) ServeHit(*httpmirror.HitRequest, *httpmirror.HitResponse) bool        { return false }
func (noHits) HitSent(*httpmirror.HitRequest, *httpmirror.HitResponse, int64, bool) {}
