// Package storagetest is the conformance suite every storage backend runs.
//
// A backend's test calls Run with a constructor that returns a fresh, empty
// backend for each subtest.
package storagetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

// Run runs the suite against backends made by newBackend, including the
// suites of the optional capabilities the backends implement. A backend
// that sends large bodies in parts should be configured with parts of at
// most 5 MiB, so that the bodies of PartedSize take that path.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"Missing", testMissing},
		{"RoundTrip", testRoundTrip},
		{"InvisibleUntilCommit", testInvisibleUntilCommit},
		{"Cancel", testCancel},
		{"CloseWithoutCommit", testCloseWithoutCommit},
		{"SizeMismatch", testSizeMismatch},
		{"UnknownSize", testUnknownSize},
		{"Empty", testEmpty},
		{"Seek", testSeek},
		{"Replace", testReplace},
		{"Delete", testDelete},
		{"InvalidKeys", testInvalidKeys},
		{"DirectoryKeyDistinct", testDirectoryKeyDistinct},
		{"Spool", testSpool},
		{"ConcurrentWriters", testConcurrentWriters},
		{"UpdateInfo", testUpdateInfo},
		{"UpdateInfoCancelled", testUpdateInfoCancelled},
		{"Refresh", testRefresh},
		{"RefreshKeepsMark", testRefreshKeepsMark},
		{"List", testList},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newBackend(t))
		})
	}
	runClaims(t, newBackend)
}

func sampleInfo(size int64) storage.Info {
	return storage.Info{
		Size:         size,
		ETag:         `"abc-123"`,
		LastModified: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		ContentType:  "application/x-tar",
		Header:       http.Header{"Content-Disposition": {`attachment; filename="a.tar"`}},
	}
}

// put stores data under key and fails the test on error.
func put(t *testing.T, b storage.Backend, key string, data []byte, info storage.Info) {
	t.Helper()
	ctx := context.Background()
	w, err := b.Create(ctx, key, info)
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatalf("Commit(%q): %v", key, err)
	}
}

// read opens key and returns its info and whole body.
func read(t *testing.T, b storage.Backend, key string) (storage.Info, []byte) {
	t.Helper()
	o, err := b.Open(context.Background(), key)
	if err != nil {
		t.Fatalf("Open(%q): %v", key, err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return o.Info(), data
}

func wantNotFound(t *testing.T, b storage.Backend, key string) {
	t.Helper()
	if _, err := b.Stat(context.Background(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat(%q) error = %v; want ErrNotFound", key, err)
	}
	if o, err := b.Open(context.Background(), key); !errors.Is(err, storage.ErrNotFound) {
		if err == nil {
			o.Close()
		}
		t.Errorf("Open(%q) error = %v; want ErrNotFound", key, err)
	}
}

func testMissing(t *testing.T, b storage.Backend) {
	wantNotFound(t, b, "example.com/missing.bin")
}

func testRoundTrip(t *testing.T, b storage.Backend) {
	key := "example.com/pool/a/file.tar"
	data := testutil.Payload(1, 3<<20+17)
	want := sampleInfo(int64(len(data)))
	put(t, b, key, data, want)

	info, err := b.Stat(context.Background(), key)
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	checkInfo(t, info, want, key)
	oinfo, got := read(t, b, key)
	checkInfo(t, oinfo, want, key)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("body differs: got %d bytes; want %d", len(got), len(data))
	}
}

func checkInfo(t *testing.T, got, want storage.Info, key string) {
	t.Helper()
	if got.Key != key {
		t.Errorf("Key = %q; want %q", got.Key, key)
	}
	if got.Size != want.Size {
		t.Errorf("Size = %d; want %d", got.Size, want.Size)
	}
	if got.ETag != want.ETag {
		t.Errorf("ETag = %q; want %q", got.ETag, want.ETag)
	}
	if !got.LastModified.Equal(want.LastModified) {
		t.Errorf("LastModified = %v; want %v", got.LastModified, want.LastModified)
	}
	if got.ContentType != want.ContentType {
		t.Errorf("ContentType = %q; want %q", got.ContentType, want.ContentType)
	}
	for k, v := range want.Header {
		if fmt.Sprint(got.Header[k]) != fmt.Sprint(v) {
			t.Errorf("Header[%s] = %q; want %q", k, got.Header[k], v)
		}
	}
	if got.StoredAt.IsZero() {
		t.Errorf("StoredAt is zero")
	}
}

func testDelete(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	key := "example.com/deleted.bin"
	put(t, b, key, testutil.Payload(10, 10), sampleInfo(10))
	if err := b.Delete(ctx, key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, b, key)
	if err := b.Delete(ctx, key); err != nil {
		t.Errorf("Delete of a missing object: %v", err)
	}
}
