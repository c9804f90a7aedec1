package server

import (
	"net"
	"syscall"
)

// writeHeader writes a response's header, which a body from a file
// follows. On TCP it goes with MSG_MORE: the kernel holds it back for the
// body's first bytes, so that a small answer leaves in one packet, as
// nginx's tcp_nopush sends its header with sendfile's data, rather than
// as a packet of its own that the client wakes up for.
func writeHeader(c net.Conn, h []byte) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		_, err := c.Write(h)
		return err
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for len(h) > 0 {
			n, err := syscall.SendmsgN(int(fd), h, nil, nil, syscall.MSG_MORE)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false // wait until the socket takes more
			case err != nil:
				werr = err
				return true
			}
			h = h[n:]
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return err
}
