package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/httpmirror/httpmirror/storage"
)

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
