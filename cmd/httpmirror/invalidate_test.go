package main_test

import (
	"bytes"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// cache invalidate marks objects stale through a running mirror's admin
// API; the marks are kept on disk, so after a restart the next request
// for each invalidated object revalidates it (a conditional GET, 304,
// the stored bytes), while the others are served without the origin.
func TestCacheInvalidateSurvivesRestart(t *testing.T) {
	o := testutil.NewOrigin(t)
	paths := []string{"/pool/a.deb", "/pool/b.deb", "/dists/x/Index.gz", "/dists/y/Other.gz"}
	data := map[string][]byte{}
	for i, p := range paths {
		data[p] = testutil.Payload(uint64(60+i), 4000+i)
		o.Put(p, data[p])
	}
	cache := t.TempDir()
	args := append(mirrorArgs(t, o, cache), "--admin-address", "127.0.0.1:0")
	p := start(t, args...)
	host := o.HostPort()
	run := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := cacheCLI(t, "", append(args, "--admin", "http://"+p.adminAddr())...)
		if code != wantCode {
			t.Fatalf("cache %q: exit %d; want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out, errOut)
		}
		return out, errOut
	}
	refs := []string{}
	for _, path := range paths {
		refs = append(refs, "https://"+host+path)
	}
	run(0, append([]string{"warm"}, refs...)...)

	if out, _ := run(0, "invalidate", "https://"+host+"/pool/a.deb"); !strings.Contains(out, host+"/pool/a.deb: 1 object invalidated") {
		t.Errorf("invalidate a key: %q", out)
	}
	if out, _ := run(0, "invalidate", "--glob", host+"/dists/*/Index.gz"); !strings.Contains(out, host+"/dists/*/Index.gz: 1 object invalidated") {
		t.Errorf("invalidate --glob: %q", out)
	}
	if _, errOut := run(1, "invalidate", "--prefix", host+"/nothing/"); !strings.Contains(errOut, "nothing matched") {
		t.Errorf("invalidate of an empty prefix: stderr %q", errOut)
	}
	if _, errOut := run(1, "invalidate", host+"/pool/absent.deb"); !strings.Contains(errOut, host+"/pool/absent.deb: not cached") {
		t.Errorf("invalidate of an absent key: stderr %q", errOut)
	}
	if _, errOut := run(1, "invalidate", "--glob", host+"/[ab].deb"); !strings.Contains(errOut, "only '*'") {
		t.Errorf("invalidate of a bracket glob: stderr %q", errOut)
	}
	for _, bad := range [][]string{
		{"invalidate"}, {"invalidate", "--prefix", ""}, {"invalidate", "--glob", ""}, {"invalidate", "a.org/x", "--glob", "a.org/*"},
		{"invalidate", "--prefix", "a.org", "--all"}, {"invalidate", "--all=false"}, {"invalidate", "--limit", "3", "a.org/x"},
	} {
		if code, out, errOut := cacheCLI(t, "", bad...); code != 2 || errOut == "" {
			t.Errorf("cache %q: exit %d, stderr %q, stdout %q; want 2 with a message", bad, code, errOut, out)
		}
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitExitOK(t)
	p = start(t, args...)
	before := len(o.Received())
	for range 2 {
		for _, path := range paths {
			if code, body := httpGet(t, p.url(o, path)); code != 200 || !bytes.Equal(body, data[path]) {
				t.Fatalf("GET %s after the restart: %d, %d bytes", path, code, len(body))
			}
		}
	}
	got := map[string]string{}
	for _, r := range o.Received()[before:] {
		if r.Method == http.MethodGet {
			got[r.URL.Path] += r.Header.Get("If-None-Match") + ";"
		}
	}
	if len(got) != 2 || got["/pool/a.deb"] == "" || got["/dists/x/Index.gz"] == "" ||
		strings.Count(got["/pool/a.deb"], ";") != 1 || strings.Count(got["/dists/x/Index.gz"], ";") != 1 ||
		strings.HasPrefix(got["/pool/a.deb"], ";") || strings.HasPrefix(got["/dists/x/Index.gz"], ";") {
		t.Errorf("origin GETs after the restart (If-None-Match per path): %q; want one conditional GET of each invalidated object", got)
	}

	if out, _ := run(0, "invalidate", "--all", "--json"); !strings.Contains(out, `"invalidated": 4`) || !strings.Contains(out, `"kind": "all"`) {
		t.Errorf("invalidate --all --json: %q", out)
	}
}
