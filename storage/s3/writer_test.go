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
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/s3"
)

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
	peak := testutil.PeakHeap(func() {
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
		peak = max(peak, testutil.PeakHeap(func() { writeStream(b, be, fmt.Sprintf("example.com/bench/%d", i), size, uint64(i)) }))
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
