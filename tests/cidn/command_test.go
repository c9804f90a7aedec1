package cidn_test

import (
	"bufio"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

var listening = regexp.MustCompile(`msg=listening address=(\S+)`)

// The httpmirror command with --kubeconfig: the flags reach the Blob (the
// destination defaults to the storage URL's scheme, the tuning flags to
// their defaults), and a miss is served through CIDN.
func testCommand(t *testing.T, e *env, r *runner) {
	f := newFixture(t, e, r)
	r.addDestination("s3", f.bucket)
	data := testutil.Payload(10, 700000)
	const path = "/cmd/file.bin"
	f.o.Put(path, data)

	dir := t.TempDir()
	bin := filepath.Join(dir, "httpmirror")
	build := exec.Command("go", "build", "-o", bin, "./cmd/httpmirror")
	build.Dir = filepath.Join("..", "..") // httpmirror's own module
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building httpmirror: %v\n%s", err, out)
	}
	cmd := exec.Command(bin,
		"--address", "127.0.0.1:0",
		"--host-from-first-path",
		"--allow-private-upstreams",
		"--upstream-ca-file", f.o.WriteCA(t, dir),
		"--storage-url", f.srv.StorageURL(f.bucket, "mirror"),
		"--kubeconfig", e.kubeconfig,
	)
	addr, logs := startCommand(t, cmd)

	got := getVia302(t, f, "http://"+addr+"/"+f.o.HostPort()+path)
	if got.status != http.StatusOK || sha(got.body) != sha(data) {
		t.Fatalf("through the command: status %d, sha256 %s; want 200, %s\n%s", got.status, sha(got.body), sha(data), logs())
	}
	u := f.blob(t, path)
	if u == nil {
		t.Fatalf("no Blob for the file\n%s", logs())
	}
	dests, _, _ := unstructured.NestedSlice(u.Object, "spec", "destination")
	running, _, _ := unstructured.NestedInt64(u.Object, "spec", "maximumRunning")
	chunk, _, _ := unstructured.NestedInt64(u.Object, "spec", "minimumChunkSize")
	if len(dests) != 1 || dests[0].(map[string]any)["name"] != "s3" || running != 10 || chunk != 128<<20 {
		t.Errorf("destinations %v, maximumRunning %d, minimumChunkSize %d; want s3, 10, 128 MiB", dests, running, chunk)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
}

// startCommand starts cmd, an httpmirror command, and returns the address
// it listens on and a function returning its log so far. It is killed
// when the test ends.
func startCommand(t *testing.T, cmd *exec.Cmd) (string, func() string) {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var log strings.Builder
	logs := func() string { mu.Lock(); defer mu.Unlock(); return log.String() }
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	select {
	case a := <-addr:
		return a, logs
	case <-done:
		t.Fatalf("httpmirror exited before listening\n%s", logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("httpmirror did not listen within 60s\n%s", logs())
	}
	return "", nil
}
