package admin_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// GET /cache/<URL or key> describes the stored object; 404 when absent;
// clear 400s for references that name nothing.
func TestLookup(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		data := testutil.Payload(1, 3000)
		f := e.origin.Put("/pkg/a.tgz", data)
		if code, body := e.get(t, "/pkg/a.tgz"); code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("client GET: %d, %d bytes", code, len(body))
		}
		e.waitFills(t)
		for _, ref := range []string{e.ref("/pkg/a.tgz"), e.key("/pkg/a.tgz"), "http://" + e.key("/pkg//./a.tgz")} {
			var st httpmirror.ObjectStatus
			if code := e.api(t, "GET", "/cache/"+ref, nil, &st); code != 200 {
				t.Fatalf("GET /cache/%s: status %d", ref, code)
			}
			if st.Key != e.key("/pkg/a.tgz") || st.URL != e.ref("/pkg/a.tgz") || !st.Stored || st.Size != int64(len(data)) ||
				st.ETag != f.ETag || st.StoredAt.IsZero() || !st.LastModified.Equal(f.ModTime) || st.ContentType != f.Type {
				t.Errorf("GET /cache/%s = %+v", ref, st)
			}
			if st.Freshness == nil || st.Freshness.Rule != "immutable" || !st.Freshness.Fresh {
				t.Errorf("freshness %+v; want an immutable, fresh object", st.Freshness)
			}
			switch backend {
			case "file":
				if _, err := os.Stat(st.Location); err != nil {
					t.Errorf("location %q is not the object file: %v", st.Location, err)
				}
			case "s3":
				if !strings.HasPrefix(st.Location, "s3://") || !strings.HasSuffix(st.Location, "/mirror/"+e.key("/pkg/a.tgz")) {
					t.Errorf("location %q; want the s3:// URL of the object", st.Location)
				}
			}
		}
		var missing struct {
			apiErr
			httpmirror.ObjectStatus
		}
		if code := e.api(t, "GET", "/cache/"+e.ref("/pkg/absent.tgz"), nil, &missing); code != 404 || missing.Error != "not cached" || missing.Key != e.key("/pkg/absent.tgz") {
			t.Errorf("absent object: %d %+v; want 404, not cached, with its key", code, missing)
		}
		for ref, want := range map[string]string{
			"ftp://example.com/a": "scheme", "example/a": "host", "https://example.com/": "host",
			"example.com/a/%2e%2e/b": "malformed path", "https://user:pw@example.com/a": "host",
		} {
			var ae apiErr
			if code := e.api(t, "GET", "/cache/"+ref, nil, &ae); code != 400 || !strings.Contains(ae.Error, want) || strings.Contains(ae.Error, "pw") {
				t.Errorf("GET /cache/%s: %d %q; want 400 mentioning %q", ref, code, ae.Error, want)
			}
		}
		if code := e.api(t, "PUT", "/cache/"+e.key("/pkg/a.tgz"), nil, nil); code != 405 {
			t.Errorf("PUT /cache/…: %d; want 405", code)
		}
		if n := e.origin.Gets.Load(); n != 1 {
			t.Errorf("origin saw %d GETs; want 1", n)
		}
	})
}

// A purged object is fetched again, exactly once, by the next request;
// a remembered 404 is forgotten by a purge too.
func TestPurgeRefetchesOnce(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		data := testutil.Payload(2, 200000)
		e.origin.Put("/a.bin", data)
		for range 2 {
			if code, body := e.get(t, "/a.bin"); code != 200 || !bytes.Equal(body, data) {
				t.Fatalf("GET: %d, %d bytes", code, len(body))
			}
			e.waitFills(t)
		}
		var res httpmirror.PurgeResult
		if code := e.api(t, "DELETE", "/cache/"+e.ref("/a.bin"), nil, &res); code != 200 || res.Purged != 1 || res.Key != e.key("/a.bin") {
			t.Fatalf("DELETE: %d %+v; want 200, 1 purged", code, res)
		}
		if code := e.api(t, "GET", "/cache/"+e.key("/a.bin"), nil, nil); code != 404 {
			t.Fatalf("lookup after purge: %d; want 404", code)
		}
		for range 3 {
			if code, body := e.get(t, "/a.bin"); code != 200 || !bytes.Equal(body, data) {
				t.Fatalf("GET after purge: %d, %d bytes", code, len(body))
			}
			e.waitFills(t)
		}
		if n := e.origin.Gets.Load(); n != 2 {
			t.Errorf("origin saw %d GETs; want 2 (one before, one after the purge)", n)
		}
		if got := e.metric(t, "httpmirror_purged_objects_total"); got != "httpmirror_purged_objects_total 1" {
			t.Errorf("metrics: %q; want 1 purged object", got)
		}
		// Purging a missing object succeeds and purges nothing.
		if code := e.api(t, "DELETE", "/cache/"+e.key("/absent"), nil, &res); code != 200 || res.Purged != 0 {
			t.Errorf("DELETE of a missing object: %d %+v", code, res)
		}

		// The origin's 404 is remembered ...
		if code, _ := e.get(t, "/late.bin"); code != 404 {
			t.Fatalf("GET of a missing file: %d", code)
		}
		e.origin.Put("/late.bin", []byte("late"))
		if code, _ := e.get(t, "/late.bin"); code != 404 {
			t.Fatalf("GET within the negative TTL: %d; want the remembered 404", code)
		}
		// ... until a purge drops it.
		e.api(t, "DELETE", "/cache/"+e.ref("/late.bin"), nil, nil)
		if code, body := e.get(t, "/late.bin"); code != 200 || string(body) != "late" {
			t.Errorf("GET after purging the remembered 404: %d %q", code, body)
		}
	})
}

// A prefix purge removes exactly the subtree it names: "host/dir/sub"
// spares "host/dir/subway", "https://host/dir/" takes the directory URL
// itself and everything below it, and nothing else goes.
func TestPurgePrefixExactSubtree(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		paths := []string{"/dir/a", "/dir/sub/b", "/dir/subway", "/dir/", "/dir2/x", "/other"}
		for i, p := range paths {
			e.origin.Put(p, testutil.Payload(uint64(10+i), 100+i))
			if code, _ := e.get(t, p); code != 200 {
				t.Fatalf("GET %s: %d", p, code)
			}
		}
		e.waitFills(t)
		var res httpmirror.PurgeResult
		if code := e.api(t, "DELETE", "/cache/?prefix="+url.QueryEscape(e.key("/dir/sub")), nil, &res); code != 200 || res.Purged != 1 {
			t.Fatalf("purge of /dir/sub: %d %+v; want 1 purged", code, res)
		}
		if code := e.api(t, "DELETE", "/cache/?prefix="+url.QueryEscape(e.ref("/dir/")), nil, &res); code != 200 || res.Purged != 3 || res.Key != e.key("/dir/") {
			t.Fatalf("purge of /dir/: %d %+v; want 3 purged", code, res)
		}
		var page httpmirror.ListPage
		if code := e.api(t, "GET", "/cache/?prefix="+url.QueryEscape(e.key("")), nil, &page); code != 200 {
			t.Fatalf("list: %d", code)
		}
		var left []string
		for _, o := range page.Objects {
			left = append(left, o.Key)
		}
		slices.Sort(left)
		if want := []string{e.key("/dir2/x"), e.key("/other")}; !slices.Equal(left, want) {
			t.Errorf("left after the purges: %q; want %q", left, want)
		}
		for _, p := range paths {
			e.get(t, p)
		}
		e.waitFills(t)
		want := map[string]int{"/dir/a": 2, "/dir/sub/b": 2, "/dir/subway": 2, "/dir/": 2, "/dir2/x": 1, "/other": 1}
		got := map[string]int{}
		for _, r := range e.origin.Received() {
			got[r.URL.Path]++
		}
		for p, n := range want {
			if got[p] != n {
				t.Errorf("origin GETs of %s: %d; want %d", p, got[p], n)
			}
		}
		var ae apiErr
		for _, q := range []string{"", "?prefix=", "?prefix=nohost/", "?prefix=" + url.QueryEscape(e.key("/a/../b"))} {
			if code := e.api(t, "DELETE", "/cache/"+q, nil, &ae); code != 400 || ae.Error == "" {
				t.Errorf("DELETE /cache/%s: %d %q; want 400", q, code, ae.Error)
			}
		}
	})
}

// GET /cache/?prefix= lists the objects under a prefix, in pages, with
// their sizes and, where the backend's listing has it, their SHA-256.
func TestListPaged(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		want := map[string]int64{}
		sums := map[string]string{}
		for i := range 5 {
			p := "/files/" + string(rune('a'+i))
			body := testutil.Payload(uint64(i), 1000*(i+1))
			e.origin.Put(p, body)
			e.get(t, p)
			want[e.key(p)] = int64(1000 * (i + 1))
			sum := sha256.Sum256(body)
			sums[e.key(p)] = hex.EncodeToString(sum[:])
		}
		e.origin.Put("/elsewhere", []byte("x"))
		e.get(t, "/elsewhere")
		e.waitFills(t)
		got := map[string]int64{}
		next := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("listing did not end after 10 pages")
			}
			var page httpmirror.ListPage
			q := "/cache/?limit=2&prefix=" + url.QueryEscape(e.ref("/files/")) + "&next=" + url.QueryEscape(next)
			if code := e.api(t, "GET", q, nil, &page); code != 200 || len(page.Objects) > 2 {
				t.Fatalf("GET %s: %d, %d objects", q, code, len(page.Objects))
			}
			var sum int64
			for _, o := range page.Objects {
				got[o.Key] = o.Size
				sum += o.Size
				if backend != "s3" && o.SHA256 != sums[o.Key] {
					t.Errorf("%s listed with sha256 %q; want %q", o.Key, o.SHA256, sums[o.Key])
				}
			}
			if sum != page.Bytes {
				t.Errorf("page bytes %d; objects sum to %d", page.Bytes, sum)
			}
			if next = page.Next; next == "" {
				break
			}
		}
		if len(got) != len(want) {
			t.Errorf("listed %v; want %v", got, want)
		}
		for k, n := range want {
			if got[k] != n {
				t.Errorf("%s listed with size %d; want %d", k, got[k], n)
			}
		}
		for _, q := range []string{"limit=0", "limit=x", "limit=10001", "prefix=" + url.QueryEscape("not a host/")} {
			var ae apiErr
			if code := e.api(t, "GET", "/cache/?"+q, nil, &ae); code != 400 || ae.Error == "" {
				t.Errorf("GET /cache/?%s: %d %q; want 400", q, code, ae.Error)
			}
		}
		if backend == "s3" {
			var ae apiErr
			if code := e.api(t, "GET", "/cache/?next=%21%21", nil, &ae); code != 400 || !strings.Contains(ae.Error, "token") {
				t.Errorf("foreign page token: %d %q; want 400", code, ae.Error)
			}
		}
	})
}

// A file still downloading is an answer, not a 404: 200 with "stored":
// false and the download's bytes of its size; once stored, the object.
func TestLookupFillInProgress(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		data := testutil.Payload(4, 1<<20)
		resp, release := e.heldDownload(t, "/slow.bin", data)
		var st httpmirror.ObjectStatus
		if code := e.api(t, "GET", "/cache/"+e.ref("/slow.bin"), nil, &st); code != 200 || st.Stored || st.Key != e.key("/slow.bin") {
			t.Fatalf("lookup during the download: %d %+v; want 200, not stored, its key", code, st)
		}
		if f := st.Fill; f == nil || f.Bytes != 64<<10 || f.Size != 1<<20 || f.Op != "miss" || f.Readers != 1 {
			t.Errorf("fill %+v; want a miss at 65536 of 1048576 bytes with 1 reader", st.Fill)
		}
		release.Open()
		if body, err := io.ReadAll(resp.Body); err != nil || !bytes.Equal(body, data[64<<10:]) {
			t.Fatalf("client's download: %d bytes, %v", len(body), err)
		}
		e.waitFills(t)
		st = httpmirror.ObjectStatus{}
		if code := e.api(t, "GET", "/cache/"+e.key("/slow.bin"), nil, &st); code != 200 || !st.Stored || st.Fill != nil || st.Size != 1<<20 {
			t.Errorf("lookup once stored: %d %+v; want the stored object, no fill", code, st)
		}
		if n := e.origin.Gets.Load(); n != 1 {
			t.Errorf("origin saw %d GETs; want 1 (the lookup fetches nothing)", n)
		}
	})
}

// Every error of the admin API is JSON: unknown paths, the job
// collections without an id, a job path with more segments, and wrong
// methods (405 with Allow).
func TestAdminErrorsAreJSON(t *testing.T) {
	e := newEnv(t, "memory")
	for _, c := range []struct {
		method, path string
		status       int
		want, allow  string
	}{
		{"GET", "/prefetch/", 404, "no prefetch job id", ""},
		{"DELETE", "/prefetch/", 404, "no prefetch job id", ""},
		{"GET", "/verify/", 404, "no verify job id", ""},
		{"GET", "/prefetch/abc/def", 404, "no such admin endpoint", ""},
		{"GET", "/prefetch/0123456789abcdef", 404, "unknown prefetch id", ""},
		{"GET", "/nope", 404, "no such admin endpoint", ""},
		{"POST", "/status.jsonx", 404, "no such admin endpoint", ""},
		{"GET", "/%00%ff", 404, "no such admin endpoint", ""},
		{"GET", "/prefetch", 405, "method not allowed", "POST"},
		{"PUT", "/prefetch/abc", 405, "method not allowed", "GET, HEAD, DELETE"},
		{"GET", "/verify", 405, "method not allowed", "POST"},
		{"POST", "/status.json", 405, "method not allowed", "GET, HEAD"},
		{"DELETE", "/", 405, "method not allowed", "GET, HEAD"},
		{"PATCH", "/cache/", 405, "method not allowed", "GET, HEAD, DELETE"},
	} {
		req, _ := http.NewRequest(c.method, e.admin.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var ae apiErr
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != c.status || ct != "application/json" || json.Unmarshal(raw, &ae) != nil || !strings.Contains(ae.Error, c.want) {
			t.Errorf("%s %s: %d %s %q; want %d JSON with %q", c.method, c.path, resp.StatusCode, ct, raw, c.status, c.want)
		}
		if got := resp.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q; want %q", c.method, c.path, got, c.allow)
		}
	}
}

// A page token the listing did not issue is answered 400 with a short
// JSON error on every backend: garbage, a key pasted where the token
// belongs, a token edited by hand, one of another prefix. None is taken
// for an empty last page.
func TestListRefusesForeignTokens(t *testing.T) {
	for _, backend := range []string{"file", "s3", "memory"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, backend)
			for _, p := range []string{"/t/a", "/t/b", "/t/c"} {
				e.origin.Put(p, []byte(p))
				e.get(t, p)
			}
			e.waitFills(t)
			var page httpmirror.ListPage
			if code := e.api(t, "GET", "/cache/?limit=1&prefix="+url.QueryEscape(e.key("/t/")), nil, &page); code != 200 || page.Next == "" {
				t.Fatalf("first page: %d, next %q; want 200 and a next page", code, page.Next)
			}
			edited := []byte(page.Next)
			edited[len(edited)/2] ^= 1
			for name, q := range map[string]string{
				"garbage":      "next=garbage",
				"bangs":        "next=%21%21",
				"binary":       "next=%00%FF%FE",
				"raw key":      "next=" + url.QueryEscape(e.key("/t/a")),
				"huge":         "next=" + strings.Repeat("A", 4000),
				"edited":       "prefix=" + url.QueryEscape(e.key("/t/")) + "&next=" + url.QueryEscape(string(edited)),
				"other prefix": "prefix=" + url.QueryEscape(e.key("/u/")) + "&next=" + url.QueryEscape(page.Next),
			} {
				var ae apiErr
				if code := e.api(t, "GET", "/cache/?"+q, nil, &ae); code != 400 || ae.Error != "invalid page token (next)" {
					t.Errorf("%s token: %d %q; want 400 invalid page token", name, code, ae.Error)
				}
			}
			if code := e.api(t, "GET", "/cache/?limit=1&prefix="+url.QueryEscape(e.key("/t/"))+"&next="+url.QueryEscape(page.Next), nil, &page); code != 200 || len(page.Objects) != 1 {
				t.Errorf("the issued token: %d, %d objects; want 200 and the next object", code, len(page.Objects))
			}
		})
	}
}

// A purge cancels the download of its key in progress: the client's
// response is cut off, nothing is stored afterwards, and the next request
// fetches the file again.
func TestPurgeCancelsFill(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		data := testutil.Payload(3, 1<<20)
		resp, release := e.heldDownload(t, "/slow.bin", data)
		var res httpmirror.PurgeResult
		if code := e.api(t, "DELETE", "/cache/"+e.key("/slow.bin"), nil, &res); code != 200 || res.CancelledFills != 1 || res.Purged != 0 {
			t.Fatalf("DELETE during the download: %d %+v; want 1 cancelled fill", code, res)
		}
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Error("the client of the cancelled download got a complete response")
		}
		release.Open()
		e.waitFills(t)
		if code := e.api(t, "GET", "/cache/"+e.key("/slow.bin"), nil, nil); code != 404 {
			t.Errorf("lookup after the purge: %d; want 404 (nothing stored)", code)
		}
		e.origin.SetHook(nil)
		if code, body := e.get(t, "/slow.bin"); code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET after the purge: %d, %d bytes", code, len(body))
		}
		if n := e.origin.Gets.Load(); n != 2 {
			t.Errorf("origin saw %d GETs; want 2", n)
		}
	})
}

// heldDownload puts data at path and starts a client's GET of it whose
// origin holds the body after 64 KiB until release opens; it returns once
// the client has those 64 KiB: the download is in progress.
func (e *env) heldDownload(t *testing.T, path string, data []byte) (resp *http.Response, release *testutil.Gate) {
	t.Helper()
	e.origin.Put(path, data)
	release = testutil.NewGate(t)
	e.origin.SetHook(holdAfter(64<<10, release))
	resp, err := http.Get(e.public.URL + "/" + e.key(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	return resp, release
}

// holdAfter serves the first n bytes of a file, then waits for g before
// the rest.
func holdAfter(n int, g *testutil.Gate) testutil.Hook {
	return func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if f == nil || r.Method != http.MethodGet {
			return false
		}
		w.Header().Set("Content-Length", itoa(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		w.Write(f.Data[:n])
		w.(http.Flusher).Flush()
		g.Wait()
		w.Write(f.Data[n:])
		return true
	}
}

// The public listener serves none of the admin API.
func TestPublicListenerHasNoAdminAPI(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.Put("/a", []byte("a"))
	e.get(t, "/a")
	e.waitFills(t)
	for _, c := range []struct{ method, path string }{
		{"GET", "/cache/" + e.key("/a")}, {"DELETE", "/cache/" + e.key("/a")}, {"GET", "/cache/?prefix=x.org"},
		{"DELETE", "/cache/?prefix=" + e.key("/")}, {"POST", "/prefetch"}, {"GET", "/prefetch/abc"}, {"GET", "/status.json"},
	} {
		req, _ := http.NewRequest(c.method, e.public.URL+c.path, strings.NewReader(e.ref("/a")))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 405 {
			t.Errorf("public %s %s: %d; want 404 or 405", c.method, c.path, resp.StatusCode)
		}
	}
	if code := e.api(t, "GET", "/cache/"+e.key("/a"), nil, nil); code != 200 {
		t.Errorf("the object is gone after the public requests: lookup %d", code)
	}
}

// With --host, the cache API takes the paths clients request (/pool/a.deb
// or pool/a.deb) as well as keys and URLs: look up, purge, list, purge by
// prefix and prefetch, each resolved as a client's request is. URLs of
// other hosts and hostile paths are still refused.
func TestHostModeClientPaths(t *testing.T) {
	e := newEnv(t, "file", func(h *httpmirror.MirrorHandler) {
		h.HostFromFirstPath = false
		h.BlockSuffix = []string{".exe"}
	})
	// The origin's address is known once the env exists: Host is set
	// before the first request, which configures the handler.
	e.h.Host = e.origin.HostPort()
	key := e.key("/pool/a.deb")
	e.origin.Put("/pool/a.deb", []byte("a"))
	e.origin.Put("/pool/b.deb", []byte("b"))
	resp, err := http.Get(e.public.URL + "/pool/a.deb")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("client GET /pool/a.deb: %d", resp.StatusCode)
	}
	e.waitFills(t)
	for _, ref := range []string{"/pool/a.deb", "pool/a.deb", "/pool//./a.deb", key, e.ref("/pool/a.deb")} {
		var st httpmirror.ObjectStatus
		if code := e.api(t, "GET", "/cache/"+ref, nil, &st); code != 200 || st.Key != key || !st.Stored {
			t.Errorf("GET /cache/%s: %d key %q; want 200, %s", ref, code, st.Key, key)
		}
	}
	for ref, want := range map[string]string{
		"https://other.example/pool/a.deb": "serves " + e.origin.HostPort() + " only",
		"/pool/../../etc/passwd":           "malformed path",
		"/pool/%2e%2e/x":                   "malformed path",
		"/pool/setup.exe":                  "blocked suffix",
		"/":                                "want https://host/path",
		// The host alone names no file, not the path /<host>.
		e.origin.HostPort(): "no valid host and file path",
	} {
		var ae apiErr
		if code := e.api(t, "GET", "/cache/"+ref, nil, &ae); code != 400 || !strings.Contains(ae.Error, want) {
			t.Errorf("GET /cache/%s: %d %q; want 400 mentioning %q", ref, code, ae.Error, want)
		}
	}
	var page httpmirror.ListPage
	if code := e.api(t, "GET", "/cache/?prefix="+url.QueryEscape("/pool/"), nil, &page); code != 200 || page.Prefix != e.key("/pool/") || len(page.Objects) != 1 {
		t.Errorf("list /pool/: %d %+v; want the one object under %s", code, page, e.key("/pool/"))
	}
	var res httpmirror.PurgeResult
	if code := e.api(t, "DELETE", "/cache//pool/a.deb", nil, &res); code != 200 || res.Key != key || res.Purged != 1 {
		t.Errorf("DELETE /cache//pool/a.deb: %d %+v; want 1 purged", code, res)
	}
	var started struct{ ID string }
	if code := e.api(t, "POST", "/prefetch", []byte("/pool/a.deb\npool/b.deb\n"), &started); code != 202 {
		t.Fatalf("prefetch of client paths: %d", code)
	}
	if st := waitPrefetch(t, e, started.ID); st.Done != 2 || st.URLs[1].Key != e.key("/pool/b.deb") {
		t.Errorf("prefetch of client paths: %+v; want both fetched", st)
	}
	if code := e.api(t, "DELETE", "/cache/?prefix=pool", nil, &res); code != 200 || res.Key != e.key("/pool") || res.Purged != 2 {
		t.Errorf("purge prefix pool: %d %+v; want 2 purged under %s", code, res, e.key("/pool"))
	}
	if n := e.origin.Gets.Load(); n != 3 {
		t.Errorf("origin saw %d GETs; want 3", n)
	}
}

// The listing shows each object's last access and hits, on local disk and
// on S3: reads through the public listener count, the fill that stored
// the object does not.
func TestListShowsAccess(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.origin.Put("/read", testutil.Payload(1, 2000))
		e.origin.Put("/unread", testutil.Payload(2, 3000))
		e.get(t, "/read")
		e.get(t, "/unread")
		e.waitFills(t)
		before := time.Now()
		for range 3 {
			if code, _ := e.get(t, "/read"); code != 200 {
				t.Fatalf("GET /read: %d", code)
			}
		}
		var raw map[string]any
		if code := e.api(t, "GET", "/cache/?prefix="+url.QueryEscape(e.key("/")), nil, &raw); code != 200 {
			t.Fatalf("list: %d", code)
		}
		var page httpmirror.ListPage
		b, _ := json.Marshal(raw)
		json.Unmarshal(b, &page)
		got := map[string]httpmirror.ListedObject{}
		for _, o := range page.Objects {
			got[o.Key] = o
		}
		if r := got[e.key("/read")]; r.Hits != 3 || r.LastAccess.Before(before) {
			t.Errorf("/read listed with hits %d, last access %v; want 3, after %v", r.Hits, r.LastAccess, before)
		}
		if u := got[e.key("/unread")]; u.Hits != 0 || u.LastAccess.IsZero() || u.LastAccess.After(before) {
			t.Errorf("/unread listed with hits %d, last access %v; want 0 and its store time", u.Hits, u.LastAccess)
		}
		objs, _ := raw["objects"].([]any)
		if len(objs) == 0 {
			t.Fatal("no objects in the raw listing")
		}
		for _, field := range []string{"lastAccess", "hits"} {
			if _, ok := objs[0].(map[string]any)[field]; !ok {
				t.Errorf("listed object lacks %q: %v", field, objs[0])
			}
		}
	})
}
