package storagetest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

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
