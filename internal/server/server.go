// Package server holds the limits httpmirror's listeners run with, shared
// by the command and the tests so both exercise the same servers, and the
// public listener's server (Server).
package server

import (
	"net/http"
	"time"
)

const (
	// MaxHeaderBytes bounds the request line plus headers. Larger
	// requests get 431 from net/http.
	MaxHeaderBytes = 64 << 10
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers (slowloris): from the accept to the end of the
	// first request's header, and from the first byte to the end of the
	// header of each later one.
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout closes keep-alive connections idle for this long
	// between requests.
	IdleTimeout = 2 * time.Minute
)

// The timeouts Configure applies: the constants, except in the command's
// tests, which build it with shorter ones (limits_testbuild.go) so that
// they need not wait for the real ones.
var readHeaderTimeout, idleTimeout = ReadHeaderTimeout, IdleTimeout

// Configure applies the limits every listener of the command runs with
// (public, admin and peer) to s: MaxHeaderBytes, ReadHeaderTimeout and
// IdleTimeout. It sets no ReadTimeout or WriteTimeout: those bound a whole
// request or response, and a download of a large file may rightly take
// hours.
func Configure(s *http.Server) {
	s.MaxHeaderBytes = MaxHeaderBytes
	s.ReadHeaderTimeout = readHeaderTimeout
	s.IdleTimeout = idleTimeout
}
