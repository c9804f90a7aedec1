package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

const e2eToken = "e2e-0123456789abcdef0123456789abcdef"

// With --admin-token-file the cache commands need the token: without it
// they fail saying how to pass it; --token-file and HTTPMIRROR_ADMIN_TOKEN
// pass it. The probes stay open, pprof does not, and the purge is audited
// by the token's name.
func TestAdminTokenCommands(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/pool/a.deb", testutil.Payload(1, 3000))
	dir := t.TempDir()
	tokens := filepath.Join(dir, "admin-tokens")
	os.WriteFile(tokens, []byte("# operators\n"+e2eToken+" ops\n"), 0o600)
	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0", "--admin-token-file", tokens)...)
	admin := "http://" + p.adminAddr()
	if code, _ := httpGet(t, p.url(o, "/pool/a.deb")); code != 200 {
		t.Fatalf("mirror: %d", code)
	}

	code, out, errOut := cacheCLI(t, "", "ls", "--admin", admin)
	if code != 1 || !strings.Contains(errOut, "needs a token: pass --token-file FILE or set HTTPMIRROR_ADMIN_TOKEN") {
		t.Errorf("ls without a token: exit %d, stderr %q; want 1 with how to pass one", code, errOut)
	}
	code, _, errOut = cacheCLIEnv(t, []string{"HTTPMIRROR_ADMIN_TOKEN=wrong-0123456789abcdef"}, "", "ls", "--admin", admin)
	if code != 1 || !strings.Contains(errOut, "refused the token") || !strings.Contains(errOut, "--token-file") {
		t.Errorf("ls with a wrong token: exit %d, stderr %q; want 1 naming --token-file", code, errOut)
	}
	// The object is committed just after its response ended: list until
	// it shows (bounded).
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errOut = cacheCLI(t, "", "ls", "--admin", admin, "--token-file", tokens)
		if code != 0 || strings.Contains(out, "1 objects") || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if code != 0 || !strings.Contains(out, o.HostPort()+"/pool/a.deb") {
		t.Errorf("ls --token-file: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, errOut = cacheCLIEnv(t, []string{"HTTPMIRROR_ADMIN_TOKEN=" + e2eToken}, "", "ls", "--admin", admin)
	if code != 0 || !strings.Contains(out, "1 objects") {
		t.Errorf("ls with HTTPMIRROR_ADMIN_TOKEN: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, errOut = cacheCLI(t, "", "rm", "https://"+o.HostPort()+"/pool/a.deb", "--admin", admin, "--token-file", tokens)
	if code != 0 || !strings.Contains(out, "1 object purged") {
		t.Errorf("rm --token-file: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/debug/pprof/": 401, "/status.json": 401} {
		if code, _ := httpGet(t, admin+path); code != want {
			t.Errorf("GET %s without a token: %d; want %d", path, code, want)
		}
	}
	p.waitLog(t, `msg="admin purge"`)
	log := p.log()
	if !strings.Contains(log, `msg="admin purge" remote=127.0.0.1:`) || !strings.Contains(log, "by=ops key="+o.HostPort()+"/pool/a.deb objects=1") {
		t.Errorf("no audit line of the purge by ops:\n%s", log)
	}
	if strings.Contains(log, e2eToken) {
		t.Errorf("the log shows the token:\n%s", log)
	}
}

// An admin listener off loopback without tokens is refused at start,
// unless --admin-insecure says so, which is logged as a warning.
func TestAdminOffLoopback(t *testing.T) {
	// Bounded: a start wrongly accepted is killed and fails the test.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--address", "127.0.0.1:0", "--storage-url=", "--admin-address", "0.0.0.0:0")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v; want status 2 (stderr %q)", err, stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "not a loopback address") || !strings.Contains(msg, "--admin-insecure") {
		t.Errorf("stderr %q; want one line naming --admin-insecure", msg)
	}
	// That --admin-insecure lets such a listener start (with a warning)
	// is checked on the configuration (TestAdminFlags in
	// internal/config, AdminExposed): tests listen on 127.0.0.1 only.
}

// Interrupted while it follows its job, warm cancels the job and says
// so: the queued URL never reaches the origin.
func TestWarmInterruptCancelsJob(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/a.bin", testutil.Payload(1, 100000))
	o.Put("/b.bin", testutil.Payload(2, 100000))
	arrived := make(chan string, 4)
	release := testutil.NewGate(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		arrived <- r.URL.Path
		release.Wait()
		return false
	})
	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0", "--prefetch-concurrency", "1")...)
	admin := "http://" + p.adminAddr()
	cmd := exec.Command(binary, "cache", "warm", "https://"+o.HostPort()+"/a.bin", "https://"+o.HostPort()+"/b.bin", "--admin", admin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	select {
	case path := <-arrived:
		if path != "/a.bin" {
			t.Fatalf("the origin was asked for %s first", path)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not start")
	}
	// The origin was asked: the job exists, and warm, which catches
	// interrupts from before it creates the job, follows it.
	cmd.Process.Signal(os.Interrupt)
	var err error
	select {
	case err = <-exited:
		exited <- err
	case <-time.After(30 * time.Second):
		t.Fatal("warm still runs 30s after the interrupt")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v; want status 1\nstderr: %s", err, stderr.String())
	}
	m := regexp.MustCompile(`interrupted; cancelled job ([0-9a-f]+): 2 of 2 URLs cancelled`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr %q; want the cancelled job", stderr.String())
	}
	code, body := httpGet(t, admin+"/prefetch/"+m[1])
	var st httpmirror.PrefetchStatus
	if code != 200 || json.Unmarshal(body, &st) != nil || st.State != "done" || st.Cancelled != 2 {
		t.Errorf("job after the interrupt: %d %s; want done with 2 cancelled", code, body)
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1 (not the queued URL)", n)
	}
}
