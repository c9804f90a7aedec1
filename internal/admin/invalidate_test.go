package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// invalidate posts body to /cache/invalidate and decodes the answer.
func (e *env) invalidate(t *testing.T, body string) (int, httpmirror.InvalidateResult) {
	t.Helper()
	var res httpmirror.InvalidateResult
	code := e.api(t, "POST", "/cache/invalidate", []byte(body), &res)
	return code, res
}

func jsonBody(field, v string) string {
	b, _ := json.Marshal(map[string]string{field: v})
	return string(b)
}

// originGets counts the origin's GETs of each path, and of those the
// conditional ones (If-None-Match).
func originGets(o *testutil.Origin) (gets, conditional map[string]int) {
	gets, conditional = map[string]int{}, map[string]int{}
	for _, r := range o.Received() {
		if r.Method != http.MethodGet {
			continue
		}
		gets[r.URL.Path]++
		if r.Header.Get("If-None-Match") != "" {
			conditional[r.URL.Path]++
		}
	}
	return gets, conditional
}

// After an invalidation the next request revalidates: the origin gets a
// conditional GET with the stored validators, answers 304, and the client
// gets the stored bytes without the origin sending them again; the
// request after that is a plain hit. When the origin has new bytes, the
// next request after an invalidation gets them, and they are stored.
func TestInvalidateRevalidates(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		data := testutil.Payload(1, 50000)
		f := e.origin.Put("/pkg/a.tgz", data)
		for range 2 {
			if code, body := e.get(t, "/pkg/a.tgz"); code != 200 || !bytes.Equal(body, data) {
				t.Fatalf("GET: %d, %d bytes", code, len(body))
			}
			e.waitFills(t)
		}
		if n := e.origin.Gets.Load(); n != 1 {
			t.Fatalf("origin GETs before the invalidation: %d; want 1 (an immutable object)", n)
		}
		code, res := e.invalidate(t, jsonBody("key", e.ref("/pkg/a.tgz")))
		if code != 200 || res.Invalidated != 1 || res.Kind != "key" || res.Key != e.key("/pkg/a.tgz") || res.Fills != 0 {
			t.Fatalf("invalidate: %d %+v; want 1 invalidated", code, res)
		}
		var st httpmirror.ObjectStatus
		if e.api(t, "GET", "/cache/"+e.key("/pkg/a.tgz"), nil, &st); st.Freshness == nil || st.Freshness.Fresh || st.Size != int64(len(data)) ||
			st.Freshness.Rule != "immutable" || st.Freshness.Invalidated.IsZero() {
			t.Errorf("lookup after the invalidation: %+v, freshness %+v; want the object, immutable but stale, with the time of the invalidation", st, st.Freshness)
		}
		sent := e.origin.BodyBytes.Load()
		for i := range 2 {
			if code, body := e.get(t, "/pkg/a.tgz"); code != 200 || !bytes.Equal(body, data) {
				t.Fatalf("GET %d after the invalidation: %d, %d bytes", i, code, len(body))
			}
			e.waitFills(t)
		}
		gets, cond := originGets(e.origin)
		if gets["/pkg/a.tgz"] != 2 || cond["/pkg/a.tgz"] != 1 {
			t.Errorf("origin GETs %d, conditional %d; want 2 and 1 (one revalidation, then hits)", gets["/pkg/a.tgz"], cond["/pkg/a.tgz"])
		}
		if last := e.origin.Received(); last[len(last)-1].Header.Get("If-None-Match") != f.ETag {
			t.Errorf("revalidation sent If-None-Match %q; want the stored ETag %q", last[len(last)-1].Header.Get("If-None-Match"), f.ETag)
		}
		if n := e.origin.BodyBytes.Load(); n != sent {
			t.Errorf("origin sent %d body bytes for the revalidation; want none (304)", n-sent)
		}
		// The store's copy is confirmed: no mark left.
		if info, err := e.store.Stat(context.Background(), e.key("/pkg/a.tgz")); err != nil || info.Header[policy.InvalidatedHeader] != nil {
			t.Errorf("stored info after the 304: %+v, %v; want no invalidation mark", info.Header, err)
		}

		// The origin changes: an invalidation brings the new bytes.
		nw := testutil.Payload(2, 40000)
		e.origin.Put("/pkg/a.tgz", nw)
		if code, res := e.invalidate(t, jsonBody("key", e.key("/pkg/a.tgz"))); code != 200 || res.Invalidated != 1 {
			t.Fatalf("second invalidate: %d %+v", code, res)
		}
		for i := range 2 {
			if code, body := e.get(t, "/pkg/a.tgz"); code != 200 || !bytes.Equal(body, nw) {
				t.Fatalf("GET %d after the origin changed: %d, %d bytes; want the new %d", i, code, len(body), len(nw))
			}
			e.waitFills(t)
		}
		if n := e.origin.Gets.Load(); n != 3 {
			t.Errorf("origin GETs: %d; want 3 (the new object is stored and served)", n)
		}
		if line := e.metric(t, `httpmirror_invalidations_total{kind="key"}`); !strings.HasSuffix(line, " 2") {
			t.Errorf("metric %q; want 2 key invalidations", line)
		}
	})
}

// A prefix and a glob invalidate exactly what they match: the others are
// served without any request to the origin.
func TestInvalidatePrefixAndGlob(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		paths := []string{"/dir/a", "/dir/sub/b", "/dir/subway", "/dir/", "/dists/x/InRelease", "/dists/y/InRelease", "/dists/x/Contents.gz", "/other.deb"}
		for i, p := range paths {
			e.origin.Put(p, testutil.Payload(uint64(20+i), 1000+i))
			if code, _ := e.get(t, p); code != 200 {
				t.Fatalf("GET %s: %d", p, code)
			}
		}
		e.waitFills(t)
		for _, c := range []struct {
			body string
			want int
		}{
			{jsonBody("prefix", e.key("/dir/sub")), 1},                // not /dir/subway
			{jsonBody("glob", e.key("/dists/*/InRelease")), 2},        // not Contents.gz
			{jsonBody("glob", "https://"+e.key("/nothing/*")), 0},     // matches nothing: 200, 0
			{jsonBody("prefix", "https://"+e.key("/nothing/")), 0},    // likewise
			{jsonBody("glob", strings.ToUpper(e.key("/other.*"))), 0}, // the host is case-insensitive, the path is not
		} {
			code, res := e.invalidate(t, c.body)
			if code != 200 || res.Invalidated != c.want {
				t.Errorf("invalidate %s: %d %+v; want 200, %d invalidated", c.body, code, res, c.want)
			}
		}
		for _, p := range paths {
			if code, _ := e.get(t, p); code != 200 {
				t.Fatalf("GET %s: %d", p, code)
			}
		}
		e.waitFills(t)
		gets, cond := originGets(e.origin)
		for _, p := range paths {
			want := 0
			if p == "/dir/sub/b" || strings.HasSuffix(p, "/InRelease") {
				want = 1
			}
			if gets[p] != 1+want || cond[p] != want {
				t.Errorf("%s: origin GETs %d, conditional %d; want %d and %d", p, gets[p], cond[p], 1+want, want)
			}
		}
		if line := e.metric(t, `httpmirror_invalidations_total{kind="glob"}`); !strings.HasSuffix(line, " 2") {
			t.Errorf("metric %q; want 2 objects invalidated by glob", line)
		}
	})
}

// Every stored variant of a URL that varies is invalidated with it, and
// each revalidates at its next request.
func TestInvalidateVariants(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		lang := r.Header.Get("Accept-Language")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("ETag", `"`+lang+`"`)
		if r.Header.Get("If-None-Match") == `"`+lang+`"` {
			w.WriteHeader(http.StatusNotModified)
			return true
		}
		fmt.Fprintf(w, "page in %q\n", lang)
		return true
	})
	langs := []string{"de", "fr", "ja"}
	get := func(lang string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.public.URL+"/"+e.key("/page"), nil)
		req.Header.Set("Accept-Language", lang)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("page in %q\n", lang); resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("%s: %d %q; want %q", lang, resp.StatusCode, body, want)
		}
		e.waitFills(t)
	}
	for _, l := range langs {
		get(l)
	}
	var st httpmirror.ObjectStatus
	if code := e.api(t, "GET", "/cache/"+e.key("/page"), nil, &st); code != 200 || st.Variants == 0 {
		t.Fatalf("lookup: %d, %d variants", code, st.Variants)
	}
	code, res := e.invalidate(t, jsonBody("key", e.key("/page")))
	if code != 200 || res.Invalidated != 1+st.Variants {
		t.Fatalf("invalidate: %d %+v; want %d invalidated (the object and its variants)", code, res, 1+st.Variants)
	}
	before := len(e.origin.Received())
	for _, l := range langs {
		get(l)
		get(l)
	}
	got := e.origin.Received()[before:]
	if len(got) != len(langs) {
		t.Fatalf("origin got %d requests after the invalidation; want %d (one revalidation per variant)", len(got), len(langs))
	}
	for _, r := range got {
		if inm := r.Header.Get("If-None-Match"); inm != `"`+r.Header.Get("Accept-Language")+`"` {
			t.Errorf("revalidation of variant %q sent If-None-Match %q", r.Header.Get("Accept-Language"), inm)
		}
	}
}

// Hostile input gets a clear 4xx and changes nothing; a key that is not
// stored is 404.
func TestInvalidateBadInput(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.Put("/a", []byte("a"))
	e.get(t, "/a")
	e.waitFills(t)
	for _, c := range []struct {
		name, body string
		code       int
		msg        string
	}{
		{"empty body", "", 400, "JSON object"},
		{"not JSON", "key=x", 400, "JSON object"},
		{"array", `["` + e.key("/a") + `"]`, 400, "JSON object"},
		{"unknown field", `{"url":"` + e.key("/a") + `"}`, 400, "JSON object"},
		{"two documents", `{"key":"` + e.key("/a") + `"} {}`, 400, "JSON object"},
		{"nothing", `{}`, 400, "nothing to invalidate"},
		{"all false", `{"all":false}`, 400, "nothing to invalidate"},
		{"empty prefix", `{"prefix":""}`, 400, `"all": true`},
		{"slash prefix", `{"prefix":"/"}`, 400, "every object"},
		{"key and glob", `{"key":"` + e.key("/a") + `","glob":"x/*"}`, 400, "not several"},
		{"prefix and all", `{"prefix":"` + e.key("/") + `","all":true}`, 400, "not several"},
		{"bracket glob", `{"glob":"["}`, 400, "only '*'"},
		{"bracket in path", `{"glob":"` + e.key("/[ab]*") + `"}`, 400, "only '*'"},
		{"brace glob", `{"glob":"` + e.key("/{a,b}") + `"}`, 400, "only '*'"},
		{"empty glob", `{"glob":""}`, 400, "empty glob"},
		{"ftp glob", `{"glob":"ftp://x/*"}`, 400, "scheme"},
		{"control in glob", `{"glob":"x/\u0001*"}`, 400, "control"},
		{"bad host in glob", `{"glob":"exa mple/*"}`, 400, "whole host"},
		{"long glob", `{"glob":"x/` + strings.Repeat("*a", 600) + `"}`, 400, "longer"},
		{"key without path", `{"key":"nohost"}`, 400, "host"},
		{"bad prefix host", `{"prefix":"not a host/"}`, 400, "host"},
		{"absent key", `{"key":"` + e.key("/absent") + `"}`, 404, "not cached"},
	} {
		var ae apiErr
		code := e.api(t, "POST", "/cache/invalidate", []byte(c.body), &ae)
		if code != c.code || !strings.Contains(ae.Error, c.msg) {
			t.Errorf("%s: %d %q; want %d with %q", c.name, code, ae.Error, c.code, c.msg)
		}
	}
	var ae apiErr
	if code := e.api(t, "POST", "/cache/invalidate", bytes.Repeat([]byte(" "), 70<<10), &ae); code != 413 {
		t.Errorf("70 KiB body: %d %q; want 413", code, ae.Error)
	}
	// The path keeps its other methods: GET is a lookup, of nothing.
	if code := e.api(t, "GET", "/cache/invalidate", nil, &ae); code != 400 {
		t.Errorf("GET /cache/invalidate: %d %q; want 400 (no such object reference)", code, ae.Error)
	}
	if info, err := e.store.Stat(context.Background(), e.key("/a")); err != nil || info.Header[policy.InvalidatedHeader] != nil {
		t.Errorf("after the refused requests: %+v, %v; want the object unmarked", info.Header, err)
	}
	// "**" is "*": explicit, and it matches every object.
	if code, res := e.invalidate(t, `{"glob":"**"}`); code != 200 || res.Invalidated != 1 || res.Key != "*" {
		t.Errorf(`glob "**": %d %+v; want 1 invalidated, glob "*"`, code, res)
	}
	if code, res := e.invalidate(t, `{"all":true}`); code != 200 || res.Invalidated != 1 || res.Kind != "all" {
		t.Errorf(`{"all": true}: %d %+v; want 1 invalidated`, code, res)
	}
}

// An invalidation during a download of the object lets the download go
// on; what it stores is marked when it ends, since the origin answered
// before the invalidation, so the next request revalidates it.
func TestInvalidateDuringFill(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		data := testutil.Payload(3, 1<<20)
		resp, release := e.heldDownload(t, "/slow.bin", data)
		code, res := e.invalidate(t, jsonBody("key", e.key("/slow.bin")))
		if code != 200 || res.Invalidated != 0 || res.Fills != 1 {
			t.Fatalf("invalidate during the download: %d %+v; want 0 invalidated, 1 fill", code, res)
		}
		release.Open()
		rest, err := io.ReadAll(resp.Body)
		if err != nil || len(rest) != len(data)-64<<10 {
			t.Fatalf("the download was disturbed: %d bytes, %v", len(rest), err)
		}
		e.waitFills(t)
		info, err := e.store.Stat(context.Background(), e.key("/slow.bin"))
		if err != nil || info.Header[policy.InvalidatedHeader] == nil {
			t.Fatalf("after the download: %+v, %v; want the stored object marked", info.Header, err)
		}
		e.origin.SetHook(nil)
		if code, body := e.get(t, "/slow.bin"); code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET after: %d, %d bytes", code, len(body))
		}
		if _, cond := originGets(e.origin); cond["/slow.bin"] != 1 {
			t.Errorf("conditional GETs after the download: %d; want 1", cond["/slow.bin"])
		}
	})
}

// 10,000 objects under a prefix are invalidated with a bounded listing
// (pages of the prefix only, not the siblings), every one counted and
// marked once, and nothing outside the prefix is touched.
func TestInvalidateManyObjects(t *testing.T) {
	e := newEnv(t, "memory")
	store := e.store
	ctx := context.Background()
	const n = 10000
	put := func(key string) {
		w, err := store.Create(ctx, key, storage.Info{Size: 1, ETag: `"e"`})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("x"))
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	host := e.origin.HostPort()
	for i := range n {
		put(fmt.Sprintf("%s/many/%05d", host, i))
	}
	for i := range 3000 {
		put(fmt.Sprintf("%s/other/%05d", host, i))
	}
	lists := func() string { return e.metric(t, `httpmirror_storage_operation_seconds_count{op="list"}`) }
	before := lists()
	code, res := e.invalidate(t, jsonBody("glob", host+"/many/*7"))
	if code != 200 || res.Invalidated != n/10 {
		t.Fatalf("glob: %d %+v; want %d", code, res, n/10)
	}
	code, res = e.invalidate(t, jsonBody("prefix", host+"/many/"))
	if code != 200 || res.Invalidated != n {
		t.Fatalf("prefix: %d %+v; want %d", code, res, n)
	}
	// Two walks of 10 pages each (and one listing each of the directory's
	// variants), never a page of /other/.
	var b, a float64
	fmt.Sscanf(before[strings.LastIndexByte(before, ' ')+1:], "%g", &b)
	after := lists()
	fmt.Sscanf(after[strings.LastIndexByte(after, ' ')+1:], "%g", &a)
	if a-b > 2*(n/1000+2) {
		t.Errorf("%g listings for two invalidations of %d objects; want at most %d", a-b, n, 2*(n/1000+2))
	}
	marked := 0
	for i := range n {
		info, err := store.Stat(ctx, fmt.Sprintf("%s/many/%05d", host, i))
		if err == nil && info.Header[policy.InvalidatedHeader] != nil {
			marked++
		}
	}
	if marked != n {
		t.Errorf("%d of %d objects marked", marked, n)
	}
	for i := range 3000 {
		if info, err := store.Stat(ctx, fmt.Sprintf("%s/other/%05d", host, i)); err != nil || info.Header[policy.InvalidatedHeader] != nil {
			t.Fatalf("sibling %d: %+v, %v; want it untouched", i, info.Header, err)
		}
	}
}

// A small object served from memory with a prebuilt header (a hot
// object) revalidates after an invalidation like any other: the prebuilt
// header's freshness is not used for the marked object.
func TestInvalidateHotObject(t *testing.T) {
	e := newEnv(t, "file")
	data := []byte("a small index file\n")
	e.origin.Put("/dists/stable/Index", data)
	for range 3 {
		if code, body := e.get(t, "/dists/stable/Index"); code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET: %d %q", code, body)
		}
		e.waitFills(t)
	}
	if code, res := e.invalidate(t, jsonBody("prefix", e.key("/dists/"))); code != 200 || res.Invalidated != 1 {
		t.Fatalf("invalidate: %d %+v", code, res)
	}
	for range 2 {
		if code, body := e.get(t, "/dists/stable/Index"); code != 200 || !bytes.Equal(body, data) {
			t.Fatalf("GET after the invalidation: %d %q", code, body)
		}
		e.waitFills(t)
	}
	if gets, cond := originGets(e.origin); gets["/dists/stable/Index"] != 2 || cond["/dists/stable/Index"] != 1 {
		t.Errorf("origin GETs %d, conditional %d; want 2 and 1", gets["/dists/stable/Index"], cond["/dists/stable/Index"])
	}
}

// An invalidation needs a token like a purge, and leaves one audit line
// naming the token, the remote address, what was asked and the count; a
// refused one is logged too, without the token.
func TestInvalidateAuditLog(t *testing.T) {
	e := newEnv(t, "file")
	host := e.origin.HostPort()
	e.origin.Put("/pool/a.deb", testutil.Payload(1, 1000))
	e.get(t, "/pool/a.deb")
	e.waitFills(t)
	base, log := adminServer(t, e, twoTokens, false)
	body := []byte(jsonBody("glob", host+"/pool/*.deb"))
	if resp, b := send(t, "POST", base+"/cache/invalidate", "", body); resp.StatusCode != 401 {
		t.Fatalf("without a token: %d %q; want 401", resp.StatusCode, b)
	}
	if resp, b := send(t, "POST", base+"/cache/invalidate", "Bearer wrong-token-0123456789abcdef", body); resp.StatusCode != 403 {
		t.Fatalf("with a wrong token: %d %q; want 403", resp.StatusCode, b)
	}
	if info, _ := e.store.Stat(context.Background(), e.key("/pool/a.deb")); info.Header[policy.InvalidatedHeader] != nil {
		t.Fatal("an unauthenticated invalidation marked the object")
	}
	if resp, b := send(t, "POST", base+"/cache/invalidate", "Bearer "+aliceToken, body); resp.StatusCode != 200 {
		t.Fatalf("invalidate: %d %q", resp.StatusCode, b)
	}
	if resp, b := send(t, "POST", base+"/cache/invalidate", "Bearer "+ciToken, []byte(jsonBody("key", host+"/pool/absent.deb"))); resp.StatusCode != 404 {
		t.Fatalf("invalidate of an absent key: %d %q; want 404", resp.StatusCode, b)
	}
	lines := log.lines(`msg="admin invalidate"`)
	want := [][]string{
		{"level=WARN", "remote=127.0.0.1:", "by=-", "method=POST", "status=401"},
		{"level=WARN", "remote=127.0.0.1:", "by=-", "status=403"},
		{"level=INFO", "remote=127.0.0.1:", "by=alice", "kind=glob", "glob=" + host + "/pool/*.deb", "objects=1", "fills=0", "status=200"},
		{"by=ci", "kind=key", "key=" + host + "/pool/absent.deb", "objects=0", "status=404"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d audit lines; want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	for i, parts := range want {
		for _, p := range parts {
			if !strings.Contains(lines[i], p) {
				t.Errorf("audit line %q lacks %q", lines[i], p)
			}
		}
	}
	if strings.Contains(log.String(), aliceToken) || strings.Contains(log.String(), "wrong-token") {
		t.Error("a token reached the log")
	}
}

// While the origin fails, an invalidated object follows the stale rules
// of any stale object: served as stored when its origin allows serving
// it stale, 504 when it said must-revalidate. Either way the mark stays,
// and the next request once the origin is back revalidates.
func TestInvalidateOriginDown(t *testing.T) {
	e := newEnv(t, "file")
	plain := testutil.Payload(5, 3000)
	strict := testutil.Payload(6, 3000)
	e.origin.Put("/plain.bin", plain)
	e.origin.Put("/strict.bin", strict).Header = http.Header{"Cache-Control": {"max-age=3600, must-revalidate"}}
	for _, p := range []string{"/plain.bin", "/strict.bin"} {
		if code, _ := e.get(t, p); code != 200 {
			t.Fatalf("GET %s: %d", p, code)
		}
	}
	e.waitFills(t)
	if code, res := e.invalidate(t, jsonBody("glob", e.key("/*.bin"))); code != 200 || res.Invalidated != 2 {
		t.Fatalf("invalidate: %d %+v", code, res)
	}
	e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return true
	})
	resp, err := http.Get(e.public.URL + "/" + e.key("/plain.bin"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, plain) {
		t.Errorf("plain object while the origin fails: %d, %d bytes; want the stored bytes", resp.StatusCode, len(body))
	}
	for k := range resp.Header {
		if strings.HasPrefix(k, "X-Httpmirror") {
			t.Errorf("the client got the mirror's own header %s", k)
		}
	}
	if code, _ := e.get(t, "/strict.bin"); code != 504 {
		t.Errorf("must-revalidate object while the origin fails: %d; want 504", code)
	}
	e.waitFills(t)
	for _, p := range []string{"/plain.bin", "/strict.bin"} {
		if info, err := e.store.Stat(context.Background(), e.key(p)); err != nil || info.Header[policy.InvalidatedHeader] == nil {
			t.Errorf("%s after the failed revalidation: %v, %v; want still marked", p, info.Header, err)
		}
	}
	e.origin.SetHook(nil)
	before := len(e.origin.Received())
	for _, p := range []string{"/plain.bin", "/strict.bin", "/plain.bin", "/strict.bin"} {
		if code, _ := e.get(t, p); code != 200 {
			t.Errorf("GET %s once the origin is back: %d", p, code)
		}
		e.waitFills(t)
	}
	if n := len(e.origin.Received()) - before; n != 2 {
		t.Errorf("origin got %d requests once back; want 2 (one revalidation each, then hits)", n)
	}
}

// Closing the mirror while an invalidation waits for a download to end
// does not wait for the download: Close aborts it, the pending mark is
// dropped with it, and nothing half-stored is left marked.
func TestInvalidatePendingFillAtClose(t *testing.T) {
	e := newEnv(t, "file")
	data := testutil.Payload(4, 1<<20)
	e.origin.Put("/held.bin", data)
	release := testutil.NewGate(t) // opened by the test's cleanup only
	e.origin.SetHook(holdAfter(64<<10, release))
	resp, err := http.Get(e.public.URL + "/" + e.key("/held.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if code, res := e.invalidate(t, jsonBody("prefix", e.key("/"))); code != 200 || res.Fills != 1 || res.Invalidated != 0 {
		t.Fatalf("invalidate: %d %+v; want 1 fill waited for", code, res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.h.Close(ctx); err != nil {
		t.Fatalf("Close with an invalidation waiting for a held download: %v", err)
	}
	if release.IsOpen() {
		t.Fatal("the download was released before Close returned")
	}
	if _, err := e.store.Stat(context.Background(), e.key("/held.bin")); err == nil {
		t.Error("the aborted download was stored")
	}
}

// Replicas sharing a bucket see an invalidation made through any of
// them: an object another replica has been serving revalidates there at
// its next request too, once for the bucket.
func TestInvalidateSeenByReplicas(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	a := newEnv(t, "s3", func(h *httpmirror.MirrorHandler) { h.RemoteCache = srv.Backend(t, bucket, "mirror") })
	b := newEnv(t, "s3", func(h *httpmirror.MirrorHandler) {
		h.RemoteCache = srv.Backend(t, bucket, "mirror")
		h.Client = httpmirror.NewUpstreamClient(httpmirror.UpstreamOptions{RootCAs: a.origin.CertPool(), AllowPrivate: true})
	})
	data := []byte("a small index\n")
	a.origin.Put("/dists/Index", data)
	getB := func() {
		t.Helper()
		resp, err := http.Get(b.public.URL + "/" + a.key("/dists/Index"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Fatalf("replica b: %d %q", resp.StatusCode, body)
		}
		b.waitFills(t)
	}
	if code, _ := a.get(t, "/dists/Index"); code != 200 {
		t.Fatalf("replica a: %d", code)
	}
	a.waitFills(t)
	for range 3 {
		getB()
	}
	if n := a.origin.Gets.Load(); n != 1 {
		t.Fatalf("origin GETs before the invalidation: %d; want 1 (b serves what a stored)", n)
	}
	if code, res := a.invalidate(t, jsonBody("key", a.key("/dists/Index"))); code != 200 || res.Invalidated != 1 {
		t.Fatalf("invalidate through a: %d %+v", code, res)
	}
	getB()
	getB()
	if gets, cond := originGets(a.origin); gets["/dists/Index"] != 2 || cond["/dists/Index"] != 1 {
		t.Errorf("origin GETs %d, conditional %d; want 2 and 1 (b revalidated once)", gets["/dists/Index"], cond["/dists/Index"])
	}
}
