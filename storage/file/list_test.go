package file_test

import (
	"context"
	"os"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/file"
)

// After a restart the index knows only file names and sizes: List reads
// each object's key from its trailer, skips damaged files, and lists what
// was committed before the restart.
func TestListAfterRestart(t *testing.T) {
	dir := t.TempDir()
	b, err := file.New(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"example.com/a/1": 10, "example.com/a/2": 2000, "example.com/b": 30}
	for k, n := range want {
		if err := put(t, b, k, testutil.Payload(uint64(n), n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := put(t, b, "example.com/a/damaged", testutil.Payload(9, 100)); err != nil {
		t.Fatal(err)
	}
	damaged, _ := b.Path("example.com/a/damaged")
	b.Close()
	if err := os.Truncate(damaged, 50); err != nil {
		t.Fatal(err)
	}

	b2, err := file.New(dir, file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	for round := range 2 { // reading the trailers, then from memory
		objs, next, err := b2.List(context.Background(), "example.com/a/", "", 0)
		if err != nil || next != "" {
			t.Fatalf("round %d: List: next %q, %v", round, next, err)
		}
		if len(objs) != 2 {
			t.Fatalf("round %d: listed %d objects; want example.com/a/1 and /2", round, len(objs))
		}
		for _, o := range objs {
			if int(o.Size) != want[o.Key] || o.StoredAt.IsZero() {
				t.Errorf("round %d: %q size %d, StoredAt %v; want %d", round, o.Key, o.Size, o.StoredAt, want[o.Key])
			}
		}
	}
	loc, err := b2.Location("example.com/b")
	if p, _ := b2.Path("example.com/b"); err != nil || loc != p {
		t.Errorf("Location = %q, %v; want the object file %q", loc, err, p)
	}
}
