package testutil

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// Drip writes data on c in chunks of size bytes, one chunk every interval,
// as a slow (or slowloris) client sends a request. It runs until all is
// written, a write fails (the server closed the connection) or the test
// ends, and returns at once.
func Drip(t testing.TB, c net.Conn, data string, size int, interval time.Duration) {
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for len(data) > 0 {
			n := min(size, len(data))
			if _, err := io.WriteString(c, data[:n]); err != nil {
				return
			}
			data = data[n:]
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
}

// ExpectClosed reads c, discarding what arrives, until the server ends the
// connection (end of file or reset), and fails the test unless it does
// within d. It returns the bytes read.
func ExpectClosed(t testing.TB, c net.Conn, d time.Duration) int64 {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := io.Copy(io.Discard, c)
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection is still open after %v (%d bytes read); want it closed by the server", d, n)
	}
	return n
}
