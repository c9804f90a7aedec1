//go:build !linux

package server

import "net"

// writeHeader writes a response's header, which a body from a file
// follows.
func writeHeader(c net.Conn, h []byte) error {
	_, err := c.Write(h)
	return err
}
