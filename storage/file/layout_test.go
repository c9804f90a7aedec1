package file

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// checkLayout fails unless the objects directory of the cache in dir has
// one level of directories, named after the first byte of their files.
func checkLayout(t *testing.T, dir string) {
	t.Helper()
	objects := filepath.Join(dir, objectsDir)
	filepath.WalkDir(objects, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == objects {
			return nil
		}
		rel, _ := filepath.Rel(objects, p)
		parts := strings.Split(rel, string(filepath.Separator))
		switch {
		case d.IsDir() && (len(parts) != 1 || len(d.Name()) != 2):
			t.Errorf("directory %s in the objects directory", rel)
		case !d.IsDir() && (len(parts) != 2 || !strings.HasPrefix(d.Name(), parts[0])):
			t.Errorf("file %s out of its place", rel)
		}
		return nil
	})
}

// A cache written in the older layout (objects/ab/cd/<hash>) is moved into
// this one at the start, also when an earlier start was cut short: every
// object still listed and served, the index kept, commits' leftovers gone.
func TestOlderLayoutMovedAtStart(t *testing.T) {
	dir := t.TempDir()
	keys := keysN("layout/", 300)
	seed(t, dir, keys)
	objects := filepath.Join(dir, objectsDir)
	var leftover string
	for i, k := range keys {
		name := hexName(k)
		if i%7 == 0 {
			continue // moved already by a start that died
		}
		leaf := filepath.Join(objects, name[0:2], name[2:4])
		if err := os.MkdirAll(leaf, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(objects, name[0:2], name), filepath.Join(leaf, name)); err != nil {
			t.Fatal(err)
		}
		if leftover == "" {
			leftover = filepath.Join(leaf, name+".0123456789ab.42")
			if err := os.WriteFile(leftover, []byte("half a commit"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Remove(filepath.Join(dir, layoutName)); err != nil {
		t.Fatal(err)
	}
	if testutil.CountFiles(t, objects) != len(keys)+1 {
		t.Fatalf("set-up: %d files", testutil.CountFiles(t, objects))
	}

	b, files := checkConsistent(t, dir, Options{})
	if len(files) != len(keys) {
		t.Errorf("%d objects after the move; want %d", len(files), len(keys))
	}
	checkLayout(t, dir)
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover of a commit still there: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, layoutName)); err != nil || string(got) != layout {
		t.Errorf("layout file %q, %v", got, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, dir, Options{})
}

// An object directory removed by hand under a running cache is made again
// by the next commit that needs it, small (written at its commit) or not
// (renamed from tmp/): no commit fails for it.
func TestObjectDirectoryRemovedUnderRunningCache(t *testing.T) {
	dir := t.TempDir()
	b := mustNew(t, dir, Options{})
	first := hexName("removed/0")[0:2]
	var keys []string
	for i := 0; len(keys) < 3; i++ {
		if k := fmt.Sprintf("removed/%d", i); hexName(k)[0:2] == first {
			keys = append(keys, k)
		}
	}
	bodies := [][]byte{testutil.Payload(1, 1000), testutil.Payload(2, 1000), testutil.Payload(3, 300<<10)}
	for i, k := range keys {
		if i > 0 {
			if err := os.RemoveAll(filepath.Join(dir, objectsDir, first)); err != nil {
				t.Fatal(err)
			}
		}
		if err := putBody(b, k, bodies[i]); err != nil {
			t.Fatalf("commit %d after its directory was removed: %v", i, err)
		}
		if got := readKey(t, b, k); !bytes.Equal(got, bodies[i]) {
			t.Errorf("%q served %d bytes, not its body", k, len(got))
		}
	}
	for i := range 300 {
		if err := putKey(b, fmt.Sprintf("many/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	checkLayout(t, dir)
	if n := len(readNames(filepath.Join(dir, objectsDir), 0)); n > 256 {
		t.Errorf("%d object directories; want at most 256", n)
	}
}
