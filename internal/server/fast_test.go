package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
)

// fakeHits answers GET and HEAD of /hit/... (and of /big/..., with a
// 1 MiB body) from memory; everything else goes to net/http, whose handler
// marks its answers.
type fakeHits struct {
	sent    atomic.Int64  // responses recorded by HitSent
	aborted chan struct{} // when not nil, receives a value for each aborted response
	// file, when set, answers /file/... with its bytes, sent from the
	// file (a new descriptor per request, closed by HitSent).
	file string
	size int64
}

var bigBody = strings.Repeat("x", 1<<20)

func (f *fakeHits) ServeHit(req *httpmirror.HitRequest, resp *httpmirror.HitResponse) bool {
	var body string
	switch {
	case strings.HasPrefix(req.Path, "/file/") && f.file != "":
		resp.Header = append(resp.Header, "Content-Length: "...)
		resp.Header = strconv.AppendInt(resp.Header, f.size, 10)
		resp.Header = append(resp.Header, "\r\n"...)
		if req.Method == http.MethodGet {
			file, err := os.Open(f.file)
			if err != nil {
				return false
			}
			resp.File, resp.FileSize = file, f.size
		}
		return true
	case strings.HasPrefix(req.Path, "/hit/"):
		body = "body of " + req.Path
	case strings.HasPrefix(req.Path, "/big/"):
		body = bigBody
	default:
		return false
	}
	resp.Header = append(resp.Header, "Content-Length: "...)
	resp.Header = strconv.AppendInt(resp.Header, int64(len(body)), 10)
	resp.Header = append(resp.Header, "\r\nContent-Type: text/plain\r\n"...)
	if req.Method == http.MethodGet {
		resp.Body = []byte(body)
	}
	return true
}

func (f *fakeHits) HitSent(_ *httpmirror.HitRequest, resp *httpmirror.HitResponse, _ int64, aborted bool) {
	if c, ok := resp.File.(io.Closer); ok {
		c.Close()
	}
	f.sent.Add(1)
	if aborted && f.aborted != nil {
		select {
		case f.aborted <- struct{}{}:
		default:
		}
	}
}

// start serves a fakeHits loop in front of a net/http handler that answers
// "net/http <path>" with X-Path: net/http.
func start(t *testing.T, configure ...func(*Server)) (*Server, *fakeHits, string) {
	t.Helper()
	return startHits(t, &fakeHits{aborted: make(chan struct{}, 1)}, configure...)
}

// startHits is start with the fake hits.
func startHits(t *testing.T, hits *fakeHits, configure ...func(*Server)) (*Server, *fakeHits, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Path", "net/http")
			io.WriteString(w, "net/http "+r.URL.Path)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	Configure(srv)
	s := &Server{HTTP: srv, Hits: hits}
	for _, c := range configure {
		c(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v; want ErrServerClosed", err)
		}
	})
	return s, hits, ln.Addr().String()
}

// exchange writes raw on a new connection and reads n responses.
func exchange(t *testing.T, addr, raw string, n int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		resp.Header.Set("X-Body", string(body))
		out = append(out, resp)
	}
	return out
}

func get(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: m\r\n" + strings.Join(extra, "") + "\r\n"
}

// Pipelined requests get their answers in order, from the loop while it
// can answer, then from net/http, which keeps the connection.
func TestPipeliningAcrossTheHandOver(t *testing.T) {
	_, hits, addr := start(t)
	rs := exchange(t, addr, get("/hit/a")+get("/hit/b")+get("/miss/c")+get("/hit/d"), 4)
	for i, want := range []struct{ body, via string }{
		{"body of /hit/a", ""}, {"body of /hit/b", ""}, {"net/http /miss/c", "net/http"}, {"net/http /hit/d", "net/http"},
	} {
		r := rs[i]
		if r.StatusCode != 200 || r.Header.Get("X-Body") != want.body || r.Header.Get("X-Path") != want.via {
			t.Errorf("response %d: %d %q via %q; want 200 %q via %q", i, r.StatusCode, r.Header.Get("X-Body"), r.Header.Get("X-Path"), want.body, want.via)
		}
		if r.Header.Get("Date") == "" || r.Close {
			t.Errorf("response %d: Date %q, close %v; want a Date and keep-alive", i, r.Header.Get("Date"), r.Close)
		}
	}
	if n := hits.sent.Load(); n != 2 {
		t.Errorf("%d loop responses recorded; want 2", n)
	}
}

// headThenClose sends, on a new connection to addr, a HEAD of head and
// a GET of path with Connection: close, and returns all the server sent
// until it closed.
func headThenClose(t *testing.T, addr, head, path string) []byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "HEAD "+head+" HTTP/1.1\r\nHost: m\r\n\r\n"+get(path, "Connection: close\r\n"))
	all, err := io.ReadAll(c) // ends only when the server closes
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// HEAD has no body; Connection: close is honoured and answered.
func TestHeadAndClose(t *testing.T) {
	_, _, addr := start(t)
	all := headThenClose(t, addr, "/hit/x", "/hit/y")
	s := string(all)
	if strings.Count(s, "HTTP/1.1 200 OK\r\n") != 2 || strings.Contains(s, "body of /hit/x") ||
		!strings.HasSuffix(s, "body of /hit/y") || !strings.Contains(s, "Connection: close\r\n") {
		t.Fatalf("answers:\n%s", s)
	}
}

// What the loop does not answer goes to net/http, which answers it as it
// always does.
func TestOthersGoToNetHTTP(t *testing.T) {
	_, _, addr := start(t)
	big := strings.Repeat("x", 8<<10)
	for name, c := range map[string]struct {
		raw    string
		status int
		via    string
	}{
		"HTTP/1.0":             {"GET /hit/a HTTP/1.0\r\nHost: m\r\n\r\n", 200, "net/http"},
		"POST":                 {"POST /hit/a HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\nhi", 200, "net/http"},
		"GET with a body":      {"GET /hit/a HTTP/1.1\r\nHost: m\r\nContent-Length: 2\r\n\r\nhi", 200, "net/http"},
		"header over 4 KiB":    {get("/hit/a", "X-Big: "+big+"\r\n"), 200, "net/http"},
		"header over 64 KiB":   {get("/hit/a", "X-Big: "+strings.Repeat(big, 9)+"\r\n"), 431, ""},
		"no Host":              {"GET /hit/a HTTP/1.1\r\n\r\n", 400, ""},
		"two Hosts":            {"GET /hit/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, ""},
		"bad Host":             {"GET /hit/a HTTP/1.1\r\nHost: a b\r\n\r\n", 400, ""},
		"bad header":           {get("/hit/a", "Bad Name: x\r\n"), 400, ""},
		"absolute form":        {"GET http://m/hit/a HTTP/1.1\r\nHost: m\r\n\r\n", 200, "net/http"},
		"escaped odd byte":     {get("/hit/a%20b"), 200, ""},
		"raw odd byte":         {get("/hit/a\"b"), 200, "net/http"},
		"upgrade":              {get("/hit/a", "Connection: Upgrade\r\nUpgrade: websocket\r\n"), 200, "net/http"},
		"expect 100-continue":  {get("/hit/a", "Expect: 100-continue\r\n"), 200, "net/http"},
		"lower-case host name": {"GET /hit/a HTTP/1.1\r\nhost: m\r\n\r\n", 200, ""},
	} {
		t.Run(name, func(t *testing.T) {
			r := exchange(t, addr, c.raw, 1)[0]
			if r.StatusCode != c.status || r.Header.Get("X-Path") != c.via {
				t.Errorf("%d via %q; want %d via %q", r.StatusCode, r.Header.Get("X-Path"), c.status, c.via)
			}
		})
	}
}

// A client that sends its header too slowly, or stays idle too long, is
// disconnected by the loop itself (net/http's limits do not apply until a
// connection is handed over).
func TestLoopTimeouts(t *testing.T) {
	_, _, addr := start(t, func(s *Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	})
	for name, raw := range map[string]string{"slow header": "GET /hit/a HTTP/1.1\r\nHost: m\r\n", "idle": ""} {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, raw)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(make([]byte, 1))
			if n != 0 || err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				t.Fatalf("read %d bytes, %v; want the server to close the connection", n, err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Shutdown ends idle connections and returns; later connections are
// refused.
func TestShutdown(t *testing.T) {
	s, _, addr := start(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, get("/hit/a"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("idle connection after Shutdown: %v; want it closed", err)
	}
	if c2, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c2.Close()
		t.Fatal("a new connection was accepted after Shutdown")
	}
}

// fileHits returns fake hits that answer /file/... from a new file of
// size bytes, and its content.
func fileHits(t *testing.T, size int64) (*fakeHits, []byte) {
	data := bytes.Repeat([]byte("0123456789abcdef"), int(size/16)+1)[:size]
	for i := range data {
		data[i] ^= byte(i >> 12) // no two chunks alike
	}
	f := &fakeHits{aborted: make(chan struct{}, 1), file: filepath.Join(t.TempDir(), "body"), size: size}
	if err := os.WriteFile(f.file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return f, data
}

// Bodies from files go out whole, beyond one chunk of the loop's
// deadline, in order with bodies from memory on the same connection; a
// HEAD of one gets its header alone.
func TestFileBodies(t *testing.T) {
	hits, data := fileHits(t, fileChunk+5000)
	_, _, addr := startHits(t, hits)
	rs := exchange(t, addr, get("/file/a")+get("/hit/b")+get("/file/c"), 3)
	for i, want := range []string{string(data), "body of /hit/b", string(data)} {
		if got := rs[i].Header.Get("X-Body"); rs[i].StatusCode != 200 || got != want || rs[i].Header.Get("X-Path") != "" {
			t.Errorf("answer %d: %d via %q, %d bytes; want 200 from the loop, %d bytes", i, rs[i].StatusCode, rs[i].Header.Get("X-Path"), len(got), len(want))
		}
	}
	all := headThenClose(t, addr, "/file/x", "/hit/y")
	want := "HTTP/1.1 200 OK\r\n"
	if s := string(all); strings.Count(s, want) != 2 || !strings.Contains(s, fmt.Sprintf("Content-Length: %d\r\n", len(data))) || !strings.HasSuffix(s, "\r\n\r\nbody of /hit/y") {
		t.Errorf("HEAD, then GET: %d bytes:\n%.300s", len(all), s)
	}
	if n := hits.sent.Load(); n != 5 {
		t.Errorf("%d loop responses recorded; want 5", n)
	}
}

// A client that stops reading a body from a file is cut off once it has
// taken nothing for the idle timeout, and the response is recorded as
// aborted.
func TestFileBodyToAClientNotReading(t *testing.T) {
	hits, data := fileHits(t, 64<<20)
	_, _, addr := startHits(t, hits, func(s *Server) {
		s.IdleTimeout = 300 * time.Millisecond
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, get("/file/a"))
	select {
	case <-hits.aborted:
	case <-time.After(20 * time.Second):
		t.Fatal("the response to a client not reading was not aborted")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if err != nil || n >= int64(len(data)) {
		t.Fatalf("client read %d bytes, %v; want less than the %d of the body, then the end of the connection", n, err, len(data))
	}
}
