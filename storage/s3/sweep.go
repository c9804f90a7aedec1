package s3

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/httpmirror/httpmirror/storage"
)

// sweepPages bounds the start-up sweep (1000 uploads a page).
const sweepPages = 100

// startSweep starts the background sweep of stale uploads once, if the
// configuration asks for it and the backend is not closed.
func (b *Backend) startSweep() {
	age := b.cfg.StaleUploadAge
	if age <= 0 {
		return
	}
	b.sweepMu.Lock()
	defer b.sweepMu.Unlock()
	if b.sweeping || b.closed {
		return
	}
	b.sweeping = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.stopSweep = cancel
	done := make(chan struct{})
	b.sweepDone = done
	go func() {
		defer close(done)
		defer cancel()
		n, err := b.AbortStaleUploads(ctx, age)
		switch {
		case err != nil && errors.Is(ctx.Err(), context.Canceled):
			// Stopped by Close: the process is exiting, possibly right
			// after start on a configuration error that must stay the
			// only line it prints.
		case err != nil:
			b.log.Warn("s3: sweeping stale multipart uploads failed", "aborted", n, "err", err)
		case n > 0:
			b.log.Info("s3: aborted stale multipart uploads", "count", n, "olderThan", age)
		}
	}()
}

// AbortStaleUploads aborts the multipart uploads under the root directory
// (the whole bucket when RootDir is empty) that were begun more than age
// ago, and returns how many it aborted. Such uploads are left by processes
// that died mid-fill; a live fill takes far less than a day. It looks at
// no more than 100000 uploads.
func (b *Backend) AbortStaleUploads(ctx context.Context, age time.Duration) (int, error) {
	cutoff := time.Now().Add(-age)
	in := &s3.ListMultipartUploadsInput{Bucket: &b.bucket}
	if b.prefix != "" {
		in.Prefix = aws.String(b.prefix)
	}
	aborted := 0
	for range sweepPages {
		out, err := b.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return aborted, fmt.Errorf("s3: listing multipart uploads: %w", err)
		}
		for _, u := range out.Uploads {
			if u.Initiated == nil || !u.Initiated.Before(cutoff) {
				continue
			}
			_, err := b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: &b.bucket, Key: u.Key, UploadId: u.UploadId,
			})
			if err != nil && !isNoSuchUpload(err) {
				return aborted, fmt.Errorf("s3: aborting upload of %s: %w", aws.ToString(u.Key), err)
			}
			aborted++
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	return aborted, nil
}

func isNoSuchUpload(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload"
}

var _ storage.UploadAborter = (*Backend)(nil)

// AbortUploads implements storage.UploadAborter: it aborts the multipart
// uploads of key's object, such as the one a replica that crashed
// mid-fill left (looking at no more than 100000 uploads).
func (b *Backend) AbortUploads(ctx context.Context, key string) (int, error) {
	okey, err := b.ObjectKey(key)
	if err != nil {
		return 0, err
	}
	in := &s3.ListMultipartUploadsInput{Bucket: &b.bucket, Prefix: &okey}
	aborted := 0
	for range sweepPages {
		out, err := b.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return aborted, fmt.Errorf("s3: listing multipart uploads of %s: %w", okey, err)
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != okey {
				continue // another key that okey is a prefix of
			}
			_, err := b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: &b.bucket, Key: u.Key, UploadId: u.UploadId,
			})
			if err != nil && !isNoSuchUpload(err) {
				return aborted, fmt.Errorf("s3: aborting upload of %s: %w", okey, err)
			}
			aborted++
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	return aborted, nil
}
