package main_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// The listeners' header and idle timeouts in the tests below: the command
// built with the tag httpmirror_testlimits takes them from the environment
// (internal/server/limits_testbuild.go). The tests check the order of
// events with a wide margin: the server ends a connection well before the
// client has been silent, or dripping, for ten times the timeout.
const (
	testHeaderTimeout = 300 * time.Millisecond
	testIdleTimeout   = 300 * time.Millisecond
)

var (
	limitsOnce   sync.Once
	limitsBinary string
	limitsErr    error
)

// startShortTimeouts runs httpmirror as start does, built with the tag
// httpmirror_testlimits and with every listener's timeouts shortened to
// testHeaderTimeout and testIdleTimeout.
func startShortTimeouts(t *testing.T, args ...string) *process {
	t.Helper()
	limitsOnce.Do(func() {
		limitsBinary = filepath.Join(filepath.Dir(binary), "httpmirror-testlimits")
		build := exec.Command("go", "build", "-buildvcs=false", "-tags", "httpmirror_testlimits", "-o", limitsBinary, ".")
		if out, err := build.CombinedOutput(); err != nil {
			limitsErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if limitsErr != nil {
		t.Fatalf("building httpmirror with short timeouts: %v", limitsErr)
	}
	cmd := exec.Command(limitsBinary, append([]string{"--address", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(),
		"HTTPMIRROR_TEST_READ_HEADER_TIMEOUT="+testHeaderTimeout.String(),
		"HTTPMIRROR_TEST_IDLE_TIMEOUT="+testIdleTimeout.String())
	return startCmd(t, cmd)
}

func dialT(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A client that sends nothing, or drips its header, is disconnected at the
// header timeout on the public listener, also when the header outgrows
// the buffer of the loop that answers plain hits and goes on to net/http.
func TestPublicListenerHeaderTimeout(t *testing.T) {
	o := testutil.NewOrigin(t)
	p := startShortTimeouts(t, mirrorArgs(t, o, t.TempDir())...)
	start := "GET /" + o.HostPort() + "/a HTTP/1.1\r\nHost: m\r\nX-Pad: "
	for name, c := range map[string]struct {
		first, drip string // sent at once, then chunk bytes every 20 ms
		chunk       int
	}{
		"silent": {},
		// Under 4 KiB; the header would be complete only after 4 s.
		"dripped within the 4 KiB buffer": {"", start + strings.Repeat("a", 3<<10) + "\r\n\r\n", 16},
		// Nearly 4 KiB at once: past it within 100 ms, under 64 KiB
		// for 18 s.
		"dripped past the 4 KiB buffer": {start + strings.Repeat("a", 4<<10-len(start)-200), strings.Repeat("a", 56<<10), 64},
	} {
		t.Run(name, func(t *testing.T) {
			conn := dialT(t, p.addr)
			io.WriteString(conn, c.first)
			testutil.Drip(t, conn, c.drip, max(c.chunk, 1), 20*time.Millisecond)
			testutil.ExpectClosed(t, conn, 10*testHeaderTimeout)
		})
	}
}

// A client that pipelines requests for a small cached file and never
// reads the answers is disconnected: it does not hold its connection
// forever.
func TestPublicListenerPipelinedAnswersNeverRead(t *testing.T) {
	o := testutil.NewOrigin(t)
	body := testutil.Payload(7, 64<<10) // small enough to be answered from memory
	o.Put("/small.bin", body)
	p := startShortTimeouts(t, mirrorArgs(t, o, t.TempDir())...)
	// The fill, then, once it is stored, a hit that loads it into
	// memory: the later hits are answered by the loop.
	for i := range 2 {
		if code, got := httpGet(t, p.url(o, "/small.bin")); code != 200 || string(got) != string(body) {
			t.Fatalf("GET: %d, %d bytes; want 200 and the file", code, len(got))
		}
		if i == 0 {
			p.waitLog(t, "fill complete")
		}
	}
	c := dialT(t, p.addr)
	c.(*net.TCPConn).SetReadBuffer(16 << 10)
	const n = 400 // 25 MiB of answers: far more than the sockets' buffers hold
	req := "GET /" + o.HostPort() + "/small.bin HTTP/1.1\r\nHost: m\r\n\r\n"
	if _, err := io.WriteString(c, strings.Repeat(req, n)); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing for ten times the timeout, then everything
	// the server sent: the answers end, cut, well before the last.
	<-time.After(10 * testIdleTimeout)
	if got := testutil.ExpectClosed(t, c, 10*time.Second); got >= n*int64(len(body)) {
		t.Fatalf("read %d bytes; want the connection cut before %d answers", got, n)
	}
}

// The admin listener has the public listener's limits: the header
// timeout for a silent or dripping client, the idle timeout between
// requests, and 64 KiB of headers.
func TestAdminListenerLimits(t *testing.T) {
	o := testutil.NewOrigin(t)
	p := startShortTimeouts(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0")...)
	admin := p.adminAddr()
	if admin == "" {
		t.Fatal("no admin listener logged")
	}
	t.Run("silent", func(t *testing.T) {
		testutil.ExpectClosed(t, dialT(t, admin), 10*testHeaderTimeout)
	})
	t.Run("dripped header", func(t *testing.T) {
		c := dialT(t, admin)
		// The header would be complete only after 4 s.
		testutil.Drip(t, c, "GET /healthz HTTP/1.1\r\nHost: m\r\nX-Pad: "+strings.Repeat("a", 3<<10)+"\r\n\r\n", 16, 20*time.Millisecond)
		testutil.ExpectClosed(t, c, 10*testHeaderTimeout)
	})
	t.Run("idle after a request", func(t *testing.T) {
		c := dialT(t, admin)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("/healthz: %v %v; want 200", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		testutil.ExpectClosed(t, c, 10*testIdleTimeout)
	})
	t.Run("100 KiB header", func(t *testing.T) {
		req := "GET /healthz HTTP/1.1\r\nHost: m\r\nX-Big: " + strings.Repeat("x", 100<<10) + "\r\n\r\n"
		if code := testutil.RawStatus(t, admin, req); code != 431 {
			t.Errorf("status %d; want 431", code)
		}
	})
}

// The peer listener of a replica has the same limits: the header timeout
// for a silent or dripping client, and 64 KiB of headers.
func TestPeerListenerLimits(t *testing.T) {
	srv := s3test.Shared(t)
	o := testutil.NewOrigin(t)
	peer := freeLoopback(t)
	startShortTimeouts(t, "--storage-url", s3URL(srv, srv.Bucket(t)),
		"--host-from-first-path", "--allow-private-upstreams", "--upstream-ca-file", o.WriteCA(t, t.TempDir()),
		"--peer-address", peer, "--advertise-url", "http://"+peer, "--peer-secret", clusterSecret)
	t.Run("silent", func(t *testing.T) {
		testutil.ExpectClosed(t, dialT(t, peer), 10*testHeaderTimeout)
	})
	t.Run("dripped header", func(t *testing.T) {
		c := dialT(t, peer)
		// The header would be complete only after 4 s.
		testutil.Drip(t, c, "GET / HTTP/1.1\r\nHost: m\r\nX-Pad: "+strings.Repeat("a", 3<<10)+"\r\n\r\n", 16, 20*time.Millisecond)
		testutil.ExpectClosed(t, c, 10*testHeaderTimeout)
	})
	t.Run("100 KiB header", func(t *testing.T) {
		req := "GET / HTTP/1.1\r\nHost: m\r\nX-Big: " + strings.Repeat("x", 100<<10) + "\r\n\r\n"
		if code := testutil.RawStatus(t, peer, req); code != 431 {
			t.Errorf("status %d; want 431", code)
		}
	})
}
