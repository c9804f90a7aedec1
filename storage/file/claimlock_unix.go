//go:build unix

package file

import (
	"os"
	"syscall"
)

// lockClaims takes the exclusive flock of the claims directory, waiting
// for other processes' operations on it to end. Closing the file releases
// it.
func lockClaims(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
