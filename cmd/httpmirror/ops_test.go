package main_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

func httpGet(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestAdminEndpoints(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/a.txt", []byte("hello"))
	cache := t.TempDir()
	p := start(t, append(mirrorArgs(t, o, cache), "--admin-address", "127.0.0.1:0")...)
	if code, body := httpGet(t, p.url(o, "/a.txt")); code != 200 || string(body) != "hello" {
		t.Fatalf("mirror: %d %q", code, body)
	}
	admin := "http://" + p.adminAddr()
	if p.adminAddr() == "" {
		t.Fatal("no admin listener logged")
	}
	for _, path := range []string{"/healthz", "/readyz", "/debug/pprof/"} {
		if code, _ := httpGet(t, admin+path); code != 200 {
			t.Errorf("%s: status %d; want 200", path, code)
		}
	}
	code, body := httpGet(t, admin+"/metrics")
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if code != 200 || err != nil {
		t.Fatalf("/metrics: status %d, parse error %v", code, err)
	}
	for _, name := range []string{"httpmirror_requests_total", "httpmirror_cache_bytes", "httpmirror_fills_in_progress", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// The public listener serves none of it.
	for _, path := range []string{"/metrics", "/healthz", "/debug/pprof/"} {
		if code, _ := httpGet(t, "http://"+p.addr+path); code != 404 {
			t.Errorf("public %s: status %d; want 404", path, code)
		}
	}
	// Storage that cannot take new files: not ready.
	tmp := filepath.Join(cache, "tmp")
	os.RemoveAll(tmp)
	os.WriteFile(tmp, nil, 0o644)
	if code, _ := httpGet(t, admin+"/readyz"); code != 503 {
		t.Errorf("/readyz with broken storage: %d; want 503", code)
	}
	if code, _ := httpGet(t, admin+"/healthz"); code != 200 {
		t.Errorf("/healthz with broken storage: %d; want 200 (liveness does not touch storage)", code)
	}
}

// SIGTERM during a slow download: the download completes, the process
// exits 0, and no temporary file is left.
func TestGracefulShutdown(t *testing.T) {
	o := testutil.NewOrigin(t)
	data := testutil.Payload(40, 4<<20)
	o.Put("/slow.bin", data)
	release := testutil.NewGate(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		w.Header().Set("Content-Length", fmt.Sprint(len(f.Data)))
		w.Write(f.Data[:1<<20])
		w.(http.Flusher).Flush()
		release.Wait()
		w.Write(f.Data[1<<20:])
		return true
	})
	cache := t.TempDir()
	p := start(t, append(mirrorArgs(t, o, cache), "--shutdown-timeout", "60s", "--admin-address", "127.0.0.1:0")...)
	resp, err := http.Get(p.url(o, "/slow.bin"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	head := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitLog(t, "shutting down")
	// New connections are refused once shutdown has begun, while the
	// download is still held. The process logs "shutting down" just
	// before it closes its listeners, so the refusal is waited for
	// (bounded): on a loaded machine the close can come a little later.
	refused := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			refused = true
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Error("the public listener still accepts connections 10s into the shutdown")
	}
	release.Open()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(append(head, rest...), data) {
		t.Fatalf("download during shutdown: %d bytes, err %v; want the whole file", len(head)+len(rest), err)
	}
	p.waitExitOK(t)
	// The access line of the download, answered during the shutdown, is
	// in the log: the buffered log is flushed on exit.
	if !strings.Contains(p.log(), "msg=request method=GET host="+o.HostPort()+" path=/"+o.HostPort()+"/slow.bin status=200") {
		t.Errorf("the download's access line is not in the log:\n%s", p.log())
	}
	if n := testutil.CountFiles(t, filepath.Join(cache, "tmp")); n != 0 {
		t.Errorf("%d temporary files left; want 0", n)
	}
	if n := testutil.CountFiles(t, filepath.Join(cache, "objects")); n != 1 {
		t.Errorf("%d objects stored; want the completed download", n)
	}
}

// Oversized requests are refused with 431 or 414 and the server keeps
// serving.
func TestRequestLimits(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/ok", []byte("ok"))
	p := start(t, mirrorArgs(t, o, t.TempDir())...)
	for name, c := range map[string]struct {
		req  string
		want []int
	}{
		"1 MiB header": {"GET /" + o.HostPort() + "/ok HTTP/1.1\r\nHost: m\r\nX-Big: " + strings.Repeat("x", 1<<20) + "\r\n\r\n", []int{431}},
		"100 KiB path": {"GET /" + o.HostPort() + "/" + strings.Repeat("p", 100<<10) + " HTTP/1.1\r\nHost: m\r\n\r\n", []int{414, 431}},
		"9 KiB path":   {"GET /" + o.HostPort() + "/" + strings.Repeat("p", 9<<10) + " HTTP/1.1\r\nHost: m\r\n\r\n", []int{414}},
	} {
		t.Run(name, func(t *testing.T) {
			code := testutil.RawStatus(t, p.addr, c.req)
			ok := false
			for _, w := range c.want {
				ok = ok || code == w
			}
			if !ok {
				t.Errorf("status %d; want one of %v", code, c.want)
			}
			if code, body := httpGet(t, p.url(o, "/ok")); code != 200 || string(body) != "ok" {
				t.Fatalf("server stopped serving: %d %q", code, body)
			}
		})
	}
}
