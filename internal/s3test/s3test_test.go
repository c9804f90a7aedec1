package s3test_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/internal/s3test"
)

// The helper starts a server that accepts a bucket and an object, keeps it
// as a file under its directory, and stops cleanly.
func TestStartPutStop(t *testing.T) {
	s := s3test.StartT(t)
	bucket := s.Bucket(t)
	ctx := context.Background()
	_, err := s.Client().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("a/b.txt"), Body: strings.NewReader("hello"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(s.ObjectFile(bucket, "a/b.txt")); err != nil || string(b) != "hello" {
		t.Fatalf("object file: %q, %v; want %q", b, err, "hello")
	}
	s.Stop()
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("server directory still exists after Stop: %v", err)
	}
	if _, err := s.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err == nil {
		t.Errorf("HeadBucket after Stop succeeded")
	}
}
