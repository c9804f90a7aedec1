package main_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// binary is the httpmirror command built once for all tests in this
// package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "httpmirror-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "httpmirror")
	// No VCS stamping: the checkout may belong to another user than the
	// one running the tests, which git refuses to read.
	build := exec.Command("go", "build", "-buildvcs=false", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building httpmirror:", err)
		os.Exit(1)
	}
	code := m.Run()
	s3test.StopShared()
	os.RemoveAll(dir)
	os.Exit(code)
}

// process is a running httpmirror.
type process struct {
	cmd   *exec.Cmd
	addr  string // host:port it listens on
	admin string // host:port of the admin listener, when enabled
	done  chan struct{}
	err   error // exit status, valid once done is closed

	mu     sync.Mutex
	stderr strings.Builder
}

var (
	listening      = regexp.MustCompile(`msg=listening address=(\S+)`)
	adminListening = regexp.MustCompile(`msg="admin listening" address=(\S+)`)
)

// start runs httpmirror with args plus --address 127.0.0.1:0 and waits
// until it listens. The process is killed when the test ends.
func start(t *testing.T, args ...string) *process {
	t.Helper()
	return startCmd(t, exec.Command(binary, append([]string{"--address", "127.0.0.1:0"}, args...)...))
}

// startCmd runs cmd, an httpmirror command, and waits until it listens.
func startCmd(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{done: make(chan struct{}), cmd: cmd}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			if m := adminListening.FindStringSubmatch(line); m != nil {
				p.mu.Lock()
				p.admin = m[1]
				p.mu.Unlock()
			}
			if m := listening.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("httpmirror stderr:\n%s", p.log())
		}
	})
	select {
	case p.addr = <-addr:
	case <-p.done:
		t.Fatalf("httpmirror exited before listening: %v\n%s", p.err, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("httpmirror did not listen within 30s\n%s", p.log())
	}
	return p
}

// waitLog waits until the process has logged a line containing s.
func (p *process) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.log(), s) {
		select {
		case <-p.done:
			t.Fatalf("process exited before logging %q", s)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log after 30s", s)
		}
	}
}

// waitExitOK waits (up to 30s) for the process to exit, and fails the
// test unless it exited with status 0.
func (p *process) waitExitOK(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("process still running after 30s")
	}
	if p.err != nil {
		t.Fatalf("exit: %v; want status 0", p.err)
	}
}

func (p *process) adminAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.admin
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// url is the mirror URL of path on origin o (host-from-first-path mode).
func (p *process) url(o *testutil.Origin, path string) string {
	return "http://" + p.addr + "/" + o.HostPort() + path
}

// mirrorArgs are the flags every test mirror runs with: cache in dir,
// host from the first path, trusting origin o on loopback.
func mirrorArgs(t *testing.T, o *testutil.Origin, dir string) []string {
	return []string{
		"--storage-url", "file://" + dir,
		"--host-from-first-path",
		"--allow-private-upstreams",
		"--upstream-ca-file", o.WriteCA(t, t.TempDir()),
		"--log-level", "debug",
	}
}

func curl(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("curl", append([]string{"-sS", "--fail", "--max-time", "120"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %q: %v\n%s", args, err, out)
	}
}

// fileSHA returns the hex SHA-256 of the file at path. It streams the
// file: reading a large download whole into fresh memory costs seconds per
// file under the race detector.
func fileSHA(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func needCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
}

func TestCurl(t *testing.T) {
	needCurl(t)
	o := testutil.NewOrigin(t)
	data := testutil.Payload(1, 5<<20+123)
	o.Put("/rel/app.tar.gz", data)
	p := start(t, mirrorArgs(t, o, t.TempDir())...)
	u := p.url(o, "/rel/app.tar.gz")
	dir := t.TempDir()

	for _, round := range []string{"cold", "warm"} {
		t.Run(round, func(t *testing.T) {
			out := filepath.Join(dir, round)
			curl(t, "-o", out, u)
			if got := fileSHA(t, out); got != testutil.SHA256(data) {
				t.Fatalf("plain download sha256 %s; want %s", got, testutil.SHA256(data))
			}
			curl(t, "-r", "1000-1999", "-o", out+".range", u)
			if got := fileSHA(t, out+".range"); got != testutil.SHA256(data[1000:2000]) {
				t.Fatalf("range download differs")
			}
			// A half-downloaded file, resumed by curl with a Range request.
			half := out + ".half"
			os.WriteFile(half, data[:len(data)/2], 0o644)
			curl(t, "-C", "-", "-o", half, u)
			if got := fileSHA(t, half); got != testutil.SHA256(data) {
				t.Fatalf("resumed download sha256 %s; want %s", got, testutil.SHA256(data))
			}
		})
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
}

// Twenty curl processes ask for the same cold 64 MiB object at once: the
// origin sends each byte once and every download is byte-identical.
func TestConcurrentCurlColdObject(t *testing.T) {
	needCurl(t)
	o := testutil.NewOrigin(t)
	data := testutil.Payload(3, 64<<20)
	o.Put("/models/weights.bin", data)
	// The downloads start together; one that arrives after the fill has
	// committed is a hit, so the origin count holds either way.
	p := start(t, mirrorArgs(t, o, t.TempDir())...)
	u := p.url(o, "/models/weights.bin")
	dir := t.TempDir()
	const clients = 20
	errs := make(chan error, clients)
	for i := range clients {
		go func() {
			out, err := exec.Command("curl", "-sS", "--fail", "--max-time", "300", "-o", filepath.Join(dir, fmt.Sprint(i)), u).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("curl %d: %v: %s", i, err, out)
			}
			errs <- err
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := testutil.SHA256(data)
	for i := range clients {
		if got := fileSHA(t, filepath.Join(dir, fmt.Sprint(i))); got != want {
			t.Errorf("client %d: sha256 %s; want %s", i, got, want)
		}
	}
	o.CheckFetchedOnce(t, "/models/weights.bin", int64(len(data)))
}
