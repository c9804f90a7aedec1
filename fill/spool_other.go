//go:build !linux

package fill

import (
	"errors"
	"os"
)

// OpenSpool would open a handle of the caller's own on the spool file; it
// needs Linux's /proc/self/fd to reopen an unlinked file, so elsewhere it
// fails and readers go through ReadAt.
func (f *Fill) OpenSpool() (*os.File, error) {
	return nil, errors.New("fill: reopening the spool needs /proc")
}
