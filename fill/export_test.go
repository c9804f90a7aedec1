package fill

import "time"

// SetAdaptWindow makes adapt measure over d until the test ends (see
// adaptWindow): tests on a busy machine measure longer, so that a
// moment without CPU does not pass for the rate.
func SetAdaptWindow(t interface{ Cleanup(func()) }, d time.Duration) {
	old := adaptWindow
	adaptWindow = d
	t.Cleanup(func() { adaptWindow = old })
}

// SetWholeHeadTimeout bounds the HEAD of a segmented fill's digests to d
// until the test ends (see wholeHeadTimeout).
func SetWholeHeadTimeout(t interface{ Cleanup(func()) }, d time.Duration) {
	old := wholeHeadTimeout
	wholeHeadTimeout = d
	t.Cleanup(func() { wholeHeadTimeout = old })
}
