package httpmirror_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

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
