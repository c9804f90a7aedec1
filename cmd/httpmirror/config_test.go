package main_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// e2eSecret is the secret key in storage URLs that must never be printed.
const e2eSecret = "s3cr3tKEYvalue"

func TestBadConfigurationExits2(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o644)
	emptyTokens := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(emptyTokens, []byte("# no token yet\n"), 0o600)
	badTokens := filepath.Join(t.TempDir(), "bad-tokens")
	os.WriteFile(badTokens, []byte(e2eSecret+"-but-too-many fields here\n"), 0o600)
	tests := map[string][]string{
		"unknown flag":             {"--no-such-flag"},
		"bad duration":             {"--link-expires", "soon"},
		"negative duration":        {"--check-sync-timeout", "-1s"},
		"bad number":               {"--continuation-get-retry", "many"},
		"max idle zero":            {"--max-idle", "0s"},
		"max idle negative":        {"--max-idle", "-30d"},
		"max idle garbage":         {"--max-idle", "a month"},
		"unknown scheme":           {"--storage-url", "ftp://example.com/cache"},
		"unparsable url":           {"--storage-url", "file://%zz"},
		"relative dir":             {"--storage-url", "file://relative/dir"},
		"cache dir not usable":     {"--storage-url", "file://" + notDir + "/cache"},
		"bad upstream scheme":      {"--upstream-scheme", "ftp"},
		"two host modes":           {"--host", "example.com", "--host-from-first-path"},
		"bad host":                 {"--host", "nodot"},
		"host not allowed":         {"--host", "example.com", "--allow-host", "*.example.org"},
		"bad log format":           {"--log-format", "xml"},
		"bad log level":            {"--log-level", "loud"},
		"missing CA file":          {"--upstream-ca-file", "/nonexistent/ca.pem"},
		"stray argument":           {"serve"},
		"bad environment value":    {"--storage-url="},
		"s3 bad escape":            {"--storage-url", "s3://AK:" + e2eSecret + "%zz@bucket.us-east-1/"},
		"s3 no region":             {"--storage-url", "s3://AK:" + e2eSecret + "@bucket/"},
		"s3 unknown parameter":     {"--storage-url", "s3://AK:" + e2eSecret + "@bucket.us-east-1/?endpoint=http://127.0.0.1:1"},
		"s3 bad chunk size":        {"--storage-url", "s3://AK:" + e2eSecret + "@bucket.us-east-1/?chunksize=big"},
		"s3 unreachable bucket":    {"--storage-url", "s3://AK:" + e2eSecret + "@bucket.us-east-1/?regionendpoint=http://127.0.0.1:1&forcepathstyle=true"},
		"no scheme":                {"--storage-url", "AK:" + e2eSecret + "@bucket"},
		"cidn on local disk":       {"--master", "http://127.0.0.1:1"},
		"cidn without cache":       {"--storage-url=", "--kubeconfig", "/nonexistent/kubeconfig"},
		"admin off loopback":       {"--admin-address", "0.0.0.0:0"},
		"admin on every host":      {"--admin-address", ":0"},
		"admin tokens missing":     {"--admin-address", "127.0.0.1:0", "--admin-token-file", "/nonexistent/tokens"},
		"admin tokens empty":       {"--admin-address", "127.0.0.1:0", "--admin-token-file", emptyTokens},
		"admin tokens bad line":    {"--admin-address", "127.0.0.1:0", "--admin-token-file", badTokens},
		"admin on the public port": {"--address", "127.0.0.1:18080", "--admin-address", "127.0.0.1:18080"},
	}
	for name, args := range tests {
		t.Run(name, func(t *testing.T) {
			// Bounded: a configuration wrongly accepted starts a server,
			// which is killed and fails the test.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, binary, append([]string{"--address", "127.0.0.1:0"}, args...)...)
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
		"--allow-private-upstreams", "--allow-host", "--log-format", "--log-level", "HTTPMIRROR_STORAGE_URL"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("--help does not mention %s", flag)
		}
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
		"HTTPMIRROR_MAX_RANGES=1",
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
	// One range at most: two are answered with the whole file.
	req, _ := http.NewRequest("GET", p.url(o, "/env.txt"), nil)
	req.Header.Set("Range", "bytes=0-0,2-2")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "from env" {
		t.Fatalf("two ranges with --max-ranges 1: status %d body %q; want 200 %q", resp.StatusCode, body, "from env")
	}
}

// Serving any host is loud at start; --allow-host silences it and limits
// the origins served.
func TestAllowHostFlag(t *testing.T) {
	o := testutil.NewOrigin(t)
	o.Put("/f.txt", []byte("allowed"))
	const warning = "level=WARN msg=\"OPEN MIRROR: anyone who reaches this port can make the mirror fetch from any host"

	anyHost := start(t, mirrorArgs(t, o, t.TempDir())...)
	if n := strings.Count(anyHost.log(), warning); n != 1 {
		t.Errorf("without --allow-host: %d open-mirror warnings; want 1\n%s", n, anyHost.log())
	}

	p := start(t, append(mirrorArgs(t, o, t.TempDir()), "--allow-host", "*.example.org,"+o.HostPort())...)
	if strings.Contains(p.log(), "OPEN MIRROR") {
		t.Errorf("with --allow-host: the open-mirror warning was logged\n%s", p.log())
	}
	for u, want := range map[string]int{
		p.url(o, "/f.txt"):                        200,
		"http://" + p.addr + "/example.com/f.txt": 403,
	} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: status %d; want %d", u, resp.StatusCode, want)
		}
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin GETs %d; want 1", n)
	}
}

// --auth-cache stores a gated file once and serves it to the token only;
// without it the file is fetched for each client. The token stays out of
// the log, at debug level.
func TestAuthCacheFlag(t *testing.T) {
	const token = "Bearer e2e-4d2f8a61"
	for _, authCache := range []bool{false, true} {
		o := testutil.NewOrigin(t)
		o.Put("/org/model/resolve/main/w.bin", []byte("gated weights"))
		o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			if r.Header.Get("Authorization") == token {
				return false
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="e2e"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return true
		})
		args := mirrorArgs(t, o, t.TempDir())
		if authCache {
			args = append(args, "--auth-cache", "--auth-cache-ttl", "1m")
		}
		p := start(t, args...)
		for i, c := range []struct {
			token string
			want  int
		}{{token, 200}, {"", 401}, {token, 200}} {
			req, _ := http.NewRequest("GET", p.url(o, "/org/model/resolve/main/w.bin"), nil)
			if c.token != "" {
				req.Header.Set("Authorization", c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want || (c.want == 200) != (string(body) == "gated weights") {
				t.Errorf("auth-cache %v, request %d: status %d, body %q; want %d", authCache, i, resp.StatusCode, body, c.want)
			}
			if c.want == 401 && resp.Header.Get("Www-Authenticate") != `Bearer realm="e2e"` {
				t.Errorf("auth-cache %v: WWW-Authenticate %q", authCache, resp.Header.Get("Www-Authenticate"))
			}
		}
		want := int64(3) // the anonymous request is a miss too
		if authCache {
			want = 1
		}
		if n := o.Gets.Load(); n != want {
			t.Errorf("auth-cache %v: origin GETs %d; want %d", authCache, n, want)
		}
		if strings.Contains(p.log(), "e2e-4d2f8a61") {
			t.Errorf("auth-cache %v: the token is in the log", authCache)
		}
	}
}
