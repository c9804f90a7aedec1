// Package clock has the one sleep httpmirror's retries and polls use: a
// pause that ends early, with the context's error, when the context does.
package clock

import (
	"context"
	"time"
)

// Sleep pauses for d, or until ctx is done; it returns ctx's error then,
// else nil. A d of zero or less does not pause, and reports whether ctx is
// done already.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
