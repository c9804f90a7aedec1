// Package storagetest is the conformance suite every storage backend runs.
//
// A backend's test calls Run with a constructor that returns a fresh, empty
// backend for each subtest.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

// Run runs the suite against backends made by newBackend.
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
		{"Refresh", testRefresh},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newBackend(t))
		})
	}
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

func testInvisibleUntilCommit(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	key := "example.com/later.bin"
	data := testutil.Payload(2, 1000)
	w, err := b.Create(ctx, key, sampleInfo(int64(len(data))))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if got := w.Written(); got != int64(len(data)) {
		t.Errorf("Written = %d; want %d", got, len(data))
	}
	wantNotFound(t, b, key)
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, got := read(t, b, key); !bytes.Equal(got, data) {
		t.Errorf("body after commit differs")
	}
}

func testCancel(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	key := "example.com/cancelled.bin"
	w, err := b.Create(ctx, key, sampleInfo(100))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testutil.Payload(3, 100))
	if err := w.Cancel(ctx); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if err := w.Commit(ctx); err == nil {
		t.Errorf("Commit after Cancel succeeded")
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Cancel: %v", err)
	}
	wantNotFound(t, b, key)
}

func testCloseWithoutCommit(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	key := "example.com/abandoned.bin"
	w, err := b.Create(ctx, key, sampleInfo(100))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testutil.Payload(4, 100))
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wantNotFound(t, b, key)
}

func testSizeMismatch(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	key := "example.com/short.bin"
	w, err := b.Create(ctx, key, sampleInfo(101))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(testutil.Payload(5, 100))
	if err := w.Commit(ctx); !errors.Is(err, storage.ErrSizeMismatch) {
		t.Fatalf("Commit of 100 bytes declared as 101: error = %v; want ErrSizeMismatch", err)
	}
	w.Cancel(ctx)
	wantNotFound(t, b, key)
}

func testUnknownSize(t *testing.T, b storage.Backend) {
	key := "example.com/chunked.bin"
	data := testutil.Payload(6, 5000)
	put(t, b, key, data, sampleInfo(-1))
	info, got := read(t, b, key)
	if info.Size != int64(len(data)) || !bytes.Equal(got, data) {
		t.Errorf("Size = %d, %d bytes read; want %d", info.Size, len(got), len(data))
	}
}

func testEmpty(t *testing.T, b storage.Backend) {
	key := "example.com/empty"
	put(t, b, key, nil, sampleInfo(0))
	info, got := read(t, b, key)
	if info.Size != 0 || len(got) != 0 {
		t.Errorf("Size = %d, %d bytes read; want 0", info.Size, len(got))
	}
}

func testSeek(t *testing.T, b storage.Backend) {
	key := "example.com/seek.bin"
	data := testutil.Payload(7, 10000)
	put(t, b, key, data, sampleInfo(int64(len(data))))
	o, err := b.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	end, err := o.Seek(0, io.SeekEnd)
	if err != nil || end != int64(len(data)) {
		t.Fatalf("Seek(0, End) = %d, %v; want %d", end, err, len(data))
	}
	for _, r := range []struct{ off, n int64 }{{0, 10}, {9990, 10}, {5000, 1234}, {1, 9999}} {
		if _, err := o.Seek(r.off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(io.LimitReader(o, r.n))
		if err != nil || !bytes.Equal(got, data[r.off:r.off+r.n]) {
			t.Errorf("range %d+%d: %d bytes, err %v; want the stored bytes", r.off, r.n, len(got), err)
		}
	}
	// Reading past the end yields EOF, never trailing bytes of the store.
	if _, err := o.Seek(int64(len(data))-3, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(o)
	if !bytes.Equal(rest, data[len(data)-3:]) {
		t.Errorf("tail read = %q; want %q", rest, data[len(data)-3:])
	}
}

func testReplace(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	key := "example.com/replaced.bin"
	old := testutil.Payload(8, 200000)
	put(t, b, key, old, sampleInfo(int64(len(old))))
	o, err := b.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	head := make([]byte, 100)
	if _, err := io.ReadFull(o, head); err != nil {
		t.Fatal(err)
	}

	nw := testutil.Payload(9, 1234)
	info := sampleInfo(int64(len(nw)))
	info.ETag = `"new"`
	put(t, b, key, nw, info)

	// The reader that opened the old object finishes it.
	rest, err := io.ReadAll(o)
	if err != nil || !bytes.Equal(append(head, rest...), old) {
		t.Errorf("old reader got %d bytes (err %v); want the old %d bytes", len(head)+len(rest), err, len(old))
	}
	got, body := read(t, b, key)
	if got.ETag != `"new"` || !bytes.Equal(body, nw) {
		t.Errorf("after replace: ETag %q, %d bytes; want the new object", got.ETag, len(body))
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

func testInvalidKeys(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	for _, key := range []string{
		"", "/", "/abs/path", "a/../b", "../x", "a/./b", "a//b", "a\x00b", "a\r\nb", `a\b`,
		string(bytes.Repeat([]byte("x"), storage.MaxKeyLength+1)), "\xff\xfe",
	} {
		if _, err := b.Stat(ctx, key); !errors.Is(err, storage.ErrInvalidKey) {
			t.Errorf("Stat(%q) error = %v; want ErrInvalidKey", key, err)
		}
		if w, err := b.Create(ctx, key, sampleInfo(1)); !errors.Is(err, storage.ErrInvalidKey) {
			if err == nil {
				w.Close()
			}
			t.Errorf("Create(%q) error = %v; want ErrInvalidKey", key, err)
		}
	}
}

func testDirectoryKeyDistinct(t *testing.T, b storage.Backend) {
	file, dir := "example.com/simple/pkg", "example.com/simple/pkg/"
	put(t, b, file, []byte("file"), sampleInfo(4))
	put(t, b, dir, []byte("directory"), sampleInfo(9))
	if _, got := read(t, b, file); string(got) != "file" {
		t.Errorf("%q = %q; want %q", file, got, "file")
	}
	if _, got := read(t, b, dir); string(got) != "directory" {
		t.Errorf("%q = %q; want %q", dir, got, "directory")
	}
}

func testSpool(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	data := testutil.Payload(11, 100000)
	w, err := b.Create(ctx, "example.com/spool.bin", sampleInfo(int64(len(data))))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sp, ok := w.(storage.Spooler)
	if !ok {
		t.Skip("writer does not implement storage.Spooler")
	}
	for i := 0; i < len(data); i += 30000 {
		chunk := data[i:min(i+30000, len(data))]
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, i+len(chunk))
		if _, err := sp.ReadAt(got, 0); err != nil {
			t.Fatalf("ReadAt after %d bytes: %v", i+len(chunk), err)
		}
		if !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("ReadAt after %d bytes: content differs", len(got))
		}
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Still readable after commit, until Close.
	got := make([]byte, 10)
	if _, err := sp.ReadAt(got, 50000); err != nil || !bytes.Equal(got, data[50000:50010]) {
		t.Errorf("ReadAt after commit: %v", err)
	}

	// A cancelled writer's bytes stay readable until Close too: readers of
	// a failed fill finish what they were given.
	w2, err := b.Create(ctx, "example.com/spool-cancel.bin", sampleInfo(1000))
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	w2.Write(data[:1000])
	w2.Cancel(ctx)
	if _, err := w2.(storage.Spooler).ReadAt(got, 990); err != nil || !bytes.Equal(got, data[990:1000]) {
		t.Errorf("ReadAt after Cancel: %v", err)
	}
	wantNotFound(t, b, "example.com/spool-cancel.bin")
}

func testConcurrentWriters(t *testing.T, b storage.Backend) {
	key := "example.com/raced.bin"
	const writers = 8
	payloads := make([][]byte, writers)
	var wg sync.WaitGroup
	for i := range writers {
		payloads[i] = testutil.Payload(uint64(100+i), 50000+i)
		wg.Go(func() {
			ctx := context.Background()
			w, err := b.Create(ctx, key, sampleInfo(int64(len(payloads[i]))))
			if err != nil {
				t.Error(err)
				return
			}
			defer w.Close()
			for off := 0; off < len(payloads[i]); off += 4096 {
				w.Write(payloads[i][off:min(off+4096, len(payloads[i]))])
			}
			if err := w.Commit(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	info, got := read(t, b, key)
	for _, p := range payloads {
		if bytes.Equal(got, p) && info.Size == int64(len(p)) {
			return
		}
	}
	t.Errorf("object after concurrent commits (%d bytes) matches none of the writers", len(got))
}

func testRefresh(t *testing.T, b storage.Backend) {
	r, ok := b.(storage.Refresher)
	if !ok {
		t.Skip("backend does not implement storage.Refresher")
	}
	ctx := context.Background()
	key := "example.com/refreshed.bin"
	data := testutil.Payload(12, 70000)
	info := sampleInfo(int64(len(data)))
	put(t, b, key, data, info)
	o, err := b.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()

	nw := info
	nw.StoredAt = time.Now().Add(time.Hour).Truncate(time.Second)
	nw.Header = http.Header{"Cache-Control": {"max-age=60"}}
	if err := r.Refresh(ctx, key, nw); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	got, body := read(t, b, key)
	if !bytes.Equal(body, data) || !got.StoredAt.Equal(nw.StoredAt) || got.Header.Get("Cache-Control") != "max-age=60" {
		t.Fatalf("after Refresh: %d bytes, StoredAt %v, Cache-Control %q", len(body), got.StoredAt, got.Header.Get("Cache-Control"))
	}
	// A reader that opened before the refresh reads on undisturbed.
	if old, err := io.ReadAll(o); err != nil || !bytes.Equal(old, data) {
		t.Fatalf("reader across Refresh: %d bytes, %v", len(old), err)
	}
	// A refresh for another version of the object changes nothing.
	stale := info
	stale.ETag = `"other"`
	if err := r.Refresh(ctx, key, stale); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Refresh with a stale ETag: %v; want ErrNotFound", err)
	}
	if err := r.Refresh(ctx, "example.com/absent", info); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Refresh of a missing object: %v; want ErrNotFound", err)
	}
}
