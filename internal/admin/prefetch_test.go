package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/admin"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// waitPrefetch waits (at most 30 s) until the job is done and returns its
// status.
func waitPrefetch(t *testing.T, e *env, id string) httpmirror.PrefetchStatus {
	t.Helper()
	var st httpmirror.PrefetchStatus
	if code := e.api(t, "GET", "/prefetch/"+id+"?wait=30s", nil, &st); code != 200 || st.State != "done" {
		t.Fatalf("GET /prefetch/%s?wait=30s: %d, state %q; want 200, done", id, code, st.State)
	}
	return st
}

// A prefetch of 20 URLs, 4 at a time, while clients ask for 7 of them:
// every URL reaches the origin once, every client gets its file, and the
// job ends with every URL stored.
func TestPrefetchCoalescesWithClients(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend, func(h *httpmirror.MirrorHandler) { h.PrefetchConcurrency = 4 })
		const n = 20
		data := map[string][]byte{}
		var urls []string
		for i := range n {
			p := fmt.Sprintf("/pool/f%02d.deb", i)
			data[p] = testutil.Payload(uint64(100+i), 50000+i)
			e.origin.Put(p, data[p])
			urls = append(urls, e.ref(p))
		}
		// The origin holds every answer until it has seen the requests of
		// the first four prefetched files and of the clients' files.
		arrived := make(chan string, 4*n)
		release := testutil.NewGate(t)
		e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			arrived <- r.URL.Path
			release.Wait()
			return false
		})
		body, _ := json.Marshal(urls)
		var started struct {
			ID     string `json:"id"`
			URLs   int    `json:"urls"`
			Status string `json:"status"`
		}
		if code := e.api(t, "POST", "/prefetch", body, &started); code != 202 || started.URLs != n || started.Status != "/prefetch/"+started.ID {
			t.Fatalf("POST /prefetch: %d %+v", code, started)
		}
		clients := []int{0, 3, 6, 9, 12, 15, 18}
		var wg sync.WaitGroup
		for _, i := range clients {
			p := fmt.Sprintf("/pool/f%02d.deb", i)
			wg.Go(func() {
				resp, err := http.Get(e.public.URL + "/" + e.key(p))
				if err != nil {
					t.Error(err)
					return
				}
				defer resp.Body.Close()
				var b bytes.Buffer
				if _, err := b.ReadFrom(resp.Body); err != nil || resp.StatusCode != 200 || !bytes.Equal(b.Bytes(), data[p]) {
					t.Errorf("client of %s: status %d, %d bytes, %v", p, resp.StatusCode, b.Len(), err)
				}
			})
		}
		// Files 0-3 (the prefetch's first four, two of them asked for by
		// clients too) and the clients' five others.
		for range 9 {
			select {
			case <-arrived:
			case <-time.After(30 * time.Second):
				t.Fatal("the origin did not see the first nine requests")
			}
		}
		release.Open()
		wg.Wait()
		st := waitPrefetch(t, e, started.ID)
		if st.Total != n || st.Failed != 0 || st.Done+st.Cached != n || len(st.URLs) != n {
			t.Errorf("job %+v; want all %d URLs done or cached", st, n)
		}
		for i, u := range st.URLs {
			p := fmt.Sprintf("/pool/f%02d.deb", i)
			if u.Key != e.key(p) || u.Bytes != int64(len(data[p])) || u.Size != u.Bytes {
				t.Errorf("URL %d: %+v; want %s with %d bytes", i, u, e.key(p), len(data[p]))
			}
		}
		e.waitFills(t)
		got := map[string]int{}
		for _, r := range e.origin.Received() {
			got[r.URL.Path]++
		}
		for p := range data {
			if got[p] != 1 {
				t.Errorf("origin GETs of %s: %d; want 1", p, got[p])
			}
			if code := e.api(t, "GET", "/cache/"+e.key(p), nil, nil); code != 200 {
				t.Errorf("%s not stored after the prefetch: %d", p, code)
			}
		}
		// A second prefetch of stored files fetches nothing.
		if code := e.api(t, "POST", "/prefetch", []byte(strings.Join(urls[:3], "\n")), &started); code != 202 {
			t.Fatalf("second POST: %d", code)
		}
		if st := waitPrefetch(t, e, started.ID); st.Cached != 3 {
			t.Errorf("second job %+v; want 3 cached", st)
		}
		if n := e.origin.Gets.Load(); n != 20 {
			t.Errorf("origin saw %d GETs; want 20", n)
		}
		done := e.metric(t, `httpmirror_prefetch_urls_total{result="done"}`)
		cached := e.metric(t, `httpmirror_prefetch_urls_total{result="cached"}`)
		if done == "" || cached == "" {
			t.Errorf("prefetch metrics missing: %q, %q", done, cached)
		}
	})
}

// A prefetch reports per-URL failures (the origin's 404) and remembers
// them like a client's miss; bad lists get clear 4xx answers.
func TestPrefetchErrors(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.Put("/ok", []byte("ok"))
	list := "# comment\n\n" + e.ref("/ok") + "\r\n  " + e.key("/missing") + "  \n"
	var started struct{ ID string }
	if code := e.api(t, "POST", "/prefetch", []byte(list), &started); code != 202 {
		t.Fatalf("POST a text list: %d", code)
	}
	st := waitPrefetch(t, e, started.ID)
	if st.Done != 1 || st.Failed != 1 || st.URLs[1].State != "failed" || !strings.HasPrefix(st.URLs[1].Error, "404") {
		t.Errorf("job %+v; want one done, one failed with 404", st)
	}
	if code, _ := e.get(t, "/missing"); code != 404 || e.origin.Gets.Load() != 2 {
		t.Errorf("client after the prefetch's 404: %d, origin GETs %d; want the remembered 404", code, e.origin.Gets.Load())
	}

	many := make([]string, httpmirror.MaxPrefetchURLs+1)
	for i := range many {
		many[i] = e.ref(fmt.Sprintf("/f%d", i))
	}
	manyJSON, _ := json.Marshal(many)
	for _, c := range []struct {
		name, method, path string
		body               []byte
		status             int
		want               string
	}{
		{"GET", "GET", "/prefetch", nil, 405, "POST"},
		{"empty", "POST", "/prefetch", nil, 400, "no URLs"},
		{"comments only", "POST", "/prefetch", []byte("# nothing\n"), 400, "no URLs"},
		{"bad JSON", "POST", "/prefetch", []byte(`["a", 1]`), 400, "body must be a JSON array of URLs"},
		{"object", "POST", "/prefetch", []byte(` {"urls": ["` + e.ref("/ok") + `"]}`), 400, "body must be a JSON array of URLs"},
		{"string", "POST", "/prefetch", []byte(`"` + e.ref("/ok") + `"`), 400, "body must be a JSON array of URLs"},
		{"array of objects", "POST", "/prefetch", []byte(`[{"url": "` + e.ref("/ok") + `"}]`), 400, "body must be a JSON array of URLs"},
		{"truncated array", "POST", "/prefetch", []byte(`["` + e.ref("/ok")), 400, "body must be a JSON array of URLs"},
		{"too many", "POST", "/prefetch", manyJSON, 413, "at most 10000"},
		{"unknown id", "GET", "/prefetch/0123456789abcdef", nil, 404, "unknown prefetch"},
		{"bad wait", "GET", "/prefetch/" + started.ID + "?wait=2h", nil, 400, "wait"},
		{"PUT id", "PUT", "/prefetch/" + started.ID, nil, 405, "GET, HEAD, DELETE"},
		{"cancel unknown id", "DELETE", "/prefetch/0123456789abcdef", nil, 404, "unknown prefetch"},
	} {
		var ae apiErr
		if code := e.api(t, c.method, c.path, c.body, &ae); code != c.status || !strings.Contains(ae.Error, c.want) {
			t.Errorf("%s: %d %q; want %d mentioning %q", c.name, code, ae.Error, c.status, c.want)
		}
	}
	var ae apiErr
	bad, _ := json.Marshal([]string{e.ref("/a"), e.ref("/b"), "ftp://x.org/c", e.ref("/d"), "x.org"})
	if code := e.api(t, "POST", "/prefetch", bad, &ae); code != 400 || ae.Count != 2 || len(ae.Invalid) != 2 || ae.Invalid[0].Index != 2 || ae.Invalid[1].Index != 4 {
		t.Errorf("invalid URLs: %d %+v; want 400 naming entries 2 and 4", code, ae)
	}
	if n := e.origin.Gets.Load(); n != 2 {
		t.Errorf("origin saw %d GETs; want 2 (nothing of the refused lists)", n)
	}
}

// Closing the mirror ends its prefetch jobs: queued URLs fail without
// reaching the origin, and the job reports done.
func TestPrefetchStopsOnClose(t *testing.T) {
	e := newEnv(t, "file", func(h *httpmirror.MirrorHandler) { h.PrefetchConcurrency = 1 })
	var urls []string
	for i := range 5 {
		p := fmt.Sprintf("/f%d", i)
		e.origin.Put(p, testutil.Payload(uint64(i), 1000))
		urls = append(urls, e.ref(p))
	}
	arrived := make(chan struct{}, 5)
	held := testutil.NewGate(t) // opened when the test ends
	e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		arrived <- struct{}{}
		held.Wait()
		return true
	})
	id, err := e.h.Prefetch(urls)
	if err != nil {
		t.Fatal(err)
	}
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := e.h.PrefetchProgress(id)
	if err != nil || st.State != "done" || st.Failed != 5 {
		t.Fatalf("job after Close: %+v, %v; want done with 5 failed", st, err)
	}
	for _, u := range st.URLs {
		if !strings.Contains(u.Error, "shutting down") {
			t.Errorf("URL %s: %q; want a shutdown error", u.URL, u.Error)
		}
	}
	if n := e.origin.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want only the first URL's", n)
	}
}

// holdOrigin makes the origin send the headers and the first half of
// every file, then hold the rest until the returned gate opens (when the
// test ends at the latest); arrived receives each request's path.
func holdOrigin(t *testing.T, e *env) (arrived chan string, release *testutil.Gate) {
	arrived = make(chan string, 64)
	release = testutil.NewGate(t)
	e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		w.Write(f.Data[:len(f.Data)/2])
		w.(http.Flusher).Flush()
		arrived <- r.URL.Path
		release.Wait()
		w.Write(f.Data[len(f.Data)/2:])
		return true
	})
	return arrived, release
}

func waitArrived(t *testing.T, arrived chan string, want string) {
	t.Helper()
	select {
	case p := <-arrived:
		if p != want {
			t.Fatalf("the origin was asked for %s; want %s", p, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the origin was not asked for %s", want)
	}
}

// DELETE /prefetch/<id> cancels a job: its queued URLs end cancelled
// without reaching the origin, and the running one, which only the job
// wanted, is stopped and stores nothing.
func TestCancelPrefetch(t *testing.T) {
	e := newEnv(t, "file", func(h *httpmirror.MirrorHandler) { h.PrefetchConcurrency = 1 })
	var urls []string
	for i := range 5 {
		p := fmt.Sprintf("/f%d", i)
		e.origin.Put(p, testutil.Payload(uint64(i), 100000))
		urls = append(urls, e.ref(p))
	}
	arrived, _ := holdOrigin(t, e)
	id, err := e.h.Prefetch(urls)
	if err != nil {
		t.Fatal(err)
	}
	waitArrived(t, arrived, "/f0")
	var st httpmirror.PrefetchStatus
	if code := e.api(t, "DELETE", "/prefetch/"+id, nil, &st); code != 200 {
		t.Fatalf("DELETE /prefetch/%s: %d", id, code)
	}
	if st.ID != id || st.State != "done" || st.Cancelled != 5 || st.Queued != 0 || st.Running != 0 || len(st.URLs) != 5 {
		t.Fatalf("cancelled job %+v; want done with all 5 URLs cancelled", st)
	}
	for i, u := range st.URLs {
		if u.State != httpmirror.PrefetchCancelled || u.Error != "cancelled" {
			t.Errorf("URL %d: %+v; want cancelled", i, u)
		}
		if i > 0 && u.Bytes != 0 {
			t.Errorf("queued URL %d reports %d bytes; want 0", i, u.Bytes)
		}
	}
	// The running download is stopped at once, the origin still holding
	// its second half: it stores nothing.
	e.waitFills(t)
	if code := e.api(t, "GET", "/cache/"+e.key("/f0"), nil, nil); code != 404 {
		t.Errorf("the cancelled download was stored: %d", code)
	}
	if n := e.origin.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want only the first URL's", n)
	}
	if got, err := e.h.PrefetchProgress(id); err != nil || got.Cancelled != 5 {
		t.Errorf("job after the cancel: %+v, %v", got, err)
	}
	// Cancelling again changes nothing.
	if code := e.api(t, "DELETE", "/prefetch/"+id, nil, &st); code != 200 || st.Cancelled != 5 || st.State != "done" {
		t.Errorf("second DELETE: %d %+v", code, st)
	}
	if line := e.metric(t, `httpmirror_prefetch_urls_total{result="cancelled"}`); line != `httpmirror_prefetch_urls_total{result="cancelled"} 5` {
		t.Errorf("metric %q; want 5 cancelled", line)
	}
}

// A download that a client reads too is not cut when the job that
// started it is cancelled: the client gets every byte, the object is
// stored, and the origin sends it once.
func TestCancelPrefetchKeepsClientDownload(t *testing.T) {
	e := newEnv(t, "file", func(h *httpmirror.MirrorHandler) { h.PrefetchConcurrency = 1 })
	data := testutil.Payload(9, 1<<20)
	e.origin.Put("/big.bin", data)
	e.origin.Put("/next.bin", []byte("next"))
	arrived, release := holdOrigin(t, e)
	id, err := e.h.Prefetch([]string{e.ref("/big.bin"), e.ref("/next.bin")})
	if err != nil {
		t.Fatal(err)
	}
	waitArrived(t, arrived, "/big.bin")
	resp, err := http.Get(e.public.URL + "/" + e.key("/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The client has joined the download once it has its first half.
	head := make([]byte, len(data)/2)
	if _, err := io.ReadFull(resp.Body, head); err != nil || resp.StatusCode != 200 {
		t.Fatalf("client: %d, %v", resp.StatusCode, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.h.CancelPrefetch(ctx, id)
	if err != nil || st.State != "done" || st.Cancelled != 2 || st.URLs[0].State != httpmirror.PrefetchCancelled || st.URLs[1].State != httpmirror.PrefetchCancelled {
		t.Fatalf("CancelPrefetch: %+v, %v; want both URLs cancelled", st, err)
	}
	release.Open()
	rest, err := io.ReadAll(resp.Body)
	got := append(head, rest...)
	if err != nil || len(got) != len(data) || testutil.SHA256(got) != testutil.SHA256(data) {
		t.Fatalf("client after the cancel: %d bytes, %v; want all %d with the origin's sha256", len(got), err, len(data))
	}
	e.waitFills(t)
	var obj httpmirror.ObjectStatus
	if code := e.api(t, "GET", "/cache/"+e.key("/big.bin"), nil, &obj); code != 200 || obj.Size != int64(len(data)) {
		t.Errorf("the client's download was not stored: %d %+v", code, obj)
	}
	if n := e.origin.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1 (the shared download; the queued URL never)", n)
	}
	if _, err := e.h.CancelPrefetch(ctx, "0123456789abcdef"); !errors.Is(err, httpmirror.ErrUnknownPrefetch) {
		t.Errorf("CancelPrefetch of an unknown id: %v", err)
	}
}

// A purge drops the queued prefetch URLs it covers, so that they do not
// fetch again what it removed; the job's other URLs go on.
func TestPurgeDropsQueuedPrefetches(t *testing.T) {
	e := newEnv(t, "file", func(h *httpmirror.MirrorHandler) { h.PrefetchConcurrency = 1 })
	paths := []string{"/hold", "/pool/a", "/pool/sub/b", "/single", "/pool2/c", "/other/d"}
	for i, p := range paths {
		e.origin.Put(p, testutil.Payload(uint64(i), 1000))
	}
	var urls []string
	for _, p := range paths {
		urls = append(urls, e.ref(p))
	}
	arrived, release := holdOrigin(t, e)
	id, err := e.h.Prefetch(urls)
	if err != nil {
		t.Fatal(err)
	}
	waitArrived(t, arrived, "/hold")
	var res httpmirror.PurgeResult
	if code := e.api(t, "DELETE", "/cache/?prefix="+e.key("/pool"), nil, &res); code != 200 {
		t.Fatalf("purge prefix: %d", code)
	}
	if code := e.api(t, "DELETE", "/cache/"+e.ref("/single"), nil, &res); code != 200 {
		t.Fatalf("purge: %d", code)
	}
	st, err := e.h.PrefetchProgress(id)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"running", "cancelled", "cancelled", "cancelled", "queued", "queued"}
	for i, u := range st.URLs {
		if u.State != want[i] {
			t.Errorf("after the purges, %s is %s; want %s", paths[i], u.State, want[i])
		}
	}
	release.Open()
	st = waitPrefetch(t, e, id)
	want = []string{"done", "cancelled", "cancelled", "cancelled", "done", "done"}
	for i, u := range st.URLs {
		if u.State != want[i] {
			t.Errorf("at the end, %s is %s (%s); want %s", paths[i], u.State, u.Error, want[i])
		}
	}
	got := map[string]int{}
	for _, r := range e.origin.Received() {
		got[r.URL.Path]++
	}
	for _, p := range []string{"/pool/a", "/pool/sub/b", "/single"} {
		if got[p] != 0 {
			t.Errorf("the origin was asked for the purged %s", p)
		}
	}
	if got["/pool2/c"] != 1 || got["/other/d"] != 1 {
		t.Errorf("origin requests %v; want /pool2/c and /other/d once each", got)
	}
}

// With every kept job still running, a new prefetch is refused 429 with
// a Retry-After in seconds, and nothing of its list reaches the origin.
func TestPrefetchBusyRetryAfter(t *testing.T) {
	e := newEnv(t, "memory", func(h *httpmirror.MirrorHandler) { h.PrefetchConcurrency = 1 })
	e.origin.Put("/held", testutil.Payload(7, 10000))
	e.origin.Put("/late", []byte("late"))
	arrived, release := holdOrigin(t, e)
	for i := range 64 {
		var started struct{ ID string }
		if code := e.api(t, "POST", "/prefetch", []byte(e.ref("/held")), &started); code != 202 {
			t.Fatalf("job %d: %d; want 202", i, code)
		}
	}
	waitArrived(t, arrived, "/held")
	req, _ := http.NewRequest("POST", e.admin.URL+"/prefetch", strings.NewReader(e.ref("/late")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "10" || !strings.Contains(string(raw), "prefetch jobs are running") {
		t.Errorf("65th job: %d, Retry-After %q, %s; want 429, Retry-After 10", resp.StatusCode, resp.Header.Get("Retry-After"), raw)
	}
	release.Open()
	e.waitFills(t)
	for _, r := range e.origin.Received() {
		if r.URL.Path == "/late" {
			t.Error("the refused job's URL reached the origin")
		}
	}
}

// ?urls= chooses the URLs a job's status lists: none (the counts of a job
// of 10,000 URLs in a few hundred bytes rather than megabytes), the URLs
// in some states, or all; anything else is a 400.
func TestPrefetchStatusSummary(t *testing.T) {
	e := newEnv(t, "memory")
	e.origin.Put("/ok", []byte("ok"))
	list := make([]string, httpmirror.MaxPrefetchURLs)
	for i := range list {
		list[i] = e.ref("/ok")
	}
	list[7] = e.ref("/missing")
	body, _ := json.Marshal(list)
	var started struct{ ID string }
	if code := e.api(t, "POST", "/prefetch", body, &started); code != 202 {
		t.Fatalf("POST: %d", code)
	}
	full := waitPrefetch(t, e, started.ID)
	if len(full.URLs) != httpmirror.MaxPrefetchURLs || full.Failed != 1 || full.Done+full.Cached != httpmirror.MaxPrefetchURLs-1 {
		t.Fatalf("full status: %d URLs, %d failed, %d done, %d cached", len(full.URLs), full.Failed, full.Done, full.Cached)
	}
	size := func(q string) (int, httpmirror.PrefetchStatus) {
		t.Helper()
		resp, err := http.Get(e.admin.URL + "/prefetch/" + started.ID + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var st httpmirror.PrefetchStatus
		if resp.StatusCode != 200 || json.Unmarshal(raw, &st) != nil {
			t.Fatalf("GET %s: %d %q", q, resp.StatusCode, raw)
		}
		return len(raw), st
	}
	if n, _ := size(""); n < 1<<20 {
		t.Errorf("the full status is %d bytes; want over 1 MiB (every URL)", n)
	}
	n, st := size("?urls=none&wait=1s")
	if n > 1024 || st.URLs != nil || st.Total != full.Total || st.Failed != 1 || st.Done != full.Done || st.Bytes != full.Bytes {
		t.Errorf("?urls=none: %d bytes, %d URLs, total %d, failed %d, done %d, bytes %d; want the counts alone, under 1 KiB", n, len(st.URLs), st.Total, st.Failed, st.Done, st.Bytes)
	}
	if _, st = size("?urls=failed"); len(st.URLs) != 1 || st.URLs[0].Key != e.key("/missing") || st.Failed != 1 {
		t.Errorf("?urls=failed: %d URLs; want the one failed URL", len(st.URLs))
	}
	if _, st = size("?urls=failed,cancelled,not_stored"); len(st.URLs) != 1 {
		t.Errorf("?urls=failed,cancelled,not_stored: %d URLs; want 1", len(st.URLs))
	}
	if _, st = size("?urls=all"); len(st.URLs) != httpmirror.MaxPrefetchURLs {
		t.Errorf("?urls=all: %d URLs", len(st.URLs))
	}
	for _, q := range []string{"?urls=bogus", "?urls=failed,bogus", "?urls=failed,", "?urls=FAILED", "?urls=" + strings.Repeat("failed,", 10000) + "x"} {
		for _, method := range []string{"GET", "DELETE"} {
			var ae apiErr
			if code := e.api(t, method, "/prefetch/"+started.ID+q, nil, &ae); code != 400 || !strings.Contains(ae.Error, "urls must be") {
				t.Errorf("%s %.40s: %d %q; want 400", method, q, code, ae.Error)
			}
		}
	}
	var cancelled httpmirror.PrefetchStatus
	if code := e.api(t, "DELETE", "/prefetch/"+started.ID+"?urls=none", nil, &cancelled); code != 200 || cancelled.URLs != nil || cancelled.Total != full.Total {
		t.Errorf("DELETE ?urls=none: %d, %d URLs; want the counts alone", code, len(cancelled.URLs))
	}
}

// A failed prefetch keeps the origin's status beside the one a client
// would have got (an origin's 500 is a client's 502), also when the
// origin's 404 is remembered, and reaches the status page's recent
// errors. An origin that cuts its body short has no status to keep.
func TestPrefetchFailureKeepsOriginStatus(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.Put("/ok", []byte("ok"))
	e.origin.Put("/short", testutil.Payload(8, 1000))
	e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		switch r.URL.Path {
		case "/boom":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/busy":
			w.Header().Set("Retry-After", "5")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		case "/short":
			// Promises 1000 bytes, sends 10.
			w.Header().Set("Content-Length", "1000")
			w.Write(f.Data[:10])
		default:
			return false
		}
		return true
	})
	urls := []string{e.ref("/ok"), e.ref("/boom"), e.ref("/missing"), e.ref("/busy"), e.ref("/short")}
	body, _ := json.Marshal(urls)
	var started struct{ ID string }
	if code := e.api(t, "POST", "/prefetch", body, &started); code != 202 {
		t.Fatalf("POST: %d", code)
	}
	st := waitPrefetch(t, e, started.ID)
	for i, want := range []struct {
		state, err string
		origin     int
	}{
		{"done", "", 0},
		{"failed", "502 upstream unavailable (the origin answered 500)", 500},
		{"failed", "404 Not Found", 404},
		{"failed", "502 upstream unavailable (the origin answered 503)", 503},
		{"failed", "502 upstream unavailable", 0},
	} {
		if u := st.URLs[i]; u.State != want.state || u.Error != want.err || u.OriginStatus != want.origin {
			t.Errorf("%s: %s %q origin %d; want %s %q origin %d", urls[i], u.State, u.Error, u.OriginStatus, want.state, want.err, want.origin)
		}
	}
	// The 404 is remembered: a second prefetch does not ask the origin,
	// and still says what the origin answered.
	gets := e.origin.Gets.Load()
	if code := e.api(t, "POST", "/prefetch", []byte(e.ref("/missing")), &started); code != 202 {
		t.Fatalf("POST: %d", code)
	}
	st = waitPrefetch(t, e, started.ID)
	if u := st.URLs[0]; u.State != "failed" || u.OriginStatus != 404 || !strings.Contains(u.Error, "remembered") || e.origin.Gets.Load() != gets {
		t.Errorf("remembered 404: %+v, origin GETs %d more; want failed, origin 404, remembered, no GET", u, e.origin.Gets.Load()-gets)
	}

	var status httpmirror.Status
	if code := e.api(t, "GET", "/status.json", nil, &status); code != 200 {
		t.Fatalf("status.json: %d", code)
	}
	got := map[string]httpmirror.RecentError{} // the newest of each path
	n := 0
	for _, re := range status.Errors {
		if !re.Prefetch {
			continue
		}
		n++
		if _, seen := got[re.Path]; !seen {
			got[re.Path] = re
		}
	}
	for path, want := range map[string]struct {
		status int
		reason string
	}{
		"/boom":    {502, "prefetch: 502 upstream unavailable (the origin answered 500)"},
		"/busy":    {502, "prefetch: 502 upstream unavailable (the origin answered 503)"},
		"/short":   {502, "prefetch: 502 upstream unavailable"},
		"/missing": {404, "prefetch: 404 Not Found (the origin's answer, remembered)"},
	} {
		re, ok := got[path]
		if !ok || re.Status != want.status || re.Reason != want.reason || re.Host != e.origin.HostPort() || re.Method != "GET" {
			t.Errorf("recent error of %s: %+v (found %v); want status %d, reason %q", path, re, ok, want.status, want.reason)
		}
	}
	if n != 5 {
		t.Errorf("%d prefetch failures among the recent errors; want 5 (the 404 twice): %+v", n, status.Errors)
	}
}

// lineWatch is a log destination that hands every line containing msg
// to a channel, so that a test waits for a line rather than sleeping.
type lineWatch struct {
	msg  string
	seen chan string
}

func (l *lineWatch) Write(p []byte) (int, error) {
	if s := string(p); strings.Contains(s, l.msg) {
		select {
		case l.seen <- s:
		default: // the test reads what it expects; more is a failure it sees by count
		}
	}
	return len(p), nil
}

func (l *lineWatch) next(t *testing.T) string {
	t.Helper()
	select {
	case s := <-l.seen:
		return s
	case <-time.After(30 * time.Second):
		t.Fatalf("no %q line in 30s", l.msg)
		return ""
	}
}

// Every prefetch job that ends, done or cancelled, logs one INFO line
// with its id, the token's name, its counts and how long it ran.
func TestPrefetchEndLogLine(t *testing.T) {
	e := newEnv(t, "memory", func(h *httpmirror.MirrorHandler) { h.PrefetchConcurrency = 1 })
	e.origin.Put("/ok", []byte("ok"))
	e.origin.Put("/held", testutil.Payload(9, 10000))
	e.origin.Put("/queued", []byte("q"))
	watch := &lineWatch{msg: "prefetch job ended", seen: make(chan string, 8)}
	srv := &admin.Server{Gatherer: e.reg, Mirror: e.h, Tokens: twoTokens,
		Logger: slog.New(slog.NewTextHandler(watch, nil))}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)

	resp, body := send(t, "POST", ts.URL+"/prefetch", "Bearer "+ciToken, []byte(e.ref("/ok")+"\n"+e.ref("/missing")+"\n"+e.ref("/ok")))
	var started struct{ ID string }
	if resp.StatusCode != 202 || json.Unmarshal(body, &started) != nil {
		t.Fatalf("prefetch: %d %q", resp.StatusCode, body)
	}
	line := watch.next(t)
	for _, want := range []string{"level=INFO", "id=" + started.ID, "by=ci", "urls=3", "done=1", "cached=1", "failed=1", "cancelled=0", "bytes=4", "duration="} {
		if !strings.Contains(line, want) {
			t.Errorf("end line %q lacks %q", line, want)
		}
	}

	// A cancelled job logs its line too, once, by the token that started
	// it.
	arrived, release := holdOrigin(t, e)
	defer release.Open()
	resp, body = send(t, "POST", ts.URL+"/prefetch", "Bearer "+aliceToken, []byte(e.ref("/held")+"\n"+e.ref("/queued")))
	if resp.StatusCode != 202 || json.Unmarshal(body, &started) != nil {
		t.Fatalf("prefetch: %d %q", resp.StatusCode, body)
	}
	waitArrived(t, arrived, "/held")
	if resp, body := send(t, "DELETE", ts.URL+"/prefetch/"+started.ID, "Bearer "+ciToken, nil); resp.StatusCode != 200 {
		t.Fatalf("cancel: %d %q", resp.StatusCode, body)
	}
	line = watch.next(t)
	for _, want := range []string{"id=" + started.ID, "by=alice", "urls=2", "cancelled=2", "done=0"} {
		if !strings.Contains(line, want) {
			t.Errorf("end line of the cancelled job %q lacks %q", line, want)
		}
	}
	select {
	case extra := <-watch.seen:
		t.Errorf("another end line: %q", extra)
	default:
	}
}
