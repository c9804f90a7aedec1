package main_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// cacheCLI runs "httpmirror cache args..." with stdin and returns its
// exit status, stdout and stderr.
func cacheCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	return cacheCLIEnv(t, nil, stdin, args...)
}

// cacheCLIEnv is cacheCLI with env added to the environment.
func cacheCLIEnv(t *testing.T, env []string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"cache"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errOut.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// The cache subcommands drive a running mirror's admin API: warm fetches
// URLs once, ls lists them with sizes, info shows one, rm purges one or a
// prefix.
func TestCacheCommands(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/pool/a.deb", testutil.Payload(1, 3000))
	o.Put("/pool/b.deb", testutil.Payload(2, 5000))
	o.Put("/pool/c.deb", testutil.Payload(3, 7000))
	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0", "--prefetch-concurrency", "2")...)
	admin := "http://" + p.adminAddr()
	host := o.HostPort()
	ref := func(path string) string { return "https://" + host + path }
	run := func(wantCode int, stdin string, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := cacheCLI(t, stdin, append(args, "--admin", admin)...)
		if code != wantCode {
			t.Fatalf("cache %q: exit %d; want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out, errOut)
		}
		return out, errOut
	}

	out, _ := run(0, "", "warm", ref("/pool/a.deb"), host+"/pool/b.deb")
	if !strings.Contains(out, "2 URLs: 2 fetched, 0 already cached") {
		t.Errorf("warm: %q", out)
	}
	out, _ = run(0, "# list\n"+ref("/pool/a.deb")+"\n"+ref("/pool/c.deb")+"\n", "warm", "--file", "-")
	if !strings.Contains(out, "2 URLs: 1 fetched, 1 already cached") {
		t.Errorf("warm --file -: %q", out)
	}
	if n := o.Gets.Load(); n != 3 {
		t.Errorf("origin saw %d GETs; want 3", n)
	}
	_, errOut := run(1, "", "warm", ref("/pool/missing.deb"))
	if !strings.Contains(errOut, "failed: "+ref("/pool/missing.deb")+": 404") {
		t.Errorf("warm of a missing file: stderr %q", errOut)
	}

	out, _ = run(0, "", "ls", host+"/pool/")
	for _, want := range []string{host + "/pool/a.deb", "2.9 KiB", host + "/pool/c.deb", "3 objects, 14.6 KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls lacks %q:\n%s", want, out)
		}
	}
	if out, _ = run(0, "", "ls", "--limit", "1"); !strings.Contains(out, "1 objects") {
		t.Errorf("ls --limit 1:\n%s", out)
	}
	out, _ = run(0, "", "info", ref("/pool/b.deb"), "--json")
	var st struct {
		Key  string `json:"key"`
		Size int64  `json:"size"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Key != host+"/pool/b.deb" || st.Size != 5000 {
		t.Errorf("info --json: %q (%v)", out, err)
	}
	if out, _ = run(0, "", "info", host+"/pool/b.deb"); !strings.Contains(out, "size:          5000 (4.9 KiB)") || !strings.Contains(out, "location:") {
		t.Errorf("info:\n%s", out)
	}

	if out, _ = run(0, "", "rm", ref("/pool/b.deb")); !strings.Contains(out, "1 object purged") {
		t.Errorf("rm: %q", out)
	}
	if _, errOut = run(1, "", "info", ref("/pool/b.deb")); !strings.Contains(errOut, host+"/pool/b.deb: not cached") {
		t.Errorf("info after rm: stderr %q", errOut)
	}
	if out, _ = run(0, "", "rm", "--prefix", ref("/pool")); !strings.Contains(out, "2 objects purged") {
		t.Errorf("rm --prefix: %q", out)
	}
	if out, _ = run(0, "", "ls"); !strings.Contains(out, "0 objects") {
		t.Errorf("ls after the purges:\n%s", out)
	}
}

// info on a file still downloading shows the download's progress and
// exits 0; rm of something not cached says so and exits 1, also when
// other references were purged.
func TestCacheInfoDownloadingAndRmNotCached(t *testing.T) {
	o := testutil.NewOrigin(t)
	data := testutil.Payload(5, 1<<20)
	o.Put("/slow.bin", data)
	o.Put("/a.bin", []byte("a"))
	release := testutil.NewGate(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if f == nil || r.URL.Path != "/slow.bin" {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
		w.Write(f.Data[:64<<10])
		w.(http.Flusher).Flush()
		release.Wait()
		w.Write(f.Data[64<<10:])
		return true
	})
	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0")...)
	admin := "http://" + p.adminAddr()
	ref := "https://" + o.HostPort() + "/slow.bin"
	resp, err := http.Get(p.url(o, "/slow.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cacheCLI(t, "", "info", ref, "--admin", admin)
	if code != 0 || !strings.Contains(out, "not yet: downloading") ||
		!strings.Contains(out, "64.0 KiB of 1.0 MiB (65536 bytes so far, miss)") {
		t.Errorf("info during the download: exit %d\nstdout: %s\nstderr: %s\nwant 0 and the progress", code, out, errOut)
	}
	code, out, _ = cacheCLI(t, "", "info", ref, "--json", "--admin", admin)
	var st struct {
		Stored bool `json:"stored"`
		Fill   *struct {
			Bytes, Size int64
		} `json:"fill"`
	}
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Stored || st.Fill == nil || st.Fill.Bytes != 64<<10 || st.Fill.Size != 1<<20 {
		t.Errorf("info --json during the download: exit %d, %q (%v)", code, out, err)
	}
	release.Open()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}

	if code, _, _ := cacheCLI(t, "", "warm", "https://"+o.HostPort()+"/a.bin", "--admin", admin); code != 0 {
		t.Fatalf("warm: exit %d", code)
	}
	missing := o.HostPort() + "/never.bin"
	code, out, errOut = cacheCLI(t, "", "rm", missing, "--admin", admin)
	if code != 1 || !strings.Contains(errOut, missing+": not cached") || !strings.Contains(errOut, "1 of 1 not cached") || out != "" {
		t.Errorf("rm of something not cached: exit %d, stdout %q, stderr %q; want 1 and not cached", code, out, errOut)
	}
	code, out, errOut = cacheCLI(t, "", "rm", o.HostPort()+"/a.bin", missing, "--admin", admin)
	if code != 1 || !strings.Contains(out, o.HostPort()+"/a.bin: 1 object purged") || !strings.Contains(errOut, "1 of 2 not cached") {
		t.Errorf("rm of one cached, one not: exit %d, stdout %q, stderr %q; want the purge and exit 1", code, out, errOut)
	}
	if code, out, errOut = cacheCLI(t, "", "rm", o.HostPort()+"/a.bin", "--json", "--admin", admin); code != 1 || !strings.Contains(out, `"purged": 0`) {
		t.Errorf("rm --json of something purged already: exit %d, stdout %q, stderr %q; want 1 with the JSON answer", code, out, errOut)
	}
}

func TestCacheCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{}, {"frob"}, {"info"}, {"ls", "a.org", "b.org"}, {"rm"}, {"rm", "a.org/x", "--prefix", "a.org"},
		{"warm"}, {"ls", "--limit", "x"}, {"info", "--prefix", "a.org", "a.org/x"}, {"ls", "--admin", "ftp://x"},
		{"warm", "--file", "/nonexistent/list"}, {"ls", "--bogus"}, {"ls", "--token-file", "/nonexistent/token"},
		{"verify", "a.org", "b.org"}, {"verify", "--rate", "fast"}, {"verify", "--rate", "0"}, {"verify", "--timeout", "0s"},
		{"ls", "--purge"}, {"warm", "--from", "x", "a.org/x"},
	} {
		if code, out, errOut := cacheCLI(t, "", args...); code != 2 || errOut == "" {
			t.Errorf("cache %q: exit %d, stderr %q, stdout %q; want 2 with a message", args, code, errOut, out)
		}
	}
	if code, out, _ := cacheCLI(t, "", "--help"); code != 0 || !strings.Contains(out, "Usage: httpmirror cache") {
		t.Errorf("cache --help: exit %d, %q", code, out)
	}
	// Nothing listens on port 1: the error says how to start the admin
	// listener.
	if code, _, errOut := cacheCLI(t, "", "ls", "--admin", "127.0.0.1:1"); code != 1 ||
		!strings.Contains(errOut, "no admin API at http://127.0.0.1:1: start the mirror with --admin-address 127.0.0.1:1, or pass --admin URL") {
		t.Errorf("unreachable admin: exit %d, %q; want 1 with how to start the admin listener", code, errOut)
	}
}

// The running command serves the cache API and the status page on the
// admin listener and none of it on the public one.
func TestAdminAPINotPublic(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/a", []byte("a"))
	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0")...)
	key := o.HostPort() + "/a"
	if code, _ := httpGet(t, p.url(o, "/a")); code != 200 {
		t.Fatalf("mirror: %d", code)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/cache/" + key}, {"DELETE", "/cache/" + key}, {"DELETE", "/cache/?prefix=" + o.HostPort()},
		{"GET", "/cache/?prefix="}, {"POST", "/prefetch"}, {"GET", "/status.json"}, {"GET", "/"},
	} {
		req, _ := http.NewRequest(c.method, "http://"+p.addr+c.path, strings.NewReader("https://"+key))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 405 {
			t.Errorf("public %s %s: %d; want 404 or 405", c.method, c.path, resp.StatusCode)
		}
	}
	if code, body := httpGet(t, "http://"+p.adminAddr()+"/"); code != 200 || !strings.Contains(string(body), "Downloads in progress") {
		t.Errorf("admin status page: %d", code)
	}
	// The object is committed just after its response ended: wait for it
	// (bounded) before looking it up.
	deadline := time.Now().Add(10 * time.Second)
	code, _ := httpGet(t, "http://"+p.adminAddr()+"/cache/"+key)
	for code == 404 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		code, _ = httpGet(t, "http://"+p.adminAddr()+"/cache/"+key)
	}
	if code != 200 {
		t.Errorf("admin lookup: %d; want 200", code)
	}
}

// warm follows its job with the counts alone (?urls=none), and asks for
// the failed and cancelled URLs once, when the job is done: a job of
// 10,000 URLs costs a few hundred bytes a poll, not megabytes.
func TestWarmPollsSummary(t *testing.T) {
	var mu sync.Mutex
	var queries []string
	polls := 0
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == "POST" && r.URL.Path == "/prefetch":
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"id": "j1", "urls": 3, "status": "/prefetch/j1"}`)
			return
		case r.Method == "GET" && r.URL.Path == "/prefetch/j1":
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error": "unexpected"}`)
			return
		}
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		polls++
		n := polls
		mu.Unlock()
		state := "running"
		if n >= 2 {
			state = "done"
		}
		urls := ""
		if r.URL.Query().Get("urls") != "none" {
			urls = `, "urls": [{"url": "https://a.example/bad", "key": "a.example/bad", "state": "failed", "error": "502 upstream unavailable", "originStatus": 500}]`
		}
		fmt.Fprintf(w, `{"id": "j1", "state": %q, "total": 3, "done": 2, "failed": 1, "bytes": 10, "size": 10%s}`, state, urls)
	}))
	defer admin.Close()
	code, out, errOut := cacheCLI(t, "", "warm", "https://a.example/x", "https://a.example/y", "https://a.example/bad", "--admin", admin.URL)
	if code != 1 || !strings.Contains(out, "3 URLs: 2 fetched") || !strings.Contains(errOut, "failed: https://a.example/bad: 502 upstream unavailable") {
		t.Errorf("warm: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"wait=1s&urls=none", "wait=1s&urls=none", "urls=failed%2Ccancelled"}
	if len(queries) != len(want) {
		t.Fatalf("queries %q; want %q", queries, want)
	}
	for i, q := range queries {
		if q != want[i] && !(i == 2 && q == "urls=failed,cancelled") {
			t.Errorf("query %d: %q; want %q", i, q, want[i])
		}
	}
}

// With --host, the cache commands take the path clients request.
func TestCacheCommandsHostModePaths(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/pool/a.deb", testutil.Payload(6, 3000))
	p := start(t, "--storage-url", "file://"+t.TempDir(), "--host", o.HostPort(), "--allow-private-upstreams",
		"--upstream-ca-file", o.WriteCA(t, t.TempDir()), "--admin-address", "127.0.0.1:0")
	admin := "http://" + p.adminAddr()
	resp, err := http.Get("http://" + p.addr + "/pool/a.deb")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("client GET /pool/a.deb: %d", resp.StatusCode)
	}
	// The client's download ends before the object is committed: wait
	// for it through the API (bounded).
	var code int
	var out, errOut string
	for range 300 {
		if code, out, errOut = cacheCLI(t, "", "info", "/pool/a.deb", "--admin", admin); code == 0 && strings.Contains(out, "size:") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code != 0 || !strings.Contains(out, "key:           "+o.HostPort()+"/pool/a.deb") || !strings.Contains(out, "3000 (2.9 KiB)") {
		t.Fatalf("info /pool/a.deb: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if code, out, errOut = cacheCLI(t, "", "rm", "pool/a.deb", "--admin", admin); code != 0 || !strings.Contains(out, o.HostPort()+"/pool/a.deb: 1 object purged") {
		t.Errorf("rm pool/a.deb: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if code, _, errOut = cacheCLI(t, "", "info", "https://elsewhere.example/pool/a.deb", "--admin", admin); code != 1 || !strings.Contains(errOut, "serves "+o.HostPort()+" only") {
		t.Errorf("info of another host's URL: exit %d, stderr %q; want 1 naming the one host", code, errOut)
	}
}
