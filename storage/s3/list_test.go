package s3_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/s3"
)

// Under a root directory, List names what Stat would find and nothing
// else: objects another program wrote at readable names are listed,
// objects outside the root or at names the key encoding never makes are
// not; an object under a hashed name whose key is too long for S3's
// metadata is served but not listed. Pages of one object walk every phase.
func TestListUnderRootDir(t *testing.T) {
	b, srv, bucket := newBackend(t, func(c *s3.Config) { c.RootDir = "mirror/v1" })
	ctx := context.Background()
	put(t, b, "example.com/pkg/a.tgz", []byte("a"), info(1))
	put(t, b, "example.com/pkg/", []byte("dir"), info(3))
	put(t, b, "example.com/pkg/~~x", []byte("hashed"), info(6))
	huge := "example.com/pkg/" + strings.Repeat("h", 2500)
	put(t, b, huge, []byte("huge"), info(4))
	for _, k := range []string{"mirror/v1/example.com/pkg/foreign.bin", "mirror/v1/example.com/pkg/x~~junk", "elsewhere/example.com/pkg/b"} {
		if _, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: &bucket, Key: &k, Body: bytes.NewReader([]byte("f"))}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	token := ""
	for page := 0; page < 50; page++ {
		objs, next, err := b.List(ctx, "example.com/pkg/", token, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		if token = next; token == "" {
			break
		}
	}
	slices.Sort(keys)
	want := []string{"example.com/pkg/", "example.com/pkg/a.tgz", "example.com/pkg/foreign.bin", "example.com/pkg/~~x"}
	if !slices.Equal(keys, want) {
		t.Errorf("listed %q; want %q", keys, want)
	}
	if got := readAll(t, b, huge); string(got) != "huge" {
		t.Errorf("unlisted long key reads %q; want it served", got)
	}
	if _, _, err := b.List(ctx, "", "!!", 1); !errors.Is(err, storage.ErrInvalidToken) {
		t.Errorf("List with a foreign token: %v; want ErrInvalidToken", err)
	}
	loc, err := b.Location("example.com/pkg/")
	if err != nil || loc != "s3://"+bucket+"/mirror/v1/example.com/pkg~~dir" {
		t.Errorf("Location = %q, %v", loc, err)
	}
}
