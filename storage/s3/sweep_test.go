package s3_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/storage/s3"
)

// The sweep aborts uploads under the root directory that are older than
// the given age, and leaves the rest of the bucket alone.
func TestAbortStaleUploads(t *testing.T) {
	b, srv, bucket := newBackend(t, func(c *s3.Config) { c.RootDir = "mirror" })
	ctx := context.Background()
	for _, key := range []string{"mirror/example.com/a", "mirror/example.com/b", "other/x"} {
		if _, err := srv.Client().CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.AbortStaleUploads(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("sweep of uploads older than an hour: %d, %v; want 0", n, err)
	}
	// A negative age puts the cutoff in the future: every upload is older.
	if n, err := b.AbortStaleUploads(ctx, -time.Minute); err != nil || n != 2 {
		t.Fatalf("sweep: %d aborted, %v; want 2", n, err)
	}
	if n := openUploads(t, srv, bucket); n != 1 {
		t.Errorf("%d uploads left; want the one outside the root", n)
	}
}

// With StaleUploadAge set, the first successful Check sweeps in the
// background.
func TestCheckStartsSweep(t *testing.T) {
	b, srv, bucket := newBackend(t, func(c *s3.Config) { c.StaleUploadAge = time.Nanosecond })
	ctx := context.Background()
	if _, err := srv.Client().CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String("example.com/left")}); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	b.WaitSweep()
	if n := openUploads(t, srv, bucket); n != 0 {
		t.Errorf("%d uploads left after the sweep; want 0", n)
	}
}

// AbortUploads aborts the uploads of one object only: not those of a key
// it is a prefix of, nor those of other keys.
func TestAbortUploadsOfOneKey(t *testing.T) {
	b, srv, bucket := newBackend(t, func(c *s3.Config) { c.RootDir = "mirror" })
	ctx := context.Background()
	for _, key := range []string{"mirror/example.com/a", "mirror/example.com/a", "mirror/example.com/ab", "mirror/example.com/b"} {
		if _, err := srv.Client().CreateMultipartUpload(ctx, &awss3.CreateMultipartUploadInput{Bucket: &bucket, Key: aws.String(key)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := b.AbortUploads(ctx, "example.com/a"); err != nil || n != 2 {
		t.Fatalf("AbortUploads: %d, %v; want 2 aborted", n, err)
	}
	if n := openUploads(t, srv, bucket); n != 2 {
		t.Errorf("%d uploads left; want the other keys' 2", n)
	}
	if n, err := b.AbortUploads(ctx, "example.com/a"); err != nil || n != 0 {
		t.Errorf("AbortUploads again: %d, %v; want 0", n, err)
	}
}
