//go:build !unix

package file

import "os"

// openRead opens an object file for reading.
func openRead(path string) (*os.File, error) { return os.Open(path) }

// idleFilesBound returns the bound of the descriptors kept open for the
// next Opens.
func idleFilesBound() int { return idleFilesMax }
