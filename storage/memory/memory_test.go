package memory_test

import (
	"context"
	"time"

	"testing"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
	"github.com/httpmirror/httpmirror/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return memory.New() })
}

// Opens count as hits and move the last access; Expire removes what was
// not opened since the cutoff, and nothing open.
func TestHitsAndExpire(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := memory.New()
	b.Now = func() time.Time { return now }
	put := func(key string) {
		w, err := b.Create(ctx, key, storage.Info{Size: 1})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("x"))
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	for _, k := range []string{"h/idle", "h/read", "h/open"} {
		put(k)
	}
	open, err := b.Open(ctx, "h/open")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(48 * time.Hour)
	for range 3 {
		o, err := b.Open(ctx, "h/read")
		if err != nil {
			t.Fatal(err)
		}
		o.Close()
	}
	if o, err := b.Reread(ctx, "h/read"); err == nil { // not a hit
		o.Close()
	}
	objs, _, _ := b.List(ctx, "h/", "", 0)
	for _, o := range objs {
		if o.Key == "h/read" && (o.Hits != 3 || !o.LastAccess.Equal(now)) {
			t.Errorf("h/read: hits %d, last access %v; want 3, %v", o.Hits, o.LastAccess, now)
		}
	}
	n, err := b.Expire(ctx, now.Add(-time.Hour), nil)
	if err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v; want 1", n, err)
	}
	if _, err := b.Stat(ctx, "h/idle"); err == nil {
		t.Error("h/idle survived")
	}
	open.Close()
	if n, _ := b.Expire(ctx, now.Add(-time.Hour), nil); n != 1 {
		t.Errorf("after the reader closed, Expire = %d; want 1", n)
	}
}
