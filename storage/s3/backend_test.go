package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
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
}

func (c *opCounter) RoundTrip(r *http.Request) (*http.Response, error) {
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
	case r.Method == http.MethodPut:
		op = "PutObject"
	case r.Method == http.MethodDelete && q.Has("uploadId"):
		op = "AbortMultipartUpload"
	default:
		op = r.Method
	}
	c.mu.Lock()
	if c.ops == nil {
		c.ops = map[string]int{}
	}
	c.ops[op]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
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

// A body larger than a part goes up in parts, with a known size or not,
// and comes back byte for byte.
func TestMultipart(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("known size %v", known), func(t *testing.T) {
			var ops opCounter
			b, srv, bucket := newBackend(t, smallChunks, counted(&ops))
			data := testutil.Payload(1, 2*s3.MinChunkSize+12345)
			i := info(int64(len(data)))
			if !known {
				i.Size = -1
			}
			put(t, b, "example.com/multi.bin", data, i)
			if got := ops.count("UploadPart"); got != 3 {
				t.Errorf("%d UploadPart requests; want 3", got)
			}
			if got := ops.count("PutObject"); got != 0 {
				t.Errorf("%d PutObject requests; want 0", got)
			}
			if etag := s3ETag(t, b, srv, bucket, "example.com/multi.bin"); !strings.HasSuffix(etag, `-3"`) {
				t.Errorf("S3 ETag %s; want a multipart ETag of 3 parts", etag)
			}
			if got := readAll(t, b, "example.com/multi.bin"); !bytes.Equal(got, data) {
				t.Fatalf("read back %d bytes, differing; want the %d written", len(got), len(data))
			}
			st, err := b.Stat(context.Background(), "example.com/multi.bin")
			if err != nil || st.Size != int64(len(data)) || st.ETag != `"v1"` {
				t.Errorf("Stat = %+v, %v; want size %d and the origin's ETag", st, err, len(data))
			}
		})
	}
}

// A body that fits in one part is a single PutObject at Commit and nothing
// before.
func TestSmallBodyIsOnePut(t *testing.T) {
	var ops opCounter
	b, _, _ := newBackend(t, counted(&ops))
	ctx := context.Background()
	w, err := b.Create(ctx, "example.com/small", info(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(testutil.Payload(2, 1000))
	if n := len(ops.ops); n != 0 {
		t.Fatalf("%d requests before Commit (%v); want none", n, ops.ops)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if ops.count("PutObject") != 1 || len(ops.ops) != 1 {
		t.Errorf("requests %v; want one PutObject", ops.ops)
	}
}

// Cancel, Close without Commit and a failed Commit abort the multipart
// upload: the store keeps no parts.
func TestUnfinishedUploadsAreAborted(t *testing.T) {
	data := testutil.Payload(3, s3.MinChunkSize+100)
	for name, finish := range map[string]func(storage.Writer) error{
		"cancel": func(w storage.Writer) error { return w.Cancel(context.Background()) },
		"close":  func(w storage.Writer) error { return w.Close() },
		"size mismatch": func(w storage.Writer) error {
			if err := w.Commit(context.Background()); !errors.Is(err, storage.ErrSizeMismatch) {
				return fmt.Errorf("Commit: %v; want ErrSizeMismatch", err)
			}
			return nil
		},
	} {
		t.Run(name, func(t *testing.T) {
			var ops opCounter
			b, srv, bucket := newBackend(t, smallChunks, counted(&ops))
			w, err := b.Create(context.Background(), "example.com/abandoned", info(int64(len(data))+1))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if _, err := w.Write(data); err != nil {
				t.Fatal(err)
			}
			if n := openUploads(t, srv, bucket); n != 1 {
				t.Fatalf("%d uploads in progress after the first part; want 1", n)
			}
			if err := finish(w); err != nil {
				t.Fatal(err)
			}
			if n := openUploads(t, srv, bucket); n != 0 {
				t.Errorf("%d uploads left; want 0", n)
			}
			if ops.count("AbortMultipartUpload") != 1 {
				t.Errorf("%d aborts; want 1", ops.count("AbortMultipartUpload"))
			}
			if _, err := b.Stat(context.Background(), "example.com/abandoned"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat: %v; want ErrNotFound", err)
			}
		})
	}
}

// Open sends one HEAD; seeking costs nothing; a GET starts only when bytes
// are read, and continues while reads are sequential.
func TestReadsAreLazy(t *testing.T) {
	var ops opCounter
	b, _, _ := newBackend(t, counted(&ops))
	data := testutil.Payload(4, 100000)
	put(t, b, "example.com/lazy", data, info(int64(len(data))))
	ops.reset()

	o, err := b.Open(context.Background(), "example.com/lazy")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	// What http.ServeContent does to learn the size, and all a HEAD does.
	if n, err := o.Seek(0, io.SeekEnd); err != nil || n != int64(len(data)) {
		t.Fatalf("Seek(0, End) = %d, %v", n, err)
	}
	o.Seek(0, io.SeekStart)
	if ops.count("HeadObject") != 1 || ops.count("GetObject") != 0 {
		t.Fatalf("after Open and seeks: %v; want one HEAD and no GET", ops.ops)
	}
	o.Seek(1000, io.SeekStart)
	buf := make([]byte, 500)
	for range 2 {
		if _, err := io.ReadFull(o, buf); err != nil {
			t.Fatal(err)
		}
	}
	if ops.count("GetObject") != 1 {
		t.Errorf("%d GETs for two sequential reads; want 1", ops.count("GetObject"))
	}
	if !bytes.Equal(buf, data[1500:2000]) {
		t.Errorf("second read differs from the stored bytes")
	}
	o.Seek(90000, io.SeekStart)
	if _, err := io.ReadFull(o, buf); err != nil || !bytes.Equal(buf, data[90000:90500]) {
		t.Fatalf("read after seek: %v", err)
	}
	if ops.count("GetObject") != 2 {
		t.Errorf("%d GETs after a seek; want 2", ops.count("GetObject"))
	}
}

// A reader whose object is replaced fails on its next ranged GET instead
// of splicing the new object's bytes into the old one's.
func TestReplacedObjectIsNotSpliced(t *testing.T) {
	b, _, _ := newBackend(t)
	old := testutil.Payload(5, 50000)
	put(t, b, "example.com/v", old, info(int64(len(old))))
	o, err := b.Open(context.Background(), "example.com/v")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	nw := testutil.Payload(6, 50000)
	put(t, b, "example.com/v", nw, info(int64(len(nw))))
	o.Seek(100, io.SeekStart)
	_, err = o.Read(make([]byte, 10))
	if !errors.Is(err, s3.ErrChanged) {
		t.Errorf("read after replacement: %v; want ErrChanged", err)
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

// TestMultipartMemory streams 100 MiB through a writer with the default
// part size and reports the peak heap growth; memory is bounded by one
// part, not by the object.
func TestMultipartMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB upload")
	}
	var ops opCounter
	b, _, _ := newBackend(t, counted(&ops))
	const size = 100 << 20
	var want, got []byte
	peak := peakHeap(t, func() {
		want = writeStream(t, b, "example.com/100MiB", size, 8)
	})
	t.Logf("100 MiB multipart upload: peak heap %.1f MiB above the start (part size %d MiB)", float64(peak)/(1<<20), s3.DefaultChunkSize>>20)
	if n := ops.count("UploadPart"); n != 7 {
		t.Errorf("%d UploadPart requests; want 7", n)
	}
	o, err := b.Open(context.Background(), "example.com/100MiB")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	h := sha256.New()
	if n, err := io.Copy(h, o); err != nil || n != size {
		t.Fatalf("read back %d bytes, %v", n, err)
	}
	got = h.Sum(nil)
	if !bytes.Equal(got, want) {
		t.Errorf("sha256 of the stored object differs from what was written")
	}
}

// writeStream writes size pseudo-random bytes (from seed) under key
// without holding them in memory, and returns their SHA-256.
func writeStream(t testing.TB, b storage.Backend, key string, size int64, seed uint64) []byte {
	t.Helper()
	ctx := context.Background()
	w, err := b.Create(ctx, key, info(size))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	h := sha256.New()
	if err := fill(w, h, size, seed); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil)
}

// fill writes size pseudo-random bytes to w and h, 256 KiB at a time like
// the fill engine.
func fill(w io.Writer, h hash.Hash, size int64, seed uint64) error {
	r := rand.NewChaCha8([32]byte{byte(seed)})
	buf := make([]byte, 256<<10)
	for size > 0 {
		n := min(int64(len(buf)), size)
		r.Read(buf[:n])
		h.Write(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		size -= n
	}
	return nil
}

// peakHeap runs f and returns the largest growth of live heap objects over
// the value before f, sampled every millisecond.
func peakHeap(t testing.TB, f func()) uint64 {
	t.Helper()
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	base := read()
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if v := read(); v > peak {
				peak = v
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	if peak < base {
		return 0
	}
	return peak - base
}

// BenchmarkMultipartUpload100MiB reports the peak heap growth of a 100 MiB
// upload (peak-heap-MiB) beside its throughput.
func BenchmarkMultipartUpload100MiB(b *testing.B) {
	srv, err := s3test.Start()
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop()
	bucket, err := srv.NewBucket(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	be, err := s3.New(context.Background(), s3.Config{
		Bucket: bucket, Endpoint: srv.Endpoint, ForcePathStyle: true, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
	})
	if err != nil {
		b.Fatal(err)
	}
	const size = 100 << 20
	b.SetBytes(size)
	var peak uint64
	for i := 0; b.Loop(); i++ {
		peak = max(peak, peakHeap(b, func() { writeStream(b, be, fmt.Sprintf("example.com/bench/%d", i), size, uint64(i)) }))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}

// cutTransport cuts the bodies of the first cuts GET responses after n
// bytes, as a dropped connection would, and counts GETs.
type cutTransport struct {
	n    int64
	cuts atomic.Int64
	gets atomic.Int64
}

func (c *cutTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet || r.URL.Query().Has("uploads") {
		return resp, err
	}
	c.gets.Add(1)
	if c.cuts.Add(-1) >= 0 {
		resp.Body = &cutBody{ReadCloser: resp.Body, left: c.n}
	}
	return resp, nil
}

type cutBody struct {
	io.ReadCloser
	left int64
}

func (b *cutBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, errors.New("connection reset by test")
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// A GET body that breaks is resumed where it stopped, a bounded number of
// times; past that the read fails rather than return short data.
func TestBrokenReadsResume(t *testing.T) {
	ct := &cutTransport{n: 70000}
	b, _, _ := newBackend(t, func(c *s3.Config) { c.HTTPClient = &http.Client{Transport: ct} })
	data := testutil.Payload(8, 300000)
	put(t, b, "example.com/flaky", data, info(int64(len(data))))

	ct.cuts.Store(3)
	if got := readAll(t, b, "example.com/flaky"); !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, differing from the stored ones", len(got))
	}
	if n := ct.gets.Load(); n != 4 {
		t.Errorf("%d GETs; want 4 (three cut, one whole)", n)
	}

	ct.cuts.Store(100)
	o, err := b.Open(context.Background(), "example.com/flaky")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := io.ReadAll(o)
	if err == nil {
		t.Fatalf("read through endless cuts succeeded with %d bytes; want an error", len(got))
	}
	if !bytes.Equal(got, data[:len(got)]) {
		t.Errorf("bytes before the error differ from the stored ones")
	}
}
