package file

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
)

// indexResident returns the kilobytes of index.db's mapping resident in
// this process, from /proc/self/smaps.
func indexResident(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		// A mapping's first line: range, permissions, offset, device,
		// inode and, for a file, its path.
		if fields := strings.Fields(line); len(fields) >= 5 && strings.Contains(fields[0], "-") && len(fields[1]) == 4 {
			in = len(fields) >= 6 && fields[len(fields)-1] == path
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			kb += n
		}
	}
	return kb
}

// The pages of the index that a listing read leave the resident set at
// the applier's next drop, and a listing after it still reads them all.
func TestIndexPagesLeaveTheResidentSet(t *testing.T) {
	dir := t.TempDir()
	keys := keysN("example.com/pages/", 3000)
	seed(t, dir, keys)
	b, err := New(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	list := func() int {
		n, token := 0, ""
		for {
			objs, next, err := b.List(context.Background(), "example.com/pages/", token, 1000)
			if err != nil {
				t.Fatal(err)
			}
			n += len(objs)
			if next == "" {
				return n
			}
			token = next
		}
	}
	if n := list(); n != len(keys) {
		t.Fatalf("listed %d; want %d", n, len(keys))
	}
	path := b.ix.st.dbPath
	before := indexResident(t, path)
	if before == 0 {
		t.Fatalf("no page of %s resident after a listing: the test cannot tell", path)
	}
	b.ix.st.dropPages()
	if after := indexResident(t, path); after != 0 {
		t.Errorf("%d kB of the index resident after the drop (%d before); want 0", after, before)
	}
	if n := list(); n != len(keys) {
		t.Errorf("listed %d after the drop; want %d", n, len(keys))
	}
}
