package storagetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

// listAll pages through the listing of prefix, limit objects at a time,
// and returns every object listed, failing on a key listed twice.
func listAll(t *testing.T, l storage.Lister, prefix string, limit int) map[string]storage.Info {
	t.Helper()
	got := map[string]storage.Info{}
	token := ""
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatalf("List(%q) did not end after 100 pages", prefix)
		}
		objs, next, err := l.List(context.Background(), prefix, token, limit)
		if err != nil {
			t.Fatalf("List(%q, %q): %v", prefix, token, err)
		}
		if limit > 0 && len(objs) > limit {
			t.Fatalf("List(%q) returned %d objects; limit %d", prefix, len(objs), limit)
		}
		for _, o := range objs {
			if _, dup := got[o.Key]; dup {
				t.Fatalf("List(%q) listed %q twice", prefix, o.Key)
			}
			got[o.Key] = o
		}
		if next == "" {
			return got
		}
		token = next
	}
}

func sortedKeys(m map[string]storage.Info) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func testList(t *testing.T, b storage.Backend) {
	l, ok := b.(storage.Lister)
	if !ok {
		t.Skip("backend does not implement storage.Lister")
	}
	ctx := context.Background()
	// Keys S3 stores under other names: a directory key, a key with the
	// encoding's marker, and one with a segment too long for a file name.
	long := "example.com/a/" + strings.Repeat("L", 300)
	keys := []string{
		"example.com/a/1", "example.com/a/2/x", "example.com/a/", "example.com/a/~~odd",
		long, "example.com/ab", "example.com/b", "other.org/a/1",
	}
	sizes := map[string]int64{}
	for i, k := range keys {
		data := testutil.Payload(uint64(200+i), 10+i)
		sizes[k] = int64(len(data))
		put(t, b, k, data, sampleInfo(int64(len(data))))
	}
	// Objects being written are not listed.
	w, err := b.Create(ctx, "example.com/a/pending", sampleInfo(3))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("abc"))

	for _, c := range []struct {
		prefix string
		limit  int
		want   []string
	}{
		{"example.com/a/", 2, []string{"example.com/a/", "example.com/a/1", "example.com/a/2/x", long, "example.com/a/~~odd"}},
		{"example.com/a", 0, []string{"example.com/a/", "example.com/a/1", "example.com/a/2/x", long, "example.com/a/~~odd", "example.com/ab"}},
		{"", 3, keys},
		{"example.com/a/2/", 1, []string{"example.com/a/2/x"}},
		{"nothing.example/", 10, nil},
	} {
		got := listAll(t, l, c.prefix, c.limit)
		want := slices.Clone(c.want)
		slices.Sort(want)
		if gk := sortedKeys(got); !slices.Equal(gk, want) {
			t.Errorf("List(%q) keys = %q; want %q", c.prefix, gk, want)
			continue
		}
		for k, info := range got {
			if info.Size != sizes[k] || info.StoredAt.IsZero() {
				t.Errorf("List(%q): %q has Size %d, StoredAt %v; want %d and a time", c.prefix, k, info.Size, info.StoredAt, sizes[k])
			}
		}
	}

	// A deleted object leaves the listing.
	if err := b.Delete(ctx, "example.com/a/1"); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, l, "example.com/a/1", 0); len(got) != 0 {
		t.Errorf("List after Delete = %q; want nothing", sortedKeys(got))
	}
	// Garbage, a key where a token belongs, a token edited by hand and a
	// token of another prefix are refused, never taken for an empty page.
	_, tok, err := l.List(ctx, "example.com/", "", 1)
	if err != nil || tok == "" {
		t.Fatalf("List(example.com/, limit 1) = token %q, %v; want a next page", tok, err)
	}
	edited := []byte(tok)
	edited[len(edited)-1] ^= 1
	for _, c := range []struct{ name, prefix, token string }{
		{"garbage", "", "\x00not a token\xff"},
		{"word", "", "garbage"},
		{"base64", "", "AAAAAAAAAAAA"},
		{"raw key", "", "example.com/a/1"},
		{"edited", "example.com/", string(edited)},
		{"other prefix", "example.org/", tok},
	} {
		if objs, _, err := l.List(ctx, c.prefix, c.token, 1); !errors.Is(err, storage.ErrInvalidToken) {
			t.Errorf("List with token %s: %d objects, %v; want ErrInvalidToken", c.name, len(objs), err)
		}
	}
}
