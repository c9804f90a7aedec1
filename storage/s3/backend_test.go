package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/s3"
)

// opCounter counts the S3 operations a backend sends, by name.
type opCounter struct {
	mu  sync.Mutex
	ops map[string]int

	// before, when set, is called before each request is sent; a
	// response it returns is the answer, and the request is not sent.
	before func(op string) *http.Response
	// after, when set, is called once each response arrived.
	after func(op string)
}

func (c *opCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	op := opName(r)
	c.mu.Lock()
	if c.ops == nil {
		c.ops = map[string]int{}
	}
	c.ops[op]++
	c.mu.Unlock()
	if c.before != nil {
		if resp := c.before(op); resp != nil {
			resp.Request = r
			return resp, nil
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if c.after != nil {
		c.after(op)
	}
	return resp, err
}

// opName names the S3 operation r sends.
func opName(r *http.Request) string {
	q := r.URL.Query()
	var op string
	switch {
	case r.Method == http.MethodHead:
		op = "HeadObject"
	case r.Method == http.MethodGet && q.Has("uploads"):
		op = "ListMultipartUploads"
	case r.Method == http.MethodGet:
		op = "GetObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		op = "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		op = "CompleteMultipartUpload"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		op = "UploadPart"
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		op = "CopyObject"
	case r.Method == http.MethodPut:
		op = "PutObject"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		op = "AbortMultipartUpload"
	default:
		op = r.Method
	}
	return op
}

func (c *opCounter) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[op]
}

func (c *opCounter) reset() {
	c.mu.Lock()
	c.ops = nil
	c.mu.Unlock()
}

// counted makes the backend send its requests through c.
func counted(c *opCounter) func(*s3.Config) {
	return func(cfg *s3.Config) { cfg.HTTPClient = &http.Client{Transport: c} }
}

func smallChunks(cfg *s3.Config) { cfg.ChunkSize = s3.MinChunkSize }

func info(size int64) storage.Info {
	return storage.Info{Size: size, ETag: `"v1"`, ContentType: "application/octet-stream"}
}

func put(t *testing.T, b storage.Backend, key string, data []byte, i storage.Info) {
	t.Helper()
	ctx := context.Background()
	w, err := b.Create(ctx, key, i)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := w.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func readAll(t *testing.T, b storage.Backend, key string) []byte {
	t.Helper()
	o, err := b.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// s3ETag returns the store's own ETag of the object under key.
func s3ETag(t *testing.T, b *s3.Backend, srv *s3test.Server, bucket, key string) string {
	t.Helper()
	okey, err := b.ObjectKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out, err := srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: &bucket, Key: &okey})
	if err != nil {
		t.Fatalf("HeadObject(%s): %v", okey, err)
	}
	return aws.ToString(out.ETag)
}

// openUploads lists the multipart uploads in progress in bucket.
func openUploads(t *testing.T, srv *s3test.Server, bucket string) int {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

// An object another program wrote at the expected key (a CIDN runner's
// presigned PUT, say), without httpmirror's metadata, is a usable hit: its
// size from the store, and the store's ETag and modification time as
// validators.
func TestForeignObject(t *testing.T) {
	b, srv, bucket := newBackend(t)
	data := testutil.Payload(7, 3000)
	okey, err := b.ObjectKey("example.com/foreign.bin")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := srv.Client().PutObject(ctx, &awss3.PutObjectInput{Bucket: &bucket, Key: &okey, Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	st, err := b.Stat(ctx, "example.com/foreign.bin")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != int64(len(data)) || st.ETag != s3ETag(t, b, srv, bucket, "example.com/foreign.bin") || st.LastModified.IsZero() || st.StoredAt.IsZero() {
		t.Errorf("Stat = %+v; want size %d, the store's ETag and modification time", st, len(data))
	}
	if got := readAll(t, b, "example.com/foreign.bin"); !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes, differing", len(got))
	}
}

// Objects live under ROOTDIR, readable keys for ordinary paths.
func TestRootDirPrefixesKeys(t *testing.T) {
	b, srv, bucket := newBackend(t, func(c *s3.Config) { c.RootDir = "mirror/v1" })
	put(t, b, "example.com/pkg/a.tgz", []byte("a"), info(1))
	put(t, b, "example.com/pkg/", []byte("dir"), info(3))
	out, err := srv.Client().ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	want := []string{"mirror/v1/example.com/pkg/a.tgz", "mirror/v1/example.com/pkg~~dir"}
	if fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("bucket holds %q; want %q", keys, want)
	}
}

// A long key is stored under its hash and reads back.
func TestLongKey(t *testing.T) {
	b, _, _ := newBackend(t)
	key := "example.com/" + strings.Repeat("segment/", 200) + strings.Repeat("n", 300)
	put(t, b, key, []byte("long"), info(4))
	if got := readAll(t, b, key); string(got) != "long" {
		t.Errorf("read %q; want %q", got, "long")
	}
}

// Presigned URLs fetch the object directly, with the origin's
// Content-Type and Content-Disposition set by the store itself, and are
// written for the sign endpoint when one is set.
func TestSignedURL(t *testing.T) {
	srv := s3test.Shared(t)
	host, port, _ := strings.Cut(srv.Addr, ":")
	if host != "127.0.0.1" {
		t.Fatalf("server on %s; want 127.0.0.1", srv.Addr)
	}
	b, _, _ := newBackend(t, func(c *s3.Config) { c.SignEndpoint = "http://localhost:" + port })
	data := testutil.Payload(7, 4321)
	i := info(int64(len(data)))
	i.ContentType = "application/x-tar"
	i.Header = http.Header{"Content-Disposition": {`attachment; filename="a.tar"`}}
	put(t, b, "example.com/signed.tar", data, i)

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		link, err := b.SignedURL(context.Background(), "example.com/signed.tar", method, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(link)
		if err != nil || u.Host != "localhost:"+port {
			t.Fatalf("%s link %q; want host localhost:%s", method, link, port)
		}
		if strings.Contains(link, srv.SecretKey) {
			t.Errorf("%s link contains the secret key", method)
		}
		req, _ := http.NewRequest(method, link, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
			t.Fatalf("%s: status %d, length %d; want 200, %d", method, resp.StatusCode, resp.ContentLength, len(data))
		}
		if method == http.MethodGet && !bytes.Equal(body, data) {
			t.Errorf("GET body differs")
		}
		if ct, cd := resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"); ct != i.ContentType || cd != `attachment; filename="a.tar"` {
			t.Errorf("%s: Content-Type %q, Content-Disposition %q; want the origin's", method, ct, cd)
		}
	}
	if _, err := b.SignedURL(context.Background(), "example.com/signed.tar", http.MethodPut, time.Minute); err == nil {
		t.Errorf("presigning PUT succeeded")
	}
}

// Check passes on a reachable bucket and fails on a missing one or a
// stopped server.
func TestCheck(t *testing.T) {
	b, _, _ := newBackend(t)
	if err := b.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	missing, _, _ := newBackend(t, func(c *s3.Config) { c.Bucket = "no-such-bucket" })
	if err := missing.Check(context.Background()); err == nil {
		t.Errorf("Check of a missing bucket passed")
	}

	srv := s3test.StartT(t)
	bucket := srv.Bucket(t)
	down, err := s3.New(context.Background(), s3.Config{
		Bucket: bucket, Endpoint: srv.Endpoint, ForcePathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := down.Check(context.Background()); err != nil {
		t.Fatalf("Check before stopping: %v", err)
	}
	srv.Stop()
	err = down.Check(context.Background())
	if err == nil {
		t.Fatalf("Check of a stopped server passed")
	}
	if strings.Contains(err.Error(), srv.SecretKey) {
		t.Errorf("error %q contains the secret key", err)
	}
}
