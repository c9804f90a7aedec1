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
