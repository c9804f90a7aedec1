package file

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

// The writers holding small bodies in memory hold writingMax in all: a
// burst of small misses whose origins or readers are slow cannot grow
// the heap without bound. Beyond it a writer writes to a temporary file;
// memory comes back when a writer closes or spills, and every object
// commits whole either way.
func TestSmallWritersMemoryBounded(t *testing.T) {
	dir := t.TempDir()
	b := mustNew(t, dir, Options{testWriting: 3000})
	ctx := context.Background()
	temps := func() int { return testutil.CountFiles(t, filepath.Join(dir, tmpDir)) }
	create := func(key string, size int) storage.Writer {
		t.Helper()
		w, err := b.Create(ctx, key, storage.Info{Size: int64(size)})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	body := func(key string) []byte { return testutil.Payload(uint64(len(key)), 1000) }

	var ws []storage.Writer
	var keys []string
	for i := range 4 {
		keys = append(keys, fmt.Sprintf("bounded/%d", i))
		ws = append(ws, create(keys[i], 1000))
		ws[i].Write(body(keys[i]))
	}
	if n := temps(); n != 1 {
		t.Fatalf("%d temporary files with 4 small writers and room for 3 in memory; want 1", n)
	}
	// One of those in memory goes: its memory is free again.
	ws[0].Cancel(ctx)
	ws[0].Close()
	keys[0] = "bounded/again"
	ws[0] = create(keys[0], 1000)
	ws[0].Write(body(keys[0]))
	if n := temps(); n != 1 {
		t.Fatalf("%d temporary files after a writer in memory closed and another came; want 1", n)
	}
	// One commits and closes; a body that then outgrows what it announced
	// spills to a file, and its memory is free again too.
	if err := ws[1].Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ws[1].Close()
	grown := create("bounded/grown", 500)
	grown.Write(testutil.Payload(9, 1500))
	if n := temps(); n != 2 {
		t.Fatalf("%d temporary files after a body outgrew memory; want 2", n)
	}
	grown.Cancel(ctx)
	grown.Close()
	late := create("bounded/late", 1000)
	late.Write(body("bounded/late"))
	if n := temps(); n != 1 {
		t.Fatalf("%d temporary files; want 1 (the writer beyond the bound): the late one fits in memory", n)
	}
	ws, keys = append(ws, late), append(keys, "bounded/late")
	for i, w := range ws {
		if i == 1 {
			if got := readKey(t, b, keys[i]); !bytes.Equal(got, body(keys[i])) {
				t.Errorf("%s served %d bytes, not its body", keys[i], len(got))
			}
			continue
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatalf("commit of %s: %v", keys[i], err)
		}
		w.Close()
		if got := readKey(t, b, keys[i]); !bytes.Equal(got, body(keys[i])) {
			t.Errorf("%s served %d bytes, not its body", keys[i], len(got))
		}
	}
	if got := b.ix.writing.Load(); got != 0 {
		t.Errorf("writers hold %d bytes after closing; want 0", got)
	}
}
