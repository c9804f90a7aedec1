package httpmirror_test

import (
	"bufio"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
)

// FuzzCachePath feeds arbitrary request targets and Host headers through
// target resolution (in the first-path and Host-header modes) and the disk
// backend's key-to-file mapping: whatever the request holds, the file stays
// inside the cache root.
func FuzzCachePath(f *testing.F) {
	for _, s := range []struct{ host, target string }{
		{"example.com", "/example.com/a/b"},
		{"example.com", "/example.com/../../etc/passwd"},
		{"example.com", "/example.com/%2e%2e/%2e%2e/etc/passwd"},
		{"example.com", "/example.com/a%2F..%2F..%2Fx"},
		{"example.com", "/example.com/..%5c..%5cwin.ini"},
		{"example.com", "/example.com/a%00b"},
		{"example.com", "/example.com:443/%252e%252e/x"},
		{"../../etc", "/passwd"},
		{"a.b%2f..%2f..", "/x"},
		{"example.com", "/" + strings.Repeat("a", 300) + ".com/" + strings.Repeat("b/", 200)},
		{"[::1]:80", "/x/y"},
		{"example.com", "/example.com/simple/pkg/"},
	} {
		f.Add(s.host, s.target)
	}
	root := filepath.Join(f.TempDir(), "cache")
	b, err := file.New(root, file.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	handlers := []*httpmirror.MirrorHandler{
		{HostFromFirstPath: true, Client: &http.Client{}},
		{Client: &http.Client{}},
		{BaseDomain: "mirror.test", Client: &http.Client{}},
	}
	f.Fuzz(func(t *testing.T, host, target string) {
		raw := "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http answers 400 before any handler runs
		}
		for _, h := range handlers {
			key, _, err := h.ResolveKey(req)
			if err != nil {
				continue
			}
			if err := storage.ValidateKey(key); err != nil {
				t.Fatalf("resolved key %q is invalid: %v", key, err)
			}
			for _, seg := range strings.Split(strings.TrimSuffix(key, "/"), "/") {
				dec, err := url.PathUnescape(seg)
				if err != nil {
					t.Fatalf("resolved key %q has an invalid escape in %q", key, seg)
				}
				for _, part := range strings.Split(dec, "/") {
					if p, _, _ := strings.Cut(part, ";"); p == ".." || strings.ContainsAny(part, "\\\x00") {
						t.Fatalf("resolved key %q has segment %q", key, seg)
					}
				}
			}
			p, err := b.Path(key)
			if err != nil {
				t.Fatalf("Path(%q): %v", key, err)
			}
			rel, err := filepath.Rel(filepath.Join(root, "objects"), p)
			if err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
				t.Fatalf("key %q maps to %q, outside %s", key, p, root)
			}
		}
	})
}
