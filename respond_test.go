package httpmirror_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

func TestMissThenHit(t *testing.T) {
	o := newOrigin(t)
	data := payload(1, 3<<20+5)
	f := o.Put("/dist/app.tar.gz", data)
	f.Type = "application/gzip"
	f.Header = http.Header{"Content-Disposition": {`attachment; filename="app.tar.gz"`}}
	m := newMirror(t, o)

	for i, want := range []int64{1, 1, 1} {
		r := get(t, m.url(o, "/dist/app.tar.gz"))
		if r.StatusCode != 200 || r.err != nil {
			t.Fatalf("request %d: status %d, body error %v", i, r.StatusCode, r.err)
		}
		if sha(r.body) != sha(data) {
			t.Fatalf("request %d: body sha256 %s; want %s", i, sha(r.body), sha(data))
		}
		if got := o.Gets.Load(); got != want {
			t.Fatalf("after request %d the origin saw %d GETs; want %d", i, got, want)
		}
		if r.ContentLength != int64(len(data)) {
			t.Errorf("request %d: Content-Length %d; want %d", i, r.ContentLength, len(data))
		}
		for k, v := range map[string]string{
			"Etag":                f.ETag,
			"Content-Type":        "application/gzip",
			"Last-Modified":       f.ModTime.Format(http.TimeFormat),
			"Content-Disposition": `attachment; filename="app.tar.gz"`,
		} {
			if got := r.Header.Get(k); got != v {
				t.Errorf("request %d: %s = %q; want %q", i, k, got, v)
			}
		}
	}
	// The origin got one plain GET: no client headers, no compression, no
	// Range but the fill's own, for its first segment.
	req := o.Received()[0]
	if req.Header.Get("Accept-Encoding") != "" || !firstRequest(req) {
		t.Errorf("fill request carried Accept-Encoding %q, Range %q, If-Range %q", req.Header.Get("Accept-Encoding"), req.Header.Get("Range"), req.Header.Get("If-Range"))
	}
}

func TestMissingContentTypeStaysMissing(t *testing.T) {
	o := newOrigin(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		// Go would sniff a type; a nil entry suppresses it at the origin.
		w.Header()["Content-Type"] = nil
		w.Write([]byte("<html>not really</html>"))
		return true
	})
	m := newMirror(t, o)
	for i := range 2 {
		r := get(t, m.url(o, "/page"))
		if ct, ok := r.Header["Content-Type"]; r.StatusCode != 200 || ok {
			t.Errorf("request %d: status %d, Content-Type %q; want 200 without Content-Type", i, r.StatusCode, ct)
		}
	}
}

func TestHitHTTPSemantics(t *testing.T) {
	o := newOrigin(t)
	data := payload(2, 100000)
	f := o.Put("/file.bin", data)
	m := newMirror(t, o)
	u := m.url(o, "/file.bin")
	if r := get(t, u); r.StatusCode != 200 {
		t.Fatalf("warm-up: %d", r.StatusCode)
	}

	t.Run("range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=100-199"}})
		if r.StatusCode != 206 || !bytes.Equal(r.body, data[100:200]) {
			t.Fatalf("status %d, %d bytes; want 206 with bytes 100-199", r.StatusCode, len(r.body))
		}
		if cr := r.Header.Get("Content-Range"); cr != "bytes 100-199/100000" {
			t.Errorf("Content-Range = %q", cr)
		}
	})
	t.Run("suffix range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=-10"}})
		if r.StatusCode != 206 || !bytes.Equal(r.body, data[len(data)-10:]) {
			t.Fatalf("status %d; want 206 with the last 10 bytes", r.StatusCode)
		}
	})
	t.Run("open range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=99990-"}})
		if r.StatusCode != 206 || !bytes.Equal(r.body, data[99990:]) {
			t.Fatalf("status %d; want 206 with bytes from 99990", r.StatusCode)
		}
	})
	t.Run("multi range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=0-9,500-509"}})
		if r.StatusCode != 206 {
			t.Fatalf("status %d; want 206", r.StatusCode)
		}
		parts := readMultipart(t, r)
		if len(parts) != 2 || !bytes.Equal(parts[0], data[0:10]) || !bytes.Equal(parts[1], data[500:510]) {
			t.Fatalf("multipart parts wrong: %d parts", len(parts))
		}
	})
	t.Run("unsatisfiable", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=200000-"}})
		if r.StatusCode != 416 {
			t.Fatalf("status %d; want 416", r.StatusCode)
		}
		if cr := r.Header.Get("Content-Range"); cr != "bytes */100000" {
			t.Errorf("Content-Range = %q; want bytes */100000", cr)
		}
	})
	t.Run("if-none-match", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"If-None-Match": {f.ETag}})
		if r.StatusCode != 304 || len(r.body) != 0 {
			t.Fatalf("status %d, %d bytes; want 304 without body", r.StatusCode, len(r.body))
		}
		if r.Header.Get("Etag") != f.ETag {
			t.Errorf("304 ETag = %q; want %q", r.Header.Get("Etag"), f.ETag)
		}
	})
	t.Run("if-none-match other", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"If-None-Match": {`"other"`}})
		if r.StatusCode != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("status %d; want 200 with the body", r.StatusCode)
		}
	})
	t.Run("if-modified-since", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"If-Modified-Since": {f.ModTime.Add(time.Hour).Format(http.TimeFormat)}})
		if r.StatusCode != 304 {
			t.Fatalf("status %d; want 304", r.StatusCode)
		}
		r = do(t, "GET", u, http.Header{"If-Modified-Since": {f.ModTime.Add(-time.Hour).Format(http.TimeFormat)}})
		if r.StatusCode != 200 || len(r.body) != len(data) {
			t.Fatalf("older date: status %d; want 200", r.StatusCode)
		}
	})
	t.Run("if-range", func(t *testing.T) {
		r := do(t, "GET", u, http.Header{"Range": {"bytes=0-9"}, "If-Range": {f.ETag}})
		if r.StatusCode != 206 || len(r.body) != 10 {
			t.Fatalf("matching If-Range: status %d; want 206", r.StatusCode)
		}
		r = do(t, "GET", u, http.Header{"Range": {"bytes=0-9"}, "If-Range": {`"stale"`}})
		if r.StatusCode != 200 || len(r.body) != len(data) {
			t.Fatalf("stale If-Range: status %d; want 200 with the whole body", r.StatusCode)
		}
	})
	t.Run("head", func(t *testing.T) {
		r := do(t, "HEAD", u, nil)
		if r.StatusCode != 200 || len(r.body) != 0 || r.ContentLength != int64(len(data)) {
			t.Fatalf("status %d, %d body bytes, Content-Length %d; want 200, none, %d", r.StatusCode, len(r.body), r.ContentLength, len(data))
		}
		if r.Header.Get("Etag") != f.ETag || r.Header.Get("Accept-Ranges") != "bytes" {
			t.Errorf("HEAD headers: ETag %q Accept-Ranges %q", r.Header.Get("Etag"), r.Header.Get("Accept-Ranges"))
		}
	})
	if got := o.Gets.Load(); got != 1 {
		t.Errorf("origin saw %d GETs; want 1", got)
	}
}

func readMultipart(t *testing.T, r response) [][]byte {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q: %v", r.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
	var parts [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		parts = append(parts, b)
	}
}

// A file the origin serves with Content-Encoding (a .gz served as gzip, as
// many origins do) is replayed byte for byte, with the encoding and with
// Content-Length, whole and by range.
func TestContentEncodingKeepsLength(t *testing.T) {
	o := newOrigin(t)
	data := payload(22, 50000)
	o.Put("/pkg.tar.gz", data).Header = http.Header{"Content-Encoding": {"gzip"}}
	m := newMirror(t, o)
	for _, round := range []string{"cold", "warm"} {
		r := get(t, m.url(o, "/pkg.tar.gz"))
		if r.StatusCode != 200 || !bytes.Equal(r.body, data) || r.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("%s: status %d, %d bytes, encoding %q", round, r.StatusCode, len(r.body), r.Header.Get("Content-Encoding"))
		}
		// (The test origin itself sends no length with an encoding:
		// net/http's ServeContent leaves it out. Once stored, the length
		// is known.)
		if round == "warm" && r.ContentLength != int64(len(data)) {
			t.Errorf("warm: Content-Length %d; want %d", r.ContentLength, len(data))
		}
		waitFills(t, m)
	}
	r := do(t, "GET", m.url(o, "/pkg.tar.gz"), http.Header{"Range": {"bytes=0-9"}})
	if r.StatusCode != 206 || !bytes.Equal(r.body, data[:10]) || r.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("range: status %d, encoding %q", r.StatusCode, r.Header.Get("Content-Encoding"))
	}
	r = do(t, "GET", m.url(o, "/pkg.tar.gz"), http.Header{"Range": {"bytes=999999-"}})
	if r.StatusCode != 416 || r.Header.Get("Content-Encoding") != "" {
		t.Fatalf("416: encoding %q on an error", r.Header.Get("Content-Encoding"))
	}
}

const hfCommit = "0123456789abcdef0123456789abcdef01234567"

// hfOrigin answers like the Hugging Face Hub: /{repo}/resolve/{rev}/{file}
// serves small files directly with the blob's ETag and X-Repo-Commit, and
// redirects large (LFS) files to a CDN path, the redirect carrying
// X-Repo-Commit, X-Linked-Etag and X-Linked-Size. /api/ serves JSON.
func hfOrigin(t *testing.T, config, weights []byte) *testOrigin {
	o := newOrigin(t)
	weightsSHA := testutil.SHA256(weights)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		h := w.Header()
		switch {
		case r.URL.Path == "/org/model/resolve/main/config.json":
			h.Set("X-Repo-Commit", hfCommit)
			testutil.ServeFile(w, r, &testutil.File{Data: config, ETag: `"cfg-blob-sha1"`, Type: "application/json"})
		case r.URL.Path == "/org/model/resolve/main/model.safetensors":
			h.Set("X-Repo-Commit", hfCommit)
			h.Set("X-Linked-Etag", `"`+weightsSHA+`"`)
			h.Set("X-Linked-Size", fmt.Sprint(len(weights)))
			h.Set("ETag", `"`+weightsSHA+`"`)
			http.Redirect(w, r, "/cdn/blobs/"+weightsSHA, http.StatusFound)
		case strings.HasPrefix(r.URL.Path, "/cdn/blobs/"):
			testutil.ServeFile(w, r, &testutil.File{Data: weights, ETag: `"cdn-etag"`, Type: "binary/octet-stream"})
		case r.URL.Path == "/api/models/org/model":
			h.Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id":"org/model","sha":%q}`, hfCommit)
		default:
			return false
		}
		return true
	})
	return o
}

func TestHuggingFaceHeaders(t *testing.T) {
	config := []byte(`{"model_type":"test"}`)
	weights := payload(80, 2<<20)
	o := hfOrigin(t, config, weights)
	m := newMirror(t, o)

	for _, c := range []struct {
		file       string
		body       []byte
		etag       string
		linkedEtag string
		linkedSize string
	}{
		{"config.json", config, `"cfg-blob-sha1"`, "", ""},
		{"model.safetensors", weights, `"cdn-etag"`, `"` + testutil.SHA256(weights) + `"`, fmt.Sprint(len(weights))},
	} {
		u := m.url(o, "/org/model/resolve/main/"+c.file)
		check := func(round string, r response) {
			t.Helper()
			if r.StatusCode != 200 {
				t.Fatalf("%s %s: status %d", c.file, round, r.StatusCode)
			}
			if r.Header.Get("X-Repo-Commit") != hfCommit {
				t.Errorf("%s %s: X-Repo-Commit %q", c.file, round, r.Header.Get("X-Repo-Commit"))
			}
			if r.Header.Get("Etag") != c.etag {
				t.Errorf("%s %s: ETag %q; want %q", c.file, round, r.Header.Get("Etag"), c.etag)
			}
			if r.ContentLength != int64(len(c.body)) {
				t.Errorf("%s %s: Content-Length %d; want %d", c.file, round, r.ContentLength, len(c.body))
			}
			if r.Header.Get("X-Linked-Etag") != c.linkedEtag || r.Header.Get("X-Linked-Size") != c.linkedSize {
				t.Errorf("%s %s: X-Linked-Etag %q X-Linked-Size %q; want %q %q", c.file, round,
					r.Header.Get("X-Linked-Etag"), r.Header.Get("X-Linked-Size"), c.linkedEtag, c.linkedSize)
			}
		}
		// The Hub client asks HEAD first, on a cold mirror.
		check("cold HEAD", do(t, "HEAD", u, nil))
		r := get(t, u)
		check("cold GET", r)
		if !bytes.Equal(r.body, c.body) {
			t.Fatalf("%s: body differs", c.file)
		}
		waitFills(t, m)
		check("warm HEAD", do(t, "HEAD", u, nil))
		check("warm GET", get(t, u))
	}

	// API JSON is mutable metadata: revalidated, not frozen.
	api := m.url(o, "/api/models/org/model")
	get(t, api)
	waitFills(t, m)
	before := o.Gets.Load()
	if r := get(t, api); !strings.Contains(string(r.body), hfCommit) {
		t.Fatalf("api: %q", r.body)
	}
	if o.Gets.Load() != before+1 {
		t.Fatalf("API JSON served without asking the origin")
	}
}

// A slow origin's first bytes reach the client as soon as the mirror has
// them: the response header is not held back until a buffer fills (net/http
// keeps the first 2 KiB of a response). Plain GETs (sent from the spool)
// and Range requests (answered through http.ServeContent) alike.
func TestFirstBytesNotHeldBack(t *testing.T) {
	for _, rng := range []string{"", "bytes=0-99999"} {
		t.Run("range="+rng, func(t *testing.T) {
			o := newOrigin(t)
			data := payload(96, 100000)
			o.Put("/slow.bin", data)
			more := newGate(t)
			o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
				w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
				w.Header().Set("ETag", f.ETag)
				w.Write(f.Data[:10]) // ten bytes, then nothing until the client has them
				w.(http.Flusher).Flush()
				more.Wait()
				w.Write(f.Data[10:])
				return true
			})
			m := newMirror(t, o)
			// The deadline only keeps a failing mirror from hanging the test.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", m.url(o, "/slow.bin"), nil)
			if rng != "" {
				req.Header.Set("Range", rng)
			}
			resp, err := noRedirectClient.Do(req)
			if err != nil {
				t.Fatalf("no response header while the origin holds back: %v", err)
			}
			defer resp.Body.Close()
			first := make([]byte, 10)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("the first 10 bytes did not arrive while the origin holds back: %v", err)
			}
			more.Open()
			rest, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(append(first, rest...), data) {
				t.Fatalf("body: %d bytes, err %v; want the whole file", 10+len(rest), err)
			}
		})
	}
}
