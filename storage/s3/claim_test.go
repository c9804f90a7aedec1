package s3_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/s3"
)

// The pinned versitygw honours the conditional writes leases rely on:
// PutObject with If-None-Match: * and with If-Match, and DeleteObject with
// If-Match, each answered 412 when its condition fails, changing nothing.
func TestStoreHonoursConditionalWrites(t *testing.T) {
	_, srv, bucket := newBackend(t)
	c := srv.Client()
	ctx := context.Background()
	key := "conditional/object"
	put := func(in *awss3.PutObjectInput, body string) (string, error) {
		in.Bucket, in.Key, in.Body = &bucket, &key, strings.NewReader(body)
		out, err := c.PutObject(ctx, in)
		if err != nil {
			return "", err
		}
		return aws.ToString(out.ETag), nil
	}
	want412 := func(what string, err error) {
		t.Helper()
		var re *awshttp.ResponseError
		if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusPreconditionFailed {
			t.Fatalf("%s: %v; want 412 Precondition Failed", what, err)
		}
	}
	v1, err := put(&awss3.PutObjectInput{IfNoneMatch: aws.String("*")}, "one")
	if err != nil {
		t.Fatalf("create-if-absent of a new key: %v", err)
	}
	_, err = put(&awss3.PutObjectInput{IfNoneMatch: aws.String("*")}, "two")
	want412("create-if-absent of an existing key", err)
	v2, err := put(&awss3.PutObjectInput{IfMatch: aws.String(v1)}, "three")
	if err != nil {
		t.Fatalf("swap against the current ETag: %v", err)
	}
	_, err = put(&awss3.PutObjectInput{IfMatch: aws.String(v1)}, "four")
	want412("swap against a stale ETag", err)
	_, err = c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &bucket, Key: &key, IfMatch: aws.String(v1)})
	want412("delete against a stale ETag", err)
	out, err := c.GetObject(ctx, &awss3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	if aws.ToString(out.ETag) != v2 {
		t.Fatalf("object ETag %s after the refused writes; want %s", aws.ToString(out.ETag), v2)
	}
	if _, err := c.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &bucket, Key: &key, IfMatch: aws.String(v2)}); err != nil {
		t.Fatalf("delete against the current ETag: %v", err)
	}
}

// Claims are stored under the reserved "~~lease/" prefix, below the root
// directory, where no key maps: no object key can name a claim.
func TestClaimsUnderReservedPrefix(t *testing.T) {
	b, srv, bucket := newBackend(t, func(cfg *s3.Config) { cfg.RootDir = "cache" })
	ctx := context.Background()
	if _, err := b.Claim(ctx, "abc", []byte("lease")); err != nil {
		t.Fatal(err)
	}
	list, err := srv.Client().ListObjectsV2(ctx, &awss3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Contents) != 1 || aws.ToString(list.Contents[0].Key) != "cache/~~lease/abc" {
		t.Fatalf("bucket holds %d objects (first %q); want just cache/~~lease/abc", len(list.Contents), firstKey(list))
	}
	for _, key := range []string{"~~lease/abc", "cache/~~lease/abc", "a/~~lease/abc"} {
		okey, err := b.ObjectKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(okey, "~~lease/") {
			t.Errorf("key %q maps to %q, inside the claims' prefix", key, okey)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat(%q) = %v; want ErrNotFound", key, err)
		}
	}
}

func firstKey(l *awss3.ListObjectsV2Output) string {
	if len(l.Contents) == 0 {
		return ""
	}
	return aws.ToString(l.Contents[0].Key)
}
