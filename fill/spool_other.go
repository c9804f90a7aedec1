//go:build !linux

package fill

import (
	"errors"
	"os"
)

// openSpoolFile would open a handle of the caller's own on the spool file;
// it needs Linux's /proc/self/fd to reopen an unlinked file, so elsewhere
// it fails and readers go through ReadAt.
func (f *Fill) openSpoolFile() (*os.File, int, error) {
	return nil, 0, errors.New("fill: reopening the spool needs /proc")
}
