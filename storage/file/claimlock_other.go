//go:build !unix

package file

import "os"

// lockClaims opens the claims' lock file; platforms without flock get only
// the in-process mutex, which suffices for one process.
func lockClaims(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
}
