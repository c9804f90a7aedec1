//go:build !unix

package file

import "os"

// lockDir opens the lock file; platforms without flock get no cross-process
// exclusion.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}
