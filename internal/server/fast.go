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
)

// Hits answers plain hits outside net/http; *httpmirror.MirrorHandler
// implements it.
type Hits interface {
	ServeHit(*httpmirror.HitRequest, *httpmirror.HitResponse) bool
	HitSent(req *httpmirror.HitRequest, resp *httpmirror.HitResponse, sent int64, aborted bool)
}

// Server serves a listener with two paths. Each connection starts on a
// small HTTP/1.1 loop of its own that answers plain hits of small cached
// objects (Hits.ServeHit) with one write system call and no per-request
// work of net/http's: the hit path of package indexes and metadata, what a
// mirror spends most of its requests on. The first request it does not
// answer (a miss, a range, a conditional request, any error, anything but
// a simple GET or HEAD over HTTP/1.1) hands the connection, that request
// included, to HTTP, a net/http server with the same handler, which serves
// it from then on. A client therefore sees one HTTP/1.1 server: keep-alive
// and pipelining work across the hand-over, and the limits are the same
// (request headers that do not fit the loop's buffer go to net/http, which
// answers 431 past MaxHeaderBytes).
type Server struct {
	// HTTP serves every request the loop does not answer. Configure it as
	// any public server (see Configure); Server runs it.
	HTTP *http.Server
	// Hits answers the plain hits.
	Hits Hits
	// ReadHeaderTimeout and IdleTimeout are the loop's limits for reading
	// a request's header and for waiting for the next request. Zero means
	// the package's constants (net/http's are set by Configure).
	ReadHeaderTimeout, IdleTimeout time.Duration

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
	s.handoff = newHandoffListener(ln.Addr())
	s.mu.Unlock()
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
	for {
		if c.s.closing.Load() {
			return false
		}
		c.c.SetReadDeadline(time.Now().Add(cmp.Or(c.s.IdleTimeout, IdleTimeout)))
		if _, err := c.br.Peek(1); err != nil {
			return false
		}
		c.c.SetReadDeadline(time.Now().Add(cmp.Or(c.s.ReadHeaderTimeout, ReadHeaderTimeout)))
		n, close, ok, err := c.readRequest()
		if err != nil {
			return false // the client went away, or was too slow
		}
		if !ok {
			return c.handOff()
		}
		c.resp.Reset()
		if !c.s.Hits.ServeHit(&c.req, &c.resp) {
			return c.handOff()
		}
		c.br.Discard(n)
		sent, err := c.write(close)
		c.s.Hits.HitSent(&c.req, &c.resp, sent, err != nil)
		if err != nil || close {
			return false
		}
	}
}

// handOff gives the connection, with the bytes read but not consumed, to
// net/http.
func (c *conn) handOff() bool {
	if c.s.closing.Load() {
		return false
	}
	c.c.SetReadDeadline(time.Time{})
	return c.s.handoff.push(&handoffConn{Conn: c.c, r: c.br})
}

// write sends the response: the status line, Date, the hit's header
// fields, Connection when closing, and the body, in one writev.
func (c *conn) write(close bool) (int64, error) {
	h := append(c.head[:0], "HTTP/1.1 200 OK\r\nDate: "...)
	h = append(h, date()...)
	h = append(h, "\r\n"...)
	h = append(h, c.resp.Header...)
	if close {
		h = append(h, "Connection: close\r\n"...)
	}
	h = append(h, "\r\n"...)
	c.head = h
	c.out = append(c.out[:0], h, c.resp.Body)
	bufs := c.out // WriteTo consumes the slice
	n, err := bufs.WriteTo(c.c)
	return max(n-int64(len(h)), 0), err
}

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
// ones the loop read and did not consume.
type handoffConn struct {
	net.Conn
	r io.Reader
}

func (c *handoffConn) Read(p []byte) (int, error) { return c.r.Read(p) }

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
