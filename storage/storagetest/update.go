package storagetest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

// PartedSize is the size of the largest body the InfoUpdater test writes:
// over 5 MiB, S3's smallest part, so that a backend configured with parts
// of that size sends it as a multipart upload (whose metadata is fixed
// when it starts) and the smaller bodies with a single request.
const PartedSize = 5<<20 + 12345

// digestHeader is the header a fill adds once the body's digest is known.
const digestHeader = "X-Httpmirror-Digest"

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// updater returns w's InfoUpdater, or skips the test.
func updater(t *testing.T, w storage.Writer) storage.InfoUpdater {
	t.Helper()
	u, ok := w.(storage.InfoUpdater)
	if !ok {
		t.Skip("writer does not implement storage.InfoUpdater")
	}
	return u
}

// testUpdateInfo: metadata completed after the body is written (a digest,
// known only at its end) is what Commit publishes, whatever the size and
// whether it was known at Create; Key and Size given to UpdateInfo are
// ignored, and the writer does not share the caller's header.
func testUpdateInfo(t *testing.T, b storage.Backend) {
	for i, tc := range []struct {
		name  string
		size  int
		known bool
	}{
		{"one request", 70000, true},
		{"one request, unknown size", 70000, false},
		{"in parts", PartedSize, true},
		{"in parts, unknown size", PartedSize, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			key := fmt.Sprintf("example.com/updated-%d.bin", i)
			data := testutil.Payload(13, tc.size)
			created := sampleInfo(int64(len(data)))
			if !tc.known {
				created.Size = -1
			}
			w, err := b.Create(ctx, key, created)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			u := updater(t, w)
			for off := 0; off < len(data); off += 64 << 10 {
				if _, err := w.Write(data[off:min(off+64<<10, len(data))]); err != nil {
					t.Fatal(err)
				}
			}

			final := created
			final.Key = "example.com/elsewhere"  // ignored
			final.Size = int64(len(data)) + 1000 // ignored
			final.ContentType = "application/gzip"
			final.Header = created.Header.Clone()
			final.Header.Set(digestHeader, digestOf(data))
			if err := u.UpdateInfo(final); err != nil {
				t.Fatalf("UpdateInfo: %v", err)
			}
			final.Header.Set(digestHeader, "changed by the caller after UpdateInfo")
			wantNotFound(t, b, key)
			if err := w.Commit(ctx); err != nil {
				t.Fatalf("Commit: %v", err)
			}

			want := created
			want.Size = int64(len(data))
			want.ContentType = "application/gzip"
			want.Header = created.Header.Clone()
			want.Header.Set(digestHeader, digestOf(data))
			info, err := b.Stat(ctx, key)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			checkInfo(t, info, want, key)
			oinfo, got := read(t, b, key)
			checkInfo(t, oinfo, want, key)
			if digestOf(got) != digestOf(data) {
				t.Fatalf("body differs: got %d bytes; want %d", len(got), len(data))
			}

			if err := u.UpdateInfo(created); !errors.Is(err, storage.ErrWriterFinished) {
				t.Errorf("UpdateInfo after Commit: %v; want ErrWriterFinished", err)
			}
			if info, err := b.Stat(ctx, key); err != nil || info.Header.Get(digestHeader) != digestOf(data) {
				t.Errorf("after a late UpdateInfo: Stat = %v, %v; want the committed metadata", info.Header, err)
			}
		})
	}
}

// testUpdateInfoCancelled: a writer whose metadata was completed and that
// is cancelled, or closed without Commit, publishes nothing.
func testUpdateInfoCancelled(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	for name, finish := range map[string]func(storage.Writer) error{
		"cancel": func(w storage.Writer) error { return w.Cancel(ctx) },
		"close":  func(w storage.Writer) error { return w.Close() },
	} {
		t.Run(name, func(t *testing.T) {
			for _, size := range []int{1000, PartedSize} {
				key := fmt.Sprintf("example.com/dropped-%s-%d.bin", name, size)
				data := testutil.Payload(14, size)
				w, err := b.Create(ctx, key, sampleInfo(int64(size)))
				if err != nil {
					t.Fatal(err)
				}
				u := updater(t, w)
				if _, err := w.Write(data); err != nil {
					t.Fatal(err)
				}
				info := sampleInfo(int64(size))
				info.Header = http.Header{digestHeader: {digestOf(data)}}
				if err := u.UpdateInfo(info); err != nil {
					t.Fatalf("UpdateInfo: %v", err)
				}
				if err := finish(w); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if err := u.UpdateInfo(info); !errors.Is(err, storage.ErrWriterFinished) {
					t.Errorf("UpdateInfo after %s: %v; want ErrWriterFinished", name, err)
				}
				if err := w.Commit(ctx); err == nil {
					t.Errorf("Commit after %s succeeded", name)
				}
				w.Close()
				wantNotFound(t, b, key)
			}
		})
	}
}
