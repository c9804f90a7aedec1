package main_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// binary is the httpmirror command built once for all tests in this file.
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

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return testutil.SHA256(b)
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

// A mirror killed with SIGKILL in the middle of a fill leaves nothing a
// restarted mirror would serve: the next request refetches the object and
// returns the right bytes.
func TestCrashDuringFill(t *testing.T) {
	o := testutil.NewOrigin(t)
	data := testutil.Payload(2, 8<<20)
	o.Put("/big.bin", data)
	release := testutil.NewGate(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if o.Gets.Load() > 1 {
			return false // after the restart: serve normally
		}
		// First fill: half the body, then stall until the test is done
		// with the crashed process.
		w.Header().Set("Content-Length", fmt.Sprint(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		w.Write(f.Data[:len(f.Data)/2])
		w.(http.Flusher).Flush()
		release.Wait()
		return true
	})

	cache := t.TempDir()
	args := mirrorArgs(t, o, cache)
	p := start(t, args...)
	resp, err := http.Get(p.url(o, "/big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	// Once a megabyte has come through, the fill is writing its temporary
	// file.
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CountFiles(t, filepath.Join(cache, "tmp")); n == 0 {
		t.Fatalf("no temporary file during the fill")
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	resp.Body.Close()
	release.Open()

	if n := testutil.CountFiles(t, filepath.Join(cache, "objects")); n != 0 {
		t.Fatalf("%d object files after the crash; want none", n)
	}

	p2 := start(t, args...)
	if n := testutil.CountFiles(t, filepath.Join(cache, "tmp")); n != 0 {
		t.Errorf("%d leftover temporary files after restart; want none", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p2.url(o, "/big.bin"), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || testutil.SHA256(body) != testutil.SHA256(data) {
		t.Fatalf("after restart: status %d, %d bytes, err %v; want the whole object", resp.StatusCode, len(body), err)
	}
	if n := o.Gets.Load(); n != 2 {
		t.Errorf("origin saw %d GETs; want 2 (the crashed fill and the refetch)", n)
	}
}

// e2eSecret is the secret key in storage URLs that must never be printed.
const e2eSecret = "s3cr3tKEYvalue"

func TestBadConfigurationExits2(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	tests := map[string][]string{
		"unknown flag":          {"--no-such-flag"},
		"bad duration":          {"--link-expires", "soon"},
		"negative duration":     {"--check-sync-timeout", "-1s"},
		"bad number":            {"--continuation-get-retry", "many"},
		"unknown scheme":        {"--storage-url", "ftp://example.com/cache"},
		"unparsable url":        {"--storage-url", "file://%zz"},
		"relative dir":          {"--storage-url", "file://relative/dir"},
		"cache dir not usable":  {"--storage-url", "file://" + notDir + "/cache"},
		"bad upstream scheme":   {"--upstream-scheme", "ftp"},
		"two host modes":        {"--host", "example.com", "--host-from-first-path"},
		"bad host":              {"--host", "nodot"},
		"bad log format":        {"--log-format", "xml"},
		"bad log level":         {"--log-level", "loud"},
		"missing CA file":       {"--upstream-ca-file", "/nonexistent/ca.pem"},
		"stray argument":        {"serve"},
		"bad environment value": {"--storage-url="},
		"s3 bad escape":         {"--storage-url", "s3://AK:" + e2eSecret + "%zz@bucket.us-east-1/"},
		"s3 no region":          {"--storage-url", "s3://AK:" + e2eSecret + "@bucket/"},
		"s3 unknown parameter":  {"--storage-url", "s3://AK:" + e2eSecret + "@bucket.us-east-1/?endpoint=http://127.0.0.1:1"},
		"s3 bad chunk size":     {"--storage-url", "s3://AK:" + e2eSecret + "@bucket.us-east-1/?chunksize=big"},
		"s3 unreachable bucket": {"--storage-url", "s3://AK:" + e2eSecret + "@bucket.us-east-1/?regionendpoint=http://127.0.0.1:1&forcepathstyle=true"},
		"no scheme":             {"--storage-url", "AK:" + e2eSecret + "@bucket"},
		"cidn on local disk":    {"--master", "http://127.0.0.1:1"},
		"cidn without cache":    {"--storage-url=", "--kubeconfig", "/nonexistent/kubeconfig"},
	}
	for name, args := range tests {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"--address", "127.0.0.1:0"}, args...)...)
			if name == "bad environment value" {
				cmd.Env = append(os.Environ(), "HTTPMIRROR_UPSTREAM_IDLE_TIMEOUT=whenever")
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v; want status 2 (stderr %q)", err, stderr.String())
			}
			msg := strings.TrimSpace(stderr.String())
			if msg == "" || strings.Contains(msg, "\n") || strings.Contains(msg, "listening") {
				t.Errorf("stderr %q; want one line and no listener", msg)
			}
			if strings.Contains(msg, e2eSecret) {
				t.Errorf("stderr %q reveals the secret key", msg)
			}
		})
	}
}

// CIDN settings that cannot work stop the start: a kubeconfig that does
// not exist, an API server that does not answer.
func TestCIDNBadConfigurationExits2(t *testing.T) {
	srv := s3test.Shared(t)
	storageURL := srv.StorageURL(srv.Bucket(t), "")
	for name, args := range map[string][]string{
		"missing kubeconfig": {"--kubeconfig", filepath.Join(t.TempDir(), "kubeconfig")},
		"unreachable master": {"--master", "http://127.0.0.1:1"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"--address", "127.0.0.1:0", "--storage-url", storageURL}, args...)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v; want status 2 (stderr %q)", err, stderr.String())
			}
			msg := strings.TrimSpace(stderr.String())
			if !strings.Contains(msg, "httpmirror: ") || strings.Contains(msg, "\n") || strings.Contains(msg, srv.SecretKey) {
				t.Errorf("stderr %q; want one line without the secret", msg)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	out, err := exec.Command(binary, "--help").Output()
	if err != nil {
		t.Fatalf("--help: %v", err)
	}
	for _, flag := range []string{"--address", "--storage-url", "--link-expires", "--host", "--host-from-first-path",
		"--base-domain", "--check-sync-timeout", "--continuation-get-interval", "--continuation-get-retry",
		"--block-suffix", "--no-redirect", "--tee-response", "--upstream-scheme", "--upstream-ca-file",
		"--allow-private-upstreams", "--log-format", "--log-level", "HTTPMIRROR_STORAGE_URL"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("--help does not mention %s", flag)
		}
	}
}

func TestSignalsStopCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			p := start(t, "--storage-url", "file://"+t.TempDir())
			p.cmd.Process.Signal(sig)
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				t.Fatal("still running 30s after the signal")
			}
			if p.err != nil {
				t.Fatalf("exit: %v; want status 0", p.err)
			}
		})
	}
}

func TestEnvironmentSetsFlags(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/env.txt", []byte("from env"))
	cmd := exec.Command(binary, "--address", "127.0.0.1:0")
	cmd.Env = append(os.Environ(),
		"HTTPMIRROR_STORAGE_URL=file://"+t.TempDir(),
		"HTTPMIRROR_HOST_FROM_FIRST_PATH=true",
		"HTTPMIRROR_ALLOW_PRIVATE_UPSTREAMS=true",
		"HTTPMIRROR_UPSTREAM_CA_FILE="+o.WriteCA(t, t.TempDir()),
		"HTTPMIRROR_ADDRESS=256.0.0.1:1", // the flag wins
	)
	p := startCmd(t, cmd)
	resp, err := http.Get(p.url(o, "/env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "from env" {
		t.Fatalf("status %d body %q; want 200 %q", resp.StatusCode, body, "from env")
	}
}

// Twenty curl processes ask for the same cold 64 MiB object at once: the
// origin sees one GET and every download is byte-identical.
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
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
}

// s3URL is the storage URL of bucket on srv, in the seed's form.
func s3URL(srv *s3test.Server, bucket string) string {
	return srv.StorageURL(bucket, "cache")
}

// Two httpmirror processes share an S3 bucket: a file the first one
// filled is a hit for the second (one origin GET), both redirect to a
// presigned URL that returns the file, and neither logs the secret key.
func TestS3TwoProcessesShareBucket(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	o := testutil.NewOrigin(t)
	data := testutil.Payload(4, 3<<20+11)
	o.Put("/dist/pkg.tar.zst", data)
	ca := o.WriteCA(t, t.TempDir())
	args := []string{
		"--storage-url", s3URL(srv, bucket),
		"--host-from-first-path", "--allow-private-upstreams", "--upstream-ca-file", ca,
		"--tee-response=false", "--log-level", "debug",
	}
	p1, p2 := start(t, args...), start(t, args...)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for i, p := range []*process{p1, p2} {
		resp, err := noFollow.Get(p.url(o, "/dist/pkg.tar.zst"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, srv.Endpoint+"/"+bucket+"/cache/") {
			t.Fatalf("mirror %d: status %d, Location %q; want 302 to the bucket's cache/ prefix", i+1, resp.StatusCode, loc)
		}
		resp, err = http.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || testutil.SHA256(body) != testutil.SHA256(data) {
			t.Fatalf("mirror %d: presigned URL answered %d with %d bytes (err %v); want the file", i+1, resp.StatusCode, len(body), err)
		}
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
	for i, p := range []*process{p1, p2} {
		if strings.Contains(p.log(), srv.SecretKey) {
			t.Errorf("mirror %d logged the secret key", i+1)
		}
	}
}
