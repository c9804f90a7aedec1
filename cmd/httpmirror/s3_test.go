package main_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// s3URL is the s3:// storage URL of bucket on srv, with the key prefix
// cache.
func s3URL(srv *s3test.Server, bucket string) string {
	return srv.StorageURL(bucket, "cache")
}

// Two httpmirror processes share an S3 bucket: a file the first one
// filled is a hit for the second (one origin GET), both redirect to a
// presigned URL that returns the file, and neither logs the secret key.
func TestS3TwoProcessesShareBucket(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	o := testutil.NewOrigin(t)
	data := testutil.Payload(4, 3<<20+11)
	o.Put("/dist/pkg.tar.zst", data)
	ca := o.WriteCA(t, t.TempDir())
	args := []string{
		"--storage-url", s3URL(srv, bucket),
		"--host-from-first-path", "--allow-private-upstreams", "--upstream-ca-file", ca,
		"--tee-response=false", "--log-level", "debug",
	}
	p1, p2 := start(t, args...), start(t, args...)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, p := range []*process{p1, p2} {
		resp, err := noFollow.Get(p.url(o, "/dist/pkg.tar.zst"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, srv.Endpoint+"/"+bucket+"/cache/") {
			t.Fatalf("mirror %d: status %d, Location %q; want 302 to the bucket's cache/ prefix", i+1, resp.StatusCode, loc)
		}
		resp, err = http.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || testutil.SHA256(body) != testutil.SHA256(data) {
			t.Fatalf("mirror %d: presigned URL answered %d with %d bytes (err %v); want the file", i+1, resp.StatusCode, len(body), err)
		}
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
	for i, p := range []*process{p1, p2} {
		if strings.Contains(p.log(), srv.SecretKey) {
			t.Errorf("mirror %d logged the secret key", i+1)
		}
	}
}
