package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// The timeout tests configure small timeouts and check the order of
// events with a wide margin: the server ends the connection well before
// the client has been silent, or dripping, for ten times the timeout.

// loopTimeouts sets the loop's header and idle timeouts.
func loopTimeouts(header, idle time.Duration) func(*Server) {
	return func(s *Server) { s.ReadHeaderTimeout, s.IdleTimeout = header, idle }
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A new connection has the header timeout, counted from the accept, to
// send its first request's header, as on net/http: a client that sends
// nothing, or drips a header, is not an idle keep-alive connection.
func TestFirstRequestHeaderTimeout(t *testing.T) {
	const header = 200 * time.Millisecond
	_, _, addr := start(t, loopTimeouts(header, time.Minute))
	for name, raw := range map[string]string{
		"silent": "",
		// 16 bytes every 20 ms: the 2 KiB header would be complete
		// only after 2.5 s.
		"dripped within the buffer": get("/hit/a", "X-Pad: "+strings.Repeat("a", 2<<10)+"\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, addr)
			testutil.Drip(t, c, raw, 16, 20*time.Millisecond)
			testutil.ExpectClosed(t, c, 10*header)
		})
	}
}

// A header that outgrows the loop's buffer is read on by net/http within
// the deadline the loop started: the hand-over gives the client no fresh
// header timeout, whether net/http's own is longer or there is none.
func TestHeaderTimeoutAcrossTheHandOver(t *testing.T) {
	const header = 300 * time.Millisecond
	for name, httpTimeout := range map[string]time.Duration{"longer on net/http": time.Minute, "none on net/http": 0} {
		t.Run(name, func(t *testing.T) {
			_, _, addr := start(t, loopTimeouts(header, time.Minute), func(s *Server) {
				s.HTTP.ReadHeaderTimeout = httpTimeout
			})
			c := dial(t, addr)
			// Nearly the whole buffer at once, then 64 bytes every
			// 20 ms: the header passes 4 KiB (and goes to net/http)
			// within about 100 ms, and would stay under MaxHeaderBytes
			// for 18 s.
			head := "GET /hit/a HTTP/1.1\r\nHost: m\r\nX-Pad: "
			io.WriteString(c, head+strings.Repeat("a", headBufSize-len(head)-200))
			testutil.Drip(t, c, strings.Repeat("a", 56<<10), 64, 20*time.Millisecond)
			testutil.ExpectClosed(t, c, 10*header)
		})
	}
}

// Between requests a client may stay silent for the idle timeout; the
// header timeout starts with its next request's first byte.
func TestKeepAliveIdleThenHeaderTimeout(t *testing.T) {
	const header = 200 * time.Millisecond
	_, _, addr := start(t, loopTimeouts(header, time.Minute))
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		if i > 0 {
			<-time.After(5 * header) // silent, but well within the idle timeout
		}
		io.WriteString(c, get("/hit/a"))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v; want an answer", i, err)
		}
		io.Copy(io.Discard, resp.Body)
	}
	testutil.Drip(t, c, get("/hit/b", "X-Pad: "+strings.Repeat("a", 2<<10)+"\r\n"), 16, 20*time.Millisecond)
	testutil.ExpectClosed(t, c, 10*header)
}

// A client that pipelines requests and never reads its answers is
// disconnected once a response has waited the idle timeout to be sent.
func TestPipelinedAnswersNeverRead(t *testing.T) {
	const idle = 300 * time.Millisecond
	_, hits, addr := start(t, loopTimeouts(200*time.Millisecond, idle))
	c := dial(t, addr)
	c.(*net.TCPConn).SetReadBuffer(16 << 10)
	// 64 MiB of answers: far more than the sockets' buffers hold.
	io.WriteString(c, strings.Repeat(get("/big/a"), 64))
	select {
	case <-hits.aborted:
	case <-time.After(10 * idle):
		t.Fatalf("no response aborted after %v; want the stalled write cut", 10*idle)
	}
	testutil.ExpectClosed(t, c, 10*time.Second)
}

// A request handed to net/http runs as long as it takes: neither the
// loop's header deadline nor its write deadline for the answer before
// applies to it (net/http's request context would be cancelled by an
// expired read deadline).
func TestHandedOffRequestOutlivesTheLoopDeadlines(t *testing.T) {
	const header, idle = 200 * time.Millisecond, 300 * time.Millisecond
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first part, ")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			io.WriteString(w, "request cancelled")
		case <-time.After(5 * idle):
			io.WriteString(w, "second part")
		}
	})
	for name, httpTimeout := range map[string]time.Duration{"net/http header timeout": ReadHeaderTimeout, "none on net/http": 0} {
		_, _, addr := start(t, loopTimeouts(header, idle), func(s *Server) {
			s.HTTP.Handler = slow
			s.HTTP.ReadHeaderTimeout = httpTimeout
		})
		for req, raw := range map[string]string{
			"after a hit":       get("/hit/a") + get("/slow/b"),
			"header over 4 KiB": get("/slow/b", "X-Pad: "+strings.Repeat("a", 8<<10)+"\r\n"),
		} {
			t.Run(name+"/"+req, func(t *testing.T) {
				t.Parallel()
				rs := exchange(t, addr, raw, strings.Count(raw, "GET "))
				if got := rs[len(rs)-1].Header.Get("X-Body"); got != "first part, second part" {
					t.Errorf("handed-off answer %q; want %q", got, "first part, second part")
				}
			})
		}
	}
}
