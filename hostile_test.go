package httpmirror_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

func TestHostileRequests(t *testing.T) {
	o := newOrigin(t)
	o.Put("/ok.txt", []byte("ok"))
	m := newMirror(t, o)
	addr := strings.TrimPrefix(m.URL, "http://")
	h := "/" + o.HostPort()
	long := strings.Repeat("a", 64<<10)

	reqs := map[string]string{
		"dot dot":                   "GET " + h + "/../../etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"dot dot first":             "GET /../etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded dot dot":           "GET " + h + "/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"upper encoded dot dot":     "GET " + h + "/%2E%2E/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"mixed encoded dot dot":     "GET " + h + "/.%2e/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded slash traversal":   "GET " + h + "/a%2F..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\nHost: m\r\n\r\n",
		"double encoded dot dot":    "GET " + h + "/%252e%252e/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"servlet dot dot":           "GET " + h + "/..;/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"backslash":                 "GET " + h + "/..\\..\\etc\\passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded backslash":         "GET " + h + "/..%5c..%5cetc%5cpasswd HTTP/1.1\r\nHost: m\r\n\r\n",
		"overlong utf8 dots":        "GET " + h + "/%c0%ae%c0%ae/etc/passwd HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded NUL":               "GET " + h + "/file%00.txt HTTP/1.1\r\nHost: m\r\n\r\n",
		"encoded CRLF":              "GET " + h + "/a%0d%0aSet-Cookie:%20x=1 HTTP/1.1\r\nHost: m\r\n\r\n",
		"raw NUL":                   "GET " + h + "/a\x00b HTTP/1.1\r\nHost: m\r\n\r\n",
		"raw CR in target":          "GET " + h + "/a\rb HTTP/1.1\r\nHost: m\r\n\r\n",
		"invalid escape":            "GET " + h + "/%zz HTTP/1.1\r\nHost: m\r\n\r\n",
		"64 KiB segment":            "GET " + h + "/" + long + " HTTP/1.1\r\nHost: m\r\n\r\n",
		"duplicate Host":            "GET " + h + "/ok.txt HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n",
		"bad Host":                  "GET " + h + "/ok.txt HTTP/1.1\r\nHost: exa mple.com\r\n\r\n",
		"missing Host":              "GET " + h + "/ok.txt HTTP/1.1\r\n\r\n",
		"asterisk target":           "GET * HTTP/1.1\r\nHost: m\r\n\r\n",
		"garbage request line":      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
		"POST":                      "POST " + h + "/ok.txt HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\n\r\n",
		"TRACE":                     "TRACE " + h + "/ok.txt HTTP/1.1\r\nHost: m\r\n\r\n",
		"CONNECT":                   "CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n",
		"absolute-form to metadata": "GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
		"huge header":               "GET " + h + "/ok.txt HTTP/1.1\r\nHost: m\r\nX-Big: " + strings.Repeat("b", 1<<20) + "\r\n\r\n",
		"host is dot dot":           "GET /../ok.txt HTTP/1.1\r\nHost: m\r\n\r\n",
	}
	for name, req := range reqs {
		t.Run(name, func(t *testing.T) {
			code := testutil.RawStatus(t, addr, req)
			if code < 400 || code > 499 {
				t.Errorf("status %d; want a 4xx", code)
			}
			// The server keeps serving.
			if r := get(t, m.url(o, "/ok.txt")); r.StatusCode != 200 || string(r.body) != "ok" {
				t.Fatalf("after the hostile request: status %d body %q", r.StatusCode, r.body)
			}
		})
	}
	if got := o.Gets.Load(); got != 1 {
		t.Errorf("origin saw %d GETs; want 1 (the control file)", got)
	}

	// Nothing but the cache's own layout exists: the parent of the cache
	// root holds only the root, and the root only its fixed entries and
	// hash-named object files.
	parent := filepath.Dir(m.root)
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 || entries[0].Name() != "cache" {
		t.Errorf("cache parent holds %v; want only the cache directory", entries)
	}
	objectName := regexp.MustCompile(`^objects/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}$`)
	filepath.WalkDir(m.root, func(p string, d os.DirEntry, err error) error {
		rel, _ := filepath.Rel(m.root, p)
		if err != nil || d.IsDir() || rel == "lock" {
			return nil
		}
		if !objectName.MatchString(filepath.ToSlash(rel)) {
			t.Errorf("unexpected file in the cache: %s", rel)
		}
		return nil
	})
}
