package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// flipFileByte inverts the byte at off of the file at path in place.
func flipFileByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// waitListed runs "cache ls" until it lists n objects (at most 10 s): an
// object is committed just after its response ended.
func waitListed(t *testing.T, args []string, n int) {
	t.Helper()
	want := strconv.Itoa(n) + " objects"
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, errOut := cacheCLI(t, "", append([]string{"ls"}, args...)...)
		if code == 0 && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ls: exit %d, no %q after 10s\nstdout: %s\nstderr: %s", code, want, out, errOut)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// "cache verify" finds a file corrupted on disk (exit 1, the key and both
// digests printed), purges it with --purge, and passes (exit 0) once the
// file is fetched again. Its start is audited by the token's name.
func TestCacheVerify(t *testing.T) {
	o := testutil.NewOrigin(t)
	a, b := testutil.Payload(1, 100000), testutil.Payload(2, 100000) // on disk only, not in memory
	o.Put("/pool/a.bin", a)
	o.Put("/pool/b.bin", b)
	dir := t.TempDir()
	tokens := filepath.Join(dir, "admin-tokens")
	os.WriteFile(tokens, []byte(e2eToken+" ops\n"), 0o600)
	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0", "--admin-token-file", tokens)...)
	host := o.HostPort()
	common := []string{"--admin", "http://" + p.adminAddr(), "--token-file", tokens}
	run := func(wantCode int, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := cacheCLI(t, "", append(args, common...)...)
		if code != wantCode {
			t.Fatalf("cache %q: exit %d; want %d\nstdout: %s\nstderr: %s", args, code, wantCode, out, errOut)
		}
		return out, errOut
	}
	for _, path := range []string{"/pool/a.bin", "/pool/b.bin"} {
		if code, _ := httpGet(t, p.url(o, path)); code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
	}
	waitListed(t, common, 2)
	// Whether the fill kept a digest or this records one, both match.
	if out, _ := run(0, "verify", host); !strings.Contains(out, "2 objects verified (195.3 KiB): ") || !strings.Contains(out, "0 mismatched") {
		t.Errorf("first verify: %q", out)
	}

	out, _ := run(0, "info", "--json", host+"/pool/a.bin")
	var st struct {
		Location string `json:"location"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Location == "" {
		t.Fatalf("info --json: %q (%v)", out, err)
	}
	flipFileByte(t, st.Location, 777)
	bad := append([]byte(nil), a...)
	bad[777] ^= 0xff
	mismatch := "mismatch: " + host + "/pool/a.bin: expected sha256:" + testutil.SHA256(a) + ", got sha256:" + testutil.SHA256(bad)
	out, errOut := run(1, "verify", "https://"+host+"/pool/")
	if !strings.Contains(out, mismatch+"\n") || !strings.Contains(out, "2 objects verified (195.3 KiB): 1 ok, 0 digests recorded, 1 mismatched, ") ||
		!strings.Contains(errOut, "1 objects do not match their digest") {
		t.Errorf("verify of a corrupted file:\nstdout: %s\nstderr: %s\nwant %q", out, errOut, mismatch)
	}
	out, _ = run(1, "verify", host, "--purge", "--rate", "100MB/s")
	if !strings.Contains(out, mismatch+" (purged)\n") || !strings.Contains(out, "1 mismatched (1 purged)") {
		t.Errorf("verify --purge:\n%s", out)
	}
	if code, body := httpGet(t, p.url(o, "/pool/a.bin")); code != 200 || string(body) != string(a) {
		t.Fatalf("GET a.bin after the purge: %d, %d bytes", code, len(body))
	}
	if n := o.Gets.Load(); n != 3 {
		t.Errorf("origin GETs %d; want 3 (a.bin fetched again)", n)
	}
	waitListed(t, common, 2)
	if out, _ = run(0, "verify", host, "--json"); !strings.Contains(out, `"mismatched": 0`) || !strings.Contains(out, `"state": "done"`) {
		t.Errorf("verify --json after the refetch:\n%s", out)
	}
	p.waitLog(t, "purge=true")
	if !regexp.MustCompile(`msg="admin verify start" remote=127.0.0.1:\d+ by=ops purge=true resumed=false prefix=` + regexp.QuoteMeta(host) + ` rate=100000000 id=[0-9a-f]+ status=202`).MatchString(p.log()) {
		t.Errorf("no audit line of the purging verify by ops:\n%s", p.log())
	}
	if strings.Contains(p.log(), e2eToken) {
		t.Errorf("the log shows the token")
	}
}

// Interrupted while it follows its job, verify cancels the job and prints
// the command that resumes it; that command verifies what was left.
func TestCacheVerifyInterrupt(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/a.bin", testutil.Payload(1, 100000))
	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--admin-address", "127.0.0.1:0")...)
	admin := "http://" + p.adminAddr()
	if code, _ := httpGet(t, p.url(o, "/a.bin")); code != 200 {
		t.Fatal("GET a.bin")
	}
	waitListed(t, []string{"--admin", admin}, 1)
	// At 1 KiB/s the job reads the file for more than a minute.
	cmd := exec.Command(binary, "cache", "verify", "--rate", "1KiB", "--admin", admin)
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
	// The job exists once its start is logged; verify catches interrupts
	// from before it asks for the job.
	p.waitLog(t, `msg="admin verify start"`)
	cmd.Process.Signal(os.Interrupt)
	var err error
	select {
	case err = <-exited:
		exited <- err
	case <-time.After(30 * time.Second):
		t.Fatal("verify still runs 30s after the interrupt")
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v; want status 1\nstderr: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted; cancelled job") || !strings.Contains(stderr.String(), "after 0 objects") {
		t.Errorf("stderr %q; want the cancelled job", stderr.String())
	}
	m := regexp.MustCompile(`resume with: httpmirror cache verify --from (\S+)\n`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("stderr %q; want the resume command", stderr.String())
	}
	code, out, errOut := cacheCLI(t, "", "verify", "--from", m[1], "--admin", admin)
	if code != 0 || !strings.Contains(out, "1 objects verified (97.7 KiB)") {
		t.Errorf("resumed verify: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	p.waitLog(t, `msg="admin verify cancel"`)
}
