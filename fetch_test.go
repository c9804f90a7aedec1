package httpmirror_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/file"
)

// newGate returns a testutil.Gate opened at the latest when the test ends.
func newGate(t testing.TB) *testutil.Gate { return testutil.NewGate(t) }

// firstRequest reports whether r is a fill's first request for its
// object: for the whole object, or for its first segment only (Range from
// byte 0, without If-Range), as a fill that may use several connections
// asks.
func firstRequest(r *http.Request) bool {
	rg := r.Header.Get("Range")
	return r.Header.Get("If-Range") == "" && (rg == "" || rg == "bytes=0-"+strconv.Itoa(fill.DefaultSegmentSize-1))
}

// stallingHook answers a fill's first request with the whole file: it
// serves the first `at` bytes, flushes, calls reached, waits for g, then
// serves the rest. Resumes and segments (with If-Range) are served
// normally.
func stallingHook(at int, reached func(), g *testutil.Gate) testutil.Hook {
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if f == nil || r.Header.Get("If-Range") != "" || r.Method != http.MethodGet {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		w.Header().Set("Last-Modified", f.ModTime.Format(http.TimeFormat))
		w.Write(f.Data[:at])
		w.(http.Flusher).Flush()
		if reached != nil {
			reached()
		}
		g.Wait()
		w.Write(f.Data[at:])
		return true
	}
}

func TestCoalescing50Clients(t *testing.T) {
	o := newOrigin(t)
	data := payload(3, 512<<10)
	o.Put("/pkg.tar", data)
	const clients = 50
	allIn := newGate(t)
	m := newMirror(t, o)
	// Count requests inside the mirror; the origin answers only once all
	// 50 are in, so every one of them overlaps the single fill.
	openWhenEntered(m, clients, allIn)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		allIn.Wait()
		return false
	})

	var wg sync.WaitGroup
	results := make([]response, clients)
	for i := range clients {
		wg.Go(func() { results[i] = get(t, m.url(o, "/pkg.tar")) })
	}
	wg.Wait()
	for i, r := range results {
		if r.StatusCode != 200 || r.err != nil || !bytes.Equal(r.body, data) {
			t.Fatalf("client %d: status %d, %d bytes, err %v; want the object", i, r.StatusCode, len(r.body), r.err)
		}
	}
	if n := o.Gets.Load(); n != 1 {
		t.Fatalf("origin saw %d GETs; want 1", n)
	}
}

// A client that joins while the origin is paused mid-body receives the
// bytes that arrived so far before the origin sends the rest.
func TestJoinerStreamsBeforeOriginFinishes(t *testing.T) {
	o := newOrigin(t)
	data := payload(4, 1<<20)
	o.Put("/slow.bin", data)
	paused := make(chan struct{})
	resume := newGate(t)
	o.SetHook(stallingHook(256<<10, func() { close(paused) }, resume))
	m := newMirror(t, o)

	first, err := http.Get(m.url(o, "/slow.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	<-paused

	second, err := http.Get(m.url(o, "/slow.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer second.Body.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(second.Body, head); err != nil {
		t.Fatalf("joiner read: %v", err)
	}
	// The origin is still paused: these bytes came from the fill's spool.
	if resume.IsOpen() {
		t.Fatal("origin resumed before the joiner got its first bytes")
	}
	if !bytes.Equal(head, data[:len(head)]) {
		t.Fatal("joiner's first bytes differ from the origin's")
	}
	resume.Open()
	rest, err := io.ReadAll(second.Body)
	if err != nil || !bytes.Equal(append(head, rest...), data) {
		t.Fatalf("joiner's body: %d bytes, err %v; want the object", len(head)+len(rest), err)
	}
	all, err := io.ReadAll(first.Body)
	if err != nil || !bytes.Equal(all, data) {
		t.Fatalf("first client's body: %d bytes, err %v", len(all), err)
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
}

func TestRangeWhileFilling(t *testing.T) {
	o := newOrigin(t)
	data := payload(5, 1<<20)
	f := o.Put("/filling.bin", data)
	paused := make(chan struct{})
	resume := newGate(t)
	o.SetHook(stallingHook(512<<10, func() { close(paused) }, resume))
	m := newMirror(t, o)
	u := m.url(o, "/filling.bin")

	first, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	<-paused

	// Bytes that have arrived: answered at once.
	r := do(t, "GET", u, http.Header{"Range": {"bytes=1000-1999"}})
	if r.StatusCode != 206 || !bytes.Equal(r.body, data[1000:2000]) {
		t.Fatalf("range inside the arrived part: status %d, %d bytes", r.StatusCode, len(r.body))
	}
	if cr := r.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 1000-1999/%d", len(data)) {
		t.Errorf("Content-Range = %q", cr)
	}
	// HEAD is answered from what is known.
	h := do(t, "HEAD", u, nil)
	if h.StatusCode != 200 || h.ContentLength != int64(len(data)) || h.Header.Get("Etag") != f.ETag {
		t.Fatalf("HEAD while filling: status %d, length %d, ETag %q", h.StatusCode, h.ContentLength, h.Header.Get("Etag"))
	}
	// A conditional request too.
	if c := do(t, "GET", u, http.Header{"If-None-Match": {f.ETag}}); c.StatusCode != 304 {
		t.Fatalf("If-None-Match while filling: status %d; want 304", c.StatusCode)
	}
	if resume.IsOpen() {
		t.Fatal("origin resumed early")
	}

	// Bytes beyond what arrived: the request waits for them.
	late := make(chan response, 1)
	go func() { late <- do(t, "GET", u, http.Header{"Range": {"bytes=900000-900099"}}) }()
	resume.Open()
	r = <-late
	if r.StatusCode != 206 || !bytes.Equal(r.body, data[900000:900100]) {
		t.Fatalf("range beyond the arrived part: status %d, %d bytes", r.StatusCode, len(r.body))
	}
	io.Copy(io.Discard, first.Body)
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
}

// cutWriter passes through `left` body bytes and then aborts the response.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) >= c.left {
		c.ResponseWriter.Write(p[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

func TestClientLeavingDoesNotStopFill(t *testing.T) {
	o := newOrigin(t)
	data := payload(10, 1<<20)
	o.Put("/left.bin", data)
	paused := make(chan struct{})
	resume := newGate(t)
	o.SetHook(stallingHook(100<<10, func() { close(paused) }, resume))
	m := newMirror(t, o)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", m.url(o, "/left.bin"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	<-paused
	io.ReadFull(resp.Body, make([]byte, 1000))
	cancel() // the only client goes away mid-fill
	resp.Body.Close()
	resume.Open()

	// The fill completes on its own: wait for it through the handler.
	waitFills(t, m)
	before := o.Gets.Load()
	r := get(t, m.url(o, "/left.bin"))
	if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("after the client left: status %d, %d bytes", r.StatusCode, len(r.body))
	}
	if o.Gets.Load() != before || before != 1 {
		t.Fatalf("origin GETs %d then %d; want 1 and a hit", before, o.Gets.Load())
	}
}

// waitFills waits until the mirror has no fill in progress: fills go on
// after their clients are gone, so no response marks their end.
func waitFills(t *testing.T, m *testMirror) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.h.WaitFills(ctx); err != nil {
		t.Fatalf("waiting for fills: %v", err)
	}
}

func TestShutdownAbortsFillsCleanly(t *testing.T) {
	o := newOrigin(t)
	o.Put("/never.bin", payload(11, 1<<20))
	paused := make(chan struct{})
	o.SetHook(stallingHook(100<<10, func() { close(paused) }, newGate(t)))
	m := newMirror(t, o)
	resp, err := http.Get(m.url(o, "/never.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-paused
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.h.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("client body ended cleanly after shutdown aborted the fill")
	}
	if n := countFiles(t, m.root+"/tmp"); n != 0 {
		t.Errorf("%d temporary files after shutdown; want 0", n)
	}
	if n := countFiles(t, m.root+"/objects"); n != 0 {
		t.Errorf("%d objects after an aborted fill; want 0", n)
	}
}

func TestWaitModeWithoutTee(t *testing.T) {
	o := newOrigin(t)
	data := payload(16, 1<<20)
	o.Put("/wait.bin", data)
	paused := make(chan struct{})
	resume := newGate(t)
	o.SetHook(stallingHook(100<<10, func() { close(paused) }, resume))
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) { m.TeeResponse = false })

	got := make(chan response, 1)
	go func() { got <- get(t, m.url(o, "/wait.bin")) }()
	<-paused
	select {
	case <-got:
		t.Fatal("response before the fill completed, with TeeResponse off")
	default:
	}
	resume.Open()
	r := <-got
	if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("status %d, %d bytes", r.StatusCode, len(r.body))
	}
}

func TestHeadOnColdObject(t *testing.T) {
	o := newOrigin(t)
	data := payload(17, 300000)
	f := o.Put("/cold.bin", data)
	m := newMirror(t, o)
	h := do(t, "HEAD", m.url(o, "/cold.bin"), nil)
	if h.StatusCode != 200 || h.ContentLength != int64(len(data)) || h.Header.Get("Etag") != f.ETag || len(h.body) != 0 {
		t.Fatalf("HEAD: status %d, length %d, ETag %q, %d body bytes", h.StatusCode, h.ContentLength, h.Header.Get("Etag"), len(h.body))
	}
	if r := get(t, m.url(o, "/cold.bin")); !bytes.Equal(r.body, data) || o.Gets.Load() != 1 {
		t.Fatalf("GET after HEAD: %d bytes, origin GETs %d", len(r.body), o.Gets.Load())
	}
}

func TestUnknownLengthOrigin(t *testing.T) {
	o := newOrigin(t)
	data := payload(18, 700000)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		// No Content-Length: chunked, flushed in pieces.
		w.Header().Set("ETag", `"chunked"`)
		for i := 0; i < len(data); i += 100000 {
			w.Write(data[i:min(i+100000, len(data))])
			w.(http.Flusher).Flush()
		}
		return true
	})
	m := newMirror(t, o)
	u := m.url(o, "/chunked.bin")
	r := get(t, u)
	if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
		t.Fatalf("cold: status %d, %d bytes", r.StatusCode, len(r.body))
	}
	r = do(t, "GET", u, http.Header{"Range": {"bytes=10-19"}})
	if r.StatusCode != 206 || !bytes.Equal(r.body, data[10:20]) {
		t.Fatalf("warm range: status %d", r.StatusCode)
	}
	if r := get(t, u); r.ContentLength != int64(len(data)) || o.Gets.Load() != 1 {
		t.Fatalf("warm: Content-Length %d, origin GETs %d", r.ContentLength, o.Gets.Load())
	}
}

func TestNoStoreIsNeverStored(t *testing.T) {
	o := newOrigin(t)
	data := payload(72, 5000)
	o.Put("/secret", data).Header = http.Header{"Cache-Control": {"private, no-store"}}
	m := newMirror(t, o)
	for i := range 3 {
		if r := get(t, m.url(o, "/secret")); !bytes.Equal(r.body, data) {
			t.Fatalf("request %d: wrong body", i)
		}
		waitFills(t, m)
	}
	if o.Gets.Load() != 3 || countFiles(t, m.root+"/objects") != 0 {
		t.Fatalf("origin GETs %d, objects %d; want 3 and none stored", o.Gets.Load(), countFiles(t, m.root+"/objects"))
	}
}

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
