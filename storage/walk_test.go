package storage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// Walk visits every object under the prefix once, a page at a time, and
// says whether the listing ended within the pages allowed; an error of
// fn stops it.
func TestWalk(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	const n = storage.DefaultListLimit + 10 // two pages
	for i := range n {
		w, err := b.Create(ctx, fmt.Sprintf("a.example/%05d", i), storage.Info{Size: 1})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte{1})
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	visit := func(o storage.Info) error {
		if seen[o.Key] {
			return fmt.Errorf("%s visited twice", o.Key)
		}
		seen[o.Key] = true
		return nil
	}
	if complete, err := storage.Walk(ctx, b, "a.example/", 1, visit); complete || err != nil || len(seen) != storage.DefaultListLimit {
		t.Fatalf("one page: complete %v, err %v, %d objects; want an incomplete page of %d", complete, err, len(seen), storage.DefaultListLimit)
	}
	clear(seen)
	if complete, err := storage.Walk(ctx, b, "a.example/", 10, visit); !complete || err != nil || len(seen) != n {
		t.Fatalf("ten pages: complete %v, err %v, %d objects; want all %d", complete, err, len(seen), n)
	}
	stop := errors.New("stop")
	calls := 0
	if _, err := storage.Walk(ctx, b, "a.example/", 10, func(storage.Info) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("fn's error: %v after %d calls; want it at once", err, calls)
	}
}
