// Package server holds the limits httpmirror's public listener runs with,
// shared by the command and the tests so both exercise the same server.
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
	// request headers (slowloris).
	ReadHeaderTimeout = 10 * time.Second
	// IdleTimeout closes keep-alive connections idle for this long.
	IdleTimeout = 2 * time.Minute
)

// Configure applies the public listener's limits to s.
func Configure(s *http.Server) {
	s.MaxHeaderBytes = MaxHeaderBytes
	s.ReadHeaderTimeout = ReadHeaderTimeout
	s.IdleTimeout = IdleTimeout
}
