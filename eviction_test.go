package httpmirror_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/file"
)

// Filling three times the cache's size limit leaves it at or under the
// limit with the most recently used objects present, and a response
// streaming an object during the churn is delivered whole.
func TestCacheSizeLimit(t *testing.T) {
	o := newOrigin(t)
	const limit = 2 << 20
	const size = 100000
	const n = 3 * limit / size
	for i := range n {
		o.Put(fmt.Sprintf("/obj/%d", i), payload(uint64(100+i), size))
	}
	streamed := payload(99, 1<<20)
	o.Put("/streamed.bin", streamed)
	root := filepath.Join(t.TempDir(), "cache")
	store, err := file.New(root, file.Options{MaxSize: limit})
	if err != nil {
		t.Fatal(err)
	}
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.RemoteCache = store })

	// Cache the large object, then start a client on it and keep it open
	// while everything else churns through the cache.
	get(t, m.url(o, "/streamed.bin"))
	waitFills(t, m)
	resp, err := http.Get(m.url(o, "/streamed.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 4096)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}

	for i := range n {
		if r := get(t, m.url(o, fmt.Sprintf("/obj/%d", i))); r.StatusCode != 200 || len(r.body) != size {
			t.Fatalf("object %d: status %d, %d bytes", i, r.StatusCode, len(r.body))
		}
		waitFills(t, m)
		if got := testutil.DirBytes(filepath.Join(root, "objects")); got > limit {
			t.Fatalf("after %d objects the cache holds %d bytes; limit %d", i+1, got, limit)
		}
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(append(head, rest...), streamed) {
		t.Fatalf("object streamed during eviction: %d bytes, %v; want it whole", len(head)+len(rest), err)
	}

	// The last objects are hits; the first ones were evicted.
	gets := o.Gets.Load()
	for i := n - 5; i < n; i++ {
		get(t, m.url(o, fmt.Sprintf("/obj/%d", i)))
	}
	if o.Gets.Load() != gets {
		t.Errorf("recently used objects were evicted: %d extra origin GETs", o.Gets.Load()-gets)
	}
	if _, err := store.Stat(context.Background(), o.HostPort()+"/obj/0"); err == nil {
		t.Errorf("the least recently used object is still cached")
	}
	if st := store.Stats(); st.Evictions == 0 || st.Bytes > limit {
		t.Errorf("Stats = %+v", st)
	}
}
