package file

import (
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// dropPages takes the index's pages out of the process's resident set:
// listings, purges, evictions and a rebuild read the database through its
// mmap, and every page read stays mapped (Linux maps its cached
// neighbours too) until the process ends, which at a million objects is
// hundreds of bytes per object. The pages stay in the page cache, so a
// later read faults them back in without I/O. The read transaction keeps
// bbolt from remapping the file meanwhile (a remap waits for readers), so
// the range is the mapping's.
func (s *store) dropPages() {
	s.view(func(tx *bolt.Tx) error {
		info := s.db.Info()
		if info == nil || info.Data == 0 || tx.Size() <= 0 {
			return nil
		}
		// A failure leaves the pages mapped: nothing more.
		syscall.Syscall(syscall.SYS_MADVISE, info.Data, uintptr(tx.Size()), syscall.MADV_DONTNEED)
		return nil
	})
}
