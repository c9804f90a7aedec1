package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
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
		{"bad JSON", "POST", "/prefetch", []byte(`["a", 1]`), 400, "JSON array"},
		{"too many", "POST", "/prefetch", manyJSON, 413, "at most 10000"},
		{"unknown id", "GET", "/prefetch/0123456789abcdef", nil, 404, "unknown prefetch"},
		{"bad wait", "GET", "/prefetch/" + started.ID + "?wait=2h", nil, 400, "wait"},
		{"DELETE id", "DELETE", "/prefetch/" + started.ID, nil, 405, "GET"},
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
