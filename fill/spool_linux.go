package fill

import (
	"errors"
	"os"
	"strconv"
)

// openSpoolFile opens a read-only handle of its own on the spool file: a
// new open file description, whose offset is the caller's alone. It
// returns the spool's generation with it.
func (f *Fill) openSpoolFile() (*os.File, int, error) {
	file, gen := f.spoolFile()
	if file == nil {
		return nil, 0, errors.New("fill: spool is not a file")
	}
	rc, err := file.SyscallConn()
	if err != nil {
		return nil, 0, err
	}
	var fd uintptr
	if err := rc.Control(func(d uintptr) { fd = d }); err != nil {
		return nil, 0, err
	}
	// The spool file may be unlinked already: /proc reopens it anyway.
	h, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(fd)))
	return h, gen, err
}
