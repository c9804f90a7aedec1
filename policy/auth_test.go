package policy

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

func TestSharedWithAuthorization(t *testing.T) {
	for cc, want := range map[string]bool{
		"": false, "max-age=60": false, "no-cache": false, "private, max-age=60": false,
		"public": true, "public, max-age=60": true, "s-maxage=60": true, "must-revalidate": true,
		"proxy-revalidate": true, "public, no-store": false, "max-age=0, Public": true,
	} {
		h := http.Header{}
		if cc != "" {
			h.Set("Cache-Control", cc)
		}
		if got := SharedWithAuthorization(h); got != want {
			t.Errorf("SharedWithAuthorization(%q) = %v; want %v", cc, got, want)
		}
	}
}

// chain builds the response of a request (with header h) that followed a
// redirect answered with redirectCC (when not "-") to a final response
// answered with finalCC.
func chain(h http.Header, redirectCC, finalCC string) *http.Response {
	first := &http.Request{URL: &url.URL{Path: "/a"}, Header: h}
	req := first
	if redirectCC != "-" {
		redirect := &http.Response{StatusCode: 302, Header: http.Header{"Cache-Control": {redirectCC}}, Request: first}
		// The client drops Authorization when it follows the redirect
		// to another origin.
		req = &http.Request{URL: &url.URL{Host: "cdn.example", Path: "/signed"}, Header: http.Header{}, Response: redirect}
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Cache-Control": {finalCC}}, Request: req}
}

func TestNeedsAuthorization(t *testing.T) {
	auth := http.Header{"Authorization": {"Bearer x"}}
	for _, tc := range []struct {
		name                string
		h                   http.Header
		redirectCC, finalCC string
		authenticated, want bool
	}{
		{"anonymous", http.Header{}, "-", "", false, false},
		{"anonymous redirected", http.Header{}, "", "", false, false},
		{"authenticated, private by default", auth, "-", "max-age=60", true, true},
		{"authenticated, public", auth, "-", "public", true, false},
		{"authenticated, s-maxage", auth, "-", "s-maxage=60", true, false},
		{"authenticated, must-revalidate", auth, "-", "must-revalidate", true, false},
		{"redirect to a public CDN URL", auth, "no-cache", "public, max-age=604800", true, true},
		{"public redirect to a public URL", auth, "public", "public", true, false},
		{"public redirect to a private URL", auth, "public", "", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := chain(tc.h, tc.redirectCC, tc.finalCC)
			if got := Authenticated(resp); got != tc.authenticated {
				t.Errorf("Authenticated = %v; want %v", got, tc.authenticated)
			}
			if got := NeedsAuthorization(resp); got != tc.want {
				t.Errorf("NeedsAuthorization = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestAuthScope(t *testing.T) {
	for _, tc := range []struct{ host, path, want string }{
		{"huggingface.co", "/org/model/resolve/main/model.safetensors", "models/org/model"},
		{"huggingface.co", "/org/model/resolve/refs%2Fpr%2F1/config.json", "models/org/model"},
		{"huggingface.co", "/api/models/org/model/revision/main", "models/org/model"},
		{"huggingface.co", "/api/models/org/model/tree/main/sub", "models/org/model"},
		{"huggingface.co", "/datasets/org/data/resolve/main/train.parquet", "datasets/org/data"},
		{"huggingface.co", "/api/datasets/org/data/paths-info/main", "datasets/org/data"},
		{"huggingface.co", "/spaces/org/app/resolve/main/app.py", "spaces/org/app"},
		{"hf.co", "/org/model/resolve/main/x", "models/org/model"},
		{"huggingface.co", "/org/resolve/resolve/main/x", "models/org/resolve"},
		// Not recognised: the object's own path.
		{"huggingface.co", "/gpt2/resolve/main/config.json", "/gpt2/resolve/main/config.json"},
		{"huggingface.co", "/api/models/org/model", "/api/models/org/model"},
		{"huggingface.co", "/api/whoami-v2", "/api/whoami-v2"},
		{"huggingface.co", "/org%2Fx/model/resolve/main/x", "/org%2Fx/model/resolve/main/x"},
		{"huggingface.co", "/org/model/files/x", "/org/model/files/x"},
		{"huggingface.co", "/org", "/org"},
		{"huggingface.co:8443", "/org/model/resolve/main/x", "/org/model/resolve/main/x"},
		{"cdn-lfs.hf.co", "/org/model/resolve/main/x", "/org/model/resolve/main/x"},
		{"github.com", "/org/repo/releases/download/v1/a.tgz", "/org/repo/releases/download/v1/a.tgz"},
	} {
		if got := AuthScope(tc.host, tc.path); got != tc.want {
			t.Errorf("AuthScope(%s, %s) = %q; want %q", tc.host, tc.path, got, tc.want)
		}
	}
}

func TestSameObject(t *testing.T) {
	lm := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	hub := func(etag, size string) http.Header {
		h := http.Header{"X-Linked-Etag": {etag}}
		if size != "" {
			h.Set("X-Linked-Size", size)
		}
		return h
	}
	file := storage.Info{Size: 1000, ETag: `"abc"`, LastModified: lm, ContentType: "application/octet-stream"}
	dated := storage.Info{Size: 1000, LastModified: lm}
	weak := storage.Info{Size: 1000, ETag: `W/"abc"`, LastModified: lm}
	hubFile := storage.Info{Size: 1000, ETag: `"cdn-1"`, Header: hub(`"sha"`, "1000")}
	bare := storage.Info{Size: 1000}
	signin := storage.Info{Size: 5120, ContentType: "text/html"}
	for _, tc := range []struct {
		name           string
		stored, answer storage.Info
		want           bool
	}{
		{"same strong ETag", file, storage.Info{Size: 1000, ETag: `"abc"`}, true},
		{"same strong ETag, other length (HEAD without one)", file, storage.Info{Size: -1, ETag: `"abc"`}, true},
		{"other ETag, same date and length", file, storage.Info{Size: 1000, ETag: `"new"`, LastModified: lm}, false},
		{"no ETag in the answer, same date and length", file, storage.Info{Size: 1000, LastModified: lm}, false},
		{"sign-in page", file, signin, false},
		{"weak ETag: date and length", weak, storage.Info{Size: 1000, LastModified: lm}, true},
		{"weak ETag repeated is no proof", weak, storage.Info{Size: 5, ETag: `W/"abc"`}, false},
		{"date and length", dated, storage.Info{Size: 1000, LastModified: lm}, true},
		{"date, other length", dated, storage.Info{Size: 999, LastModified: lm}, false},
		{"length, no date", dated, storage.Info{Size: 1000}, false},
		{"later date", dated, storage.Info{Size: 1000, LastModified: lm.Add(time.Second)}, false},
		{"no validator stored", bare, storage.Info{Size: 1000}, false},
		{"no validator stored, sign-in page", bare, signin, false},
		{"hub: linked ETag on the redirect", hubFile, storage.Info{Size: 1000, ETag: `"cdn-2"`, Header: hub(`"sha"`, "1000")}, true},
		{"hub: linked ETag, no size", hubFile, storage.Info{Size: 1000, Header: hub(`"sha"`, "")}, true},
		{"hub: linked ETag, other size", hubFile, storage.Info{Size: 1000, Header: hub(`"sha"`, "999")}, false},
		{"hub: other linked ETag, same CDN ETag", hubFile, storage.Info{Size: 1000, ETag: `"cdn-1"`, Header: hub(`"other"`, "1000")}, true},
		{"hub: no linked ETag, CDN ETag", hubFile, storage.Info{Size: 1000, ETag: `"cdn-1"`}, true},
		{"hub: 401 page", hubFile, storage.Info{Size: 12, ContentType: "text/plain"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SameObject(tc.stored, tc.answer); got != tc.want {
				t.Errorf("SameObject(%+v, %+v) = %v; want %v", tc.stored, tc.answer, got, tc.want)
			}
		})
	}
}
