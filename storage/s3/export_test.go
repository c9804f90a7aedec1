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

// AdoptAccessRecords adopts the access records not written for stale (see
// access.go) and returns how many it adopted.
func AdoptAccessRecords(ctx context.Context, b *Backend, stale time.Duration) (int, error) {
	b.acc.stale = stale
	return b.acc.adopt(ctx)
}

// AccessRecordIDs returns the names of the access records in the bucket.
func AccessRecordIDs(ctx context.Context, b *Backend) ([]string, error) {
	p := b.prefix + accessDir + "/"
	out, err := b.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &p})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, o := range out.Contents {
		ids = append(ids, (*o.Key)[len(p):])
	}
	return ids, nil
}
