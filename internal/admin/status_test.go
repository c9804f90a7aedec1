package admin_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// The status data counts hits, misses and failures, lists the download in
// progress with its bytes, the largest objects, and recent failures
// without their query strings.
func TestStatus(t *testing.T) {
	backends(t, func(t *testing.T, backend string) {
		e := newEnv(t, backend)
		e.origin.Put("/big.bin", testutil.Payload(1, 300000))
		e.origin.Put("/small.bin", testutil.Payload(2, 1000))
		e.origin.Put("/slow.bin", testutil.Payload(3, 500000))
		e.get(t, "/big.bin")
		e.get(t, "/small.bin")
		e.waitFills(t)
		e.get(t, "/big.bin")
		e.origin.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			if r.URL.Path == "/broken" {
				http.Error(w, "down", http.StatusInternalServerError)
				return true
			}
			return false
		})
		resp, err := http.Get(e.public.URL + "/" + e.key("/broken") + "?token=s3cret")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		release := testutil.NewGate(t)
		e.origin.SetHook(holdAfter(100000, release))
		slow, err := http.Get(e.public.URL + "/" + e.key("/slow.bin"))
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Body.Close()
		if _, err := io.ReadFull(slow.Body, make([]byte, 100000)); err != nil {
			t.Fatal(err)
		}

		var st httpmirror.Status
		if code := e.api(t, "GET", "/status.json", nil, &st); code != 200 {
			t.Fatalf("/status.json: %d", code)
		}
		if tr := st.Traffic; tr == nil || tr.Hits != 1 || tr.Misses != 2 || tr.Failed != 1 || tr.CacheBytes != 300000 || tr.OriginBytes != 301000 {
			// The slow download's request is counted when it ends.
			t.Errorf("traffic %+v; want 1 hit of 300000 bytes, 2 misses of 301000, 1 failure", st.Traffic)
		}
		if len(st.Fills) != 1 || st.Fills[0].Key != e.key("/slow.bin") || st.Fills[0].Bytes != 100000 || st.Fills[0].Size != 500000 {
			t.Errorf("fills %+v; want /slow.bin at 100000 of 500000 bytes", st.Fills)
		}
		if l := st.Largest; l == nil || !l.Complete || len(l.Objects) != 2 || l.Objects[0].Key != e.key("/big.bin") || l.Objects[1].Size != 1000 {
			t.Errorf("largest %+v; want big.bin then small.bin", st.Largest)
		}
		if l := st.Largest; l != nil && l.Indexed != (backend == "file") {
			t.Errorf("largest from the index: %v; want %v (only the local disk keeps one)", l.Indexed, backend == "file")
		}
		if len(st.Errors) != 1 || st.Errors[0].Status != 502 || st.Errors[0].Path != "/"+e.key("/broken") || st.Errors[0].Reason != "upstream unavailable" {
			t.Errorf("recent errors %+v; want the 502 of /broken", st.Errors)
		}

		page, err := http.Get(e.admin.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		html, _ := io.ReadAll(page.Body)
		page.Body.Close()
		for _, want := range []string{"Hit ratio", "33.3%", e.key("/slow.bin"), `<progress value="100000" max="500000">`, e.key("/big.bin"), "upstream unavailable"} {
			if !strings.Contains(string(html), want) {
				t.Errorf("status page lacks %q", want)
			}
		}
		if page.StatusCode != 200 || page.Header.Get("Content-Type") != "text/html; charset=utf-8" || strings.Contains(string(html), "s3cret") {
			t.Errorf("status page: %d %q, or it shows a query string", page.StatusCode, page.Header.Get("Content-Type"))
		}
		var ae apiErr
		if code := e.api(t, "GET", "/?refresh=soon", nil, &ae); code != 400 {
			t.Errorf("bad refresh: %d; want 400", code)
		}
		release.Open()
	})
}
