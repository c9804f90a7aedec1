package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

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

// testRefreshKeepsMark checks that a refresh keeps the mirror's own
// headers (X-Httpmirror-*), as an invalidation stores its mark, for Stat,
// Open and a later refresh, and that the next refresh without one
// removes it: every replica sharing the store sees the mark, and a
// revalidation answers it.
func testRefreshKeepsMark(t *testing.T, b storage.Backend) {
	r, ok := b.(storage.Refresher)
	if !ok {
		t.Skip("backend does not implement storage.Refresher")
	}
	ctx := context.Background()
	key := "example.com/marked.bin"
	data := testutil.Payload(13, 5000)
	info := sampleInfo(int64(len(data)))
	info.StoredAt = time.Now().Add(-time.Hour).Truncate(time.Second)
	put(t, b, key, data, info)
	const mark = "X-Httpmirror-Invalidated"
	marked := info
	marked.Header = info.Header.Clone()
	marked.Header.Set(mark, "2026-01-02T03:04:05Z")
	if err := r.Refresh(ctx, key, marked); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	st, err := b.Stat(ctx, key)
	if err != nil || st.Header.Get(mark) != "2026-01-02T03:04:05Z" || !st.StoredAt.Equal(info.StoredAt) || st.Header.Get("Content-Disposition") == "" {
		t.Fatalf("Stat after the marking refresh: %+v, %v; want the mark, the same StoredAt and the other headers", st, err)
	}
	got, body := read(t, b, key)
	if got.Header.Get(mark) == "" || !bytes.Equal(body, data) {
		t.Fatalf("Open after the marking refresh: header %v, %d bytes; want the mark and the same body", got.Header, len(body))
	}
	if err := r.Refresh(ctx, key, info); err != nil {
		t.Fatalf("second Refresh: %v", err)
	}
	if st, err := b.Stat(ctx, key); err != nil || st.Header.Get(mark) != "" {
		t.Errorf("Stat after a refresh without the mark: %v, %v; want it gone", st.Header, err)
	}
}
