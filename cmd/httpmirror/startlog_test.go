package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// versionLine is what --version prints: "httpmirror VERSION [(rev
// REVISION[, modified])] GOVERSION".
var versionLine = regexp.MustCompile(`^httpmirror \S+( \(rev [0-9a-f]+(, modified)?\))? go\S+\n$`)

// --version and "httpmirror version" print the build on one line and
// exit 0, whatever else the environment holds: a variable no flag reads,
// which stops a start, does not stop --version.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}, {"--log-level", "debug", "--version"}} {
		cmd := command(t, args...)
		cmd.Env = append(os.Environ(), "HTTPMIRROR_NO_SUCH_SETTING=1")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if !versionLine.Match(out) {
			t.Errorf("%q printed %q; want one line like %q", args, out, "httpmirror v1.2.3 (rev 0123abcd) go1.26")
		}
	}
	// "version" is a subcommand only alone: with flags it is a stray
	// argument, as any other word is.
	if err := command(t, "version", "--log-level", "debug").Run(); exitCode(err) != 2 {
		t.Errorf("version with flags: %v; want exit status 2", err)
	}
}

// command is exec.Command bounded in time: a configuration wrongly
// accepted starts a server, which is killed and fails the test.
func command(t *testing.T, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return exec.CommandContext(ctx, binary, args...)
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// startLine returns the "starting" line of a log.
func startLine(t *testing.T, log string) string {
	t.Helper()
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, "msg=starting ") {
			return line
		}
	}
	t.Fatalf("no start line in the log:\n%s", log)
	return ""
}

// The start line says which build runs with what: version, host mode,
// origins served (or OPEN MIRROR), the storage without its credentials,
// the size limit and what a disk cache holds, counted again after a
// restart.
func TestStartLog(t *testing.T) {
	o := testutil.NewOrigin(t)
	body := []byte(strings.Repeat("cached bytes ", 1000))
	o.Put("/f.bin", body)
	dir := t.TempDir()
	args := append(mirrorArgs(t, o, dir), "--cache-max-size", "20GiB", "--allow-host", "*.example.org,"+o.HostPort())

	p := start(t, args...)
	line := startLine(t, p.log())
	for _, want := range []string{
		`version="httpmirror `, "hostMode=host-from-first-path", "allowHost=*.example.org," + o.HostPort(),
		"storage=file://" + dir + " ", "cacheMaxSize=20GiB", "objects=0 bytes=0",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("start line lacks %q:\n%s", want, line)
		}
	}
	resp, err := http.Get(p.url(o, "/f.bin"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitExitOK(t)

	// Restarted on the same directory, it counts the file it kept.
	p = start(t, args...)
	line = startLine(t, p.log())
	m := regexp.MustCompile(`objects=(\d+) bytes=(\d+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("restart: no objects and bytes in the start line:\n%s", line)
	}
	if n, _ := strconv.ParseInt(m[2], 10, 64); m[1] != "1" || n < int64(len(body)) {
		t.Errorf("restart: objects=%s bytes=%s; want 1 object of at least %d bytes", m[1], m[2], len(body))
	}
}

// Open to every host, the start line says OPEN MIRROR and a warning
// follows; a fixed --host serves that host only; no cache says so.
func TestStartLogModes(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--storage-url="}, []string{"hostMode=host-header", `allowHost="OPEN MIRROR"`, "storage=none", "cacheMaxSize=none"}},
		{[]string{"--storage-url=", "--host", "example.com"}, []string{`hostMode="host example.com"`, "allowHost=example.com"}},
		{[]string{"--storage-url=", "--base-domain", "mirror.example.net", "--allow-host", "*.example.com"}, []string{`hostMode="base-domain mirror.example.net"`, "allowHost=*.example.com"}},
	} {
		p := start(t, c.args...)
		line := startLine(t, p.log())
		for _, want := range c.want {
			if !strings.Contains(line, want) {
				t.Errorf("%q: start line lacks %q:\n%s", c.args, want, line)
			}
		}
		open := strings.Contains(p.log(), `level=WARN msg="OPEN MIRROR`)
		if wantOpen := strings.Contains(line, "OPEN MIRROR"); open != wantOpen {
			t.Errorf("%q: OPEN MIRROR warning %v; want %v\n%s", c.args, open, wantOpen, p.log())
		}
	}
}

// --allow-private-upstreams is a warning at start; without it there is
// none.
func TestAllowPrivateUpstreamsWarns(t *testing.T) {
	const warning = `level=WARN msg="--allow-private-upstreams: the mirror fetches from loopback, private, link-local`
	for _, allow := range []bool{false, true} {
		args := []string{"--storage-url=", "--allow-host", "example.com"}
		if allow {
			args = append(args, "--allow-private-upstreams")
		}
		p := start(t, args...)
		if n := strings.Count(p.log(), warning); n != map[bool]int{false: 0, true: 1}[allow] {
			t.Errorf("--allow-private-upstreams %v: %d warnings\n%s", allow, n, p.log())
		}
	}
}

// In JSON logs a duration is a string ("30s"), as in text logs, not
// integer nanoseconds; the start line is one JSON object with its fields.
func TestJSONLogDurations(t *testing.T) {
	cmd := command(t, "--address", "127.0.0.1:0", "--storage-url=", "--allow-host", "example.com", "--log-format", "json", "--shutdown-timeout", "1m30s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	dec := json.NewDecoder(stderr)
	var lines []map[string]any
	for i := 0; i < 50; i++ { // bounded: the few start-up lines, then the shut-down ones
		var line map[string]any
		if err := dec.Decode(&line); err != nil {
			break
		}
		lines = append(lines, line)
		switch line["msg"] {
		case "listening":
			cmd.Process.Signal(syscall.SIGTERM)
		case "stopped":
			i = 50
		}
	}
	var sawStart, sawShutdown bool
	for _, l := range lines {
		switch l["msg"] {
		case "starting":
			sawStart = true
			if v, _ := l["version"].(string); !strings.HasPrefix(v, "httpmirror ") || l["allowHost"] != "example.com" {
				t.Errorf("start line %v; want version and allowHost", l)
			}
		case "shutting down":
			sawShutdown = true
			if l["timeout"] != "1m30s" {
				t.Errorf("shutting down: timeout %#v; want the string \"1m30s\"", l["timeout"])
			}
		}
	}
	if !sawStart || !sawShutdown {
		t.Errorf("log lines %v; want a start line and a shut-down line", lines)
	}
}

// The default cache directory that cannot be made says that it is the
// default and how to choose another; so does a user cache directory that
// cannot be found.
func TestDefaultCacheDirFailure(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	for name, env := range map[string][]string{
		"not a directory": {"XDG_CACHE_HOME=" + notDir},
		"no home":         {"XDG_CACHE_HOME=", "HOME="},
	} {
		cmd := command(t, "--address", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		msg := strings.TrimSpace(stderr.String())
		if exitCode(err) != 2 {
			t.Fatalf("%s: %v; want exit status 2 (stderr %q)", name, err, msg)
		}
		if !strings.Contains(msg, "default cache directory") || !strings.Contains(msg, "--storage-url file:///") || strings.Contains(msg, "\n") {
			t.Errorf("%s: stderr %q; want one line saying it is the default and suggesting --storage-url", name, msg)
		}
	}
}

// A variable under HTTPMIRROR_ that no flag reads stops the start with
// a one-line error naming it and the variable probably meant; the
// variables of "httpmirror cache" are no error.
func TestUnknownEnvironmentVariable(t *testing.T) {
	cmd := command(t, "--address", "127.0.0.1:0", "--storage-url=")
	cmd.Env = append(os.Environ(), "HTTPMIRROR_ALOW_HOST=example.com")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	if exitCode(err) != 2 || !strings.Contains(msg, "unknown environment variable HTTPMIRROR_ALOW_HOST") ||
		!strings.Contains(msg, "did you mean HTTPMIRROR_ALLOW_HOST?") || strings.Contains(msg, "\n") {
		t.Errorf("exit %v, stderr %q; want status 2 and one line naming the variable and HTTPMIRROR_ALLOW_HOST", err, msg)
	}

	cmd = exec.Command(binary, "--address", "127.0.0.1:0", "--storage-url=", "--allow-host", "example.com")
	cmd.Env = append(os.Environ(), "HTTPMIRROR_ADMIN=http://127.0.0.1:9", "HTTPMIRROR_ADMIN_TOKEN=0123456789abcdef")
	p := startCmd(t, cmd)
	if strings.Contains(p.log(), "unknown environment variable") {
		t.Errorf("the cache command's variables refused:\n%s", p.log())
	}
}

// "httpmirror cache" words its flag errors as the server does: --name,
// and what the value should be; exit status 2.
func TestCacheFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ls", "--lmit", "3"}, "httpmirror cache: unknown flag --lmit (did you mean --limit?)"},
		{[]string{"ls", "--limit", "many"}, `httpmirror cache: invalid value "many" for --limit: want a whole number such as 4`},
		{[]string{"warm", "--timeout", "5", "https://example.com/f"}, `httpmirror cache: invalid value "5" for --timeout: want a duration such as 30s, 5m or 1h30m`},
	} {
		code, _, errOut := cacheCLI(t, "", c.args...)
		if code != 2 || !strings.HasPrefix(errOut, c.want) || strings.Contains(errOut, " -l") || strings.Contains(errOut, " -t") {
			t.Errorf("cache %q: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}
