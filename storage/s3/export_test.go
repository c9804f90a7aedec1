package s3

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

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

// SetAccessClock replaces the clock of the reads b counts; call it before
// b is used.
func SetAccessClock(b *Backend, now func() time.Time) { b.acc.now = now }

// AccessRecords returns the number of access records in the bucket.
func AccessRecords(ctx context.Context, b *Backend) (int, error) {
	p := b.prefix + accessDir + "/"
	out, err := b.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &p})
	if err != nil {
		return 0, err
	}
	return len(out.Contents), nil
}
