package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/httpmirror/httpmirror/storage"
)

var _ storage.Claimer = (*Backend)(nil)

// claimPages bounds the listing of Claims (1000 names a page).
const claimPages = 100

// claimKey is the S3 object key of the claim name.
func (b *Backend) claimKey(name string) string { return b.prefix + claimDir + "/" + name }

// claimBody is what a claim object holds: a random nonce line, then the
// data. The nonce makes every write's content, and so its ETag (the
// claim's version), unique even when the data repeats.
func claimBody(data []byte) []byte {
	var nonce [16]byte
	rand.Read(nonce[:])
	body := make([]byte, 0, 2*len(nonce)+1+len(data))
	body = hex.AppendEncode(body, nonce[:])
	body = append(body, '\n')
	return append(body, data...)
}

// claimData strips the nonce line from a claim object's content.
func claimData(body []byte) []byte {
	if i := bytes.IndexByte(body, '\n'); i == 32 {
		return body[i+1:]
	}
	return body
}

// Claim implements storage.Claimer with a PutObject conditional on
// If-None-Match: * (AWS S3, MinIO, Ceph RGW, R2 and versitygw answer 412
// when the object exists).
func (b *Backend) Claim(ctx context.Context, name string, data []byte) (storage.Claim, error) {
	if err := storage.ValidateClaim(name, data); err != nil {
		return storage.Claim{}, err
	}
	return b.putClaim(ctx, name, data, &s3.PutObjectInput{IfNoneMatch: aws.String("*")}, storage.ErrClaimed)
}

// Swap implements storage.Claimer with a PutObject conditional on If-Match.
func (b *Backend) Swap(ctx context.Context, name string, data []byte, version string) (storage.Claim, error) {
	if err := storage.ValidateClaim(name, data); err != nil {
		return storage.Claim{}, err
	}
	if version == "" {
		return storage.Claim{}, storage.ErrClaimChanged
	}
	return b.putClaim(ctx, name, data, &s3.PutObjectInput{IfMatch: aws.String(version)}, storage.ErrClaimChanged)
}

// putClaim sends the conditional PutObject in (whose condition is set) and
// maps a failed condition to lost, returned with the current claim.
func (b *Backend) putClaim(ctx context.Context, name string, data []byte, in *s3.PutObjectInput, lost error) (storage.Claim, error) {
	key := b.claimKey(name)
	body := claimBody(data)
	in.Bucket, in.Key = &b.bucket, &key
	in.Body = bytes.NewReader(body)
	in.ContentLength = aws.Int64(int64(len(body)))
	in.ContentType = aws.String("application/octet-stream")
	out, err := b.client.PutObject(ctx, in)
	if err != nil {
		if !conditionFailed(err) && !(lost == storage.ErrClaimChanged && isNotFound(err)) {
			return storage.Claim{}, fmt.Errorf("s3: writing claim %s: %w", key, err)
		}
		cur, rerr := b.ReadClaim(ctx, name)
		if rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
			return storage.Claim{}, fmt.Errorf("%w (reading it: %v)", lost, rerr)
		}
		return cur, lost
	}
	return storage.Claim{Data: bytes.Clone(data), Version: aws.ToString(out.ETag)}, nil
}

// Release implements storage.Claimer. It reads the claim's version first
// and then deletes it with DeleteObject conditional on If-Match. A store
// that does not implement conditional deletes (501) gets a plain delete
// after the read: between the two, another replica could take the claim
// over and lose it again, which costs that replica a lease, never data.
func (b *Backend) Release(ctx context.Context, name, version string) error {
	if err := storage.ValidateClaimName(name); err != nil {
		return err
	}
	key := b.claimKey(name)
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &key})
	switch {
	case isNotFound(err):
		return storage.ErrClaimChanged
	case err != nil:
		return fmt.Errorf("s3: reading claim %s: %w", key, err)
	case aws.ToString(out.ETag) != version:
		return storage.ErrClaimChanged
	}
	_, err = b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key, IfMatch: aws.String(version)})
	if isNotImplemented(err) {
		_, err = b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &key})
	}
	switch {
	case err == nil:
		return nil
	case conditionFailed(err) || isNotFound(err):
		return storage.ErrClaimChanged
	}
	return fmt.Errorf("s3: releasing claim %s: %w", key, err)
}

// ReadClaim implements storage.Claimer.
func (b *Backend) ReadClaim(ctx context.Context, name string) (storage.Claim, error) {
	if err := storage.ValidateClaimName(name); err != nil {
		return storage.Claim{}, err
	}
	key := b.claimKey(name)
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: &key})
	if err != nil {
		if isNotFound(err) {
			return storage.Claim{}, storage.ErrNotFound
		}
		return storage.Claim{}, fmt.Errorf("s3: reading claim %s: %w", key, err)
	}
	defer out.Body.Close()
	body, err := io.ReadAll(io.LimitReader(out.Body, 2*storage.MaxClaimSize))
	if err != nil {
		return storage.Claim{}, fmt.Errorf("s3: reading claim %s: %w", key, err)
	}
	return storage.Claim{Data: claimData(body), Version: aws.ToString(out.ETag)}, nil
}

// Claims implements storage.Claimer with ListObjectsV2 under the claims'
// prefix, up to 100000 names.
func (b *Backend) Claims(ctx context.Context) ([]string, error) {
	prefix := b.claimKey("")
	in := &s3.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &prefix}
	var names []string
	for range claimPages {
		out, err := b.client.ListObjectsV2(ctx, in)
		if err != nil {
			return names, fmt.Errorf("s3: listing claims: %w", err)
		}
		for _, o := range out.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), prefix)
			if storage.ValidateClaimName(name) == nil {
				names = append(names, name)
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		in.ContinuationToken = out.NextContinuationToken
	}
	return names, nil
}

// conditionFailed reports whether err is a conditional write that did not
// apply: 412 Precondition Failed, or 409 Conditional Request Conflict (a
// concurrent conditional write to the same key won). versitygw's posix
// backend answers that race with 409 ExistingObjectIsDirectory (the
// other write's file is in place under construction): a claim's key is
// never a directory in this layout, so that too is a concurrent write.
func conditionFailed(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "PreconditionFailed", "ConditionalRequestConflict", "ExistingObjectIsDirectory":
		return true
	}
	return false
}

func isNotImplemented(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NotImplemented"
}
