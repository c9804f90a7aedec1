package s3

// WaitSweep waits until the sweep started by Check, if any, has ended.
func (b *Backend) WaitSweep() {
	b.sweepMu.Lock()
	done := b.sweepDone
	b.sweepMu.Unlock()
	if done != nil {
		<-done
	}
}

// SetCopyLimit lowers the size over which objects' metadata is not
// replaced (5 GiB, CopyObject's limit), so that tests reach it.
func SetCopyLimit(b *Backend, n int64) { b.copyLimit = n }
