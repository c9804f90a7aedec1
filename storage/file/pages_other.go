//go:build !linux

package file

// dropPages leaves the index's pages mapped where madvise is not used.
func (s *store) dropPages() {}
