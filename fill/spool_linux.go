package fill

import (
	"errors"
	"os"
	"strconv"
)

// OpenSpool opens a read-only handle of its own on the spool, when the
// spool is a file: a client can then send what has arrived with sendfile,
// from its own file offset. The caller closes it; it stays valid after the
// fill ends.
func (f *Fill) OpenSpool() (*os.File, error) {
	file := f.spoolFile()
	if file == nil {
		return nil, errors.New("fill: spool is not a file")
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd uintptr
	if err := rc.Control(func(d uintptr) { fd = d }); err != nil {
		return nil, err
	}
	// The spool file may be unlinked already: reopening it through /proc
	// gives a new open file description, whose offset is this reader's
	// alone.
	return os.Open("/proc/self/fd/" + strconv.Itoa(int(fd)))
}
