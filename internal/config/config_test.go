package config

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/var/cache/test")
	c, err := Parse(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Address != ":8080" || c.LinkExpires != 24*time.Hour || !c.TeeResponse || c.UpstreamScheme != "https" || c.MaxRanges != httpmirror.DefaultMaxRanges || c.PrefetchConcurrency != 4 {
		t.Errorf("defaults: %+v", c)
	}
	if c.StorageURL != "file:///var/cache/test/httpmirror" {
		t.Errorf("default storage = %q; want the user cache dir", c.StorageURL)
	}
}

func TestEmptyStorageMeansNoCache(t *testing.T) {
	c, err := Parse([]string{"--storage-url="}, env(nil), io.Discard)
	if err != nil || c.StorageURL != "" {
		t.Fatalf("StorageURL %q, err %v; want empty", c.StorageURL, err)
	}
	c, err = Parse(nil, env(map[string]string{"HTTPMIRROR_STORAGE_URL": ""}), io.Discard)
	if err != nil || c.StorageURL != "" {
		t.Fatalf("from env: StorageURL %q, err %v; want empty", c.StorageURL, err)
	}
}

func TestEnvironmentAndPrecedence(t *testing.T) {
	c, err := Parse([]string{"--address", "127.0.0.1:1"}, env(map[string]string{
		"HTTPMIRROR_ADDRESS":                "127.0.0.1:2",
		"HTTPMIRROR_BLOCK_SUFFIX":           ".exe,.msi",
		"HTTPMIRROR_TEE_RESPONSE":           "false",
		"HTTPMIRROR_CHECK_SYNC_TIMEOUT":     "3s",
		"HTTPMIRROR_CONTINUATION_GET_RETRY": "4",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Address != "127.0.0.1:1" {
		t.Errorf("Address = %q; the flag must win over the environment", c.Address)
	}
	if strings.Join(c.BlockSuffix, " ") != ".exe .msi" || c.TeeResponse || c.CheckSyncTimeout != 3*time.Second || c.ContinuationGetRetry != 4 {
		t.Errorf("from env: %+v", c)
	}
}

// A variable of a flag given on the command line is not read at all: a
// bad value there is no error, and a repeatable flag does not get the
// variable's values added to the command line's. Of several bad
// variables, the one of the first flag by name is reported, so that the
// error does not change from run to run.
func TestEnvironmentOnlyForFlagsNotGiven(t *testing.T) {
	c, err := Parse([]string{"--tee-response=false", "--block-suffix", ".exe"}, env(map[string]string{
		"HTTPMIRROR_TEE_RESPONSE": "maybe",
		"HTTPMIRROR_BLOCK_SUFFIX": ".msi",
	}), io.Discard)
	if err != nil {
		t.Fatalf("bad variables of flags given: %v; want them ignored", err)
	}
	if c.TeeResponse || strings.Join(c.BlockSuffix, " ") != ".exe" {
		t.Errorf("TeeResponse %v, BlockSuffix %q; want false and the command line's .exe only", c.TeeResponse, c.BlockSuffix)
	}
	bad := env(map[string]string{
		"HTTPMIRROR_UPSTREAM_IDLE_TIMEOUT": "whenever",
		"HTTPMIRROR_LINK_EXPIRES":          "never",
		"HTTPMIRROR_CHECK_SYNC_TIMEOUT":    "soon",
	})
	for range 5 {
		_, err := Parse(nil, bad, io.Discard)
		if want := `invalid value "soon" for HTTPMIRROR_CHECK_SYNC_TIMEOUT: want a duration such as 30s, 5m or 1h30m`; err == nil || err.Error() != want {
			t.Fatalf("several bad variables: error %v; want %q", err, want)
		}
	}
}

func TestBlockSuffixRepeatable(t *testing.T) {
	c, err := Parse([]string{"--block-suffix", ".exe", "--block-suffix", ".msi, .bat"}, env(nil), io.Discard)
	if err != nil || strings.Join(c.BlockSuffix, " ") != ".exe .msi .bat" {
		t.Fatalf("BlockSuffix %q, err %v", c.BlockSuffix, err)
	}
}

func TestAllowHost(t *testing.T) {
	c, err := Parse([]string{"--allow-host", "*.huggingface.co,huggingface.co", "--allow-host", " github.com , objects.githubusercontent.com"}, env(nil), io.Discard)
	if err != nil || strings.Join(c.AllowHost, " ") != "*.huggingface.co huggingface.co github.com objects.githubusercontent.com" {
		t.Fatalf("AllowHost %q, err %v", c.AllowHost, err)
	}
	c, err = Parse(nil, env(map[string]string{"HTTPMIRROR_ALLOW_HOST": "*.example.org,example.org"}), io.Discard)
	if err != nil || strings.Join(c.AllowHost, " ") != "*.example.org example.org" {
		t.Fatalf("from env: AllowHost %q, err %v", c.AllowHost, err)
	}
	c, err = Parse(nil, env(nil), io.Discard)
	if err != nil || c.AllowHost != nil {
		t.Fatalf("absent: AllowHost %q, err %v; want nil (every host)", c.AllowHost, err)
	}
}

func TestAuthCacheFlags(t *testing.T) {
	c, err := Parse(nil, env(nil), io.Discard)
	if err != nil || c.AuthCache || c.AuthCacheTTL != httpmirror.DefaultAuthCacheTTL {
		t.Fatalf("defaults: AuthCache %v, AuthCacheTTL %v, err %v; want off and %v", c.AuthCache, c.AuthCacheTTL, err, httpmirror.DefaultAuthCacheTTL)
	}
	c, err = Parse([]string{"--auth-cache", "--auth-cache-ttl", "90s"}, env(nil), io.Discard)
	if err != nil || !c.AuthCache || c.AuthCacheTTL != 90*time.Second {
		t.Fatalf("flags: AuthCache %v, AuthCacheTTL %v, err %v", c.AuthCache, c.AuthCacheTTL, err)
	}
	c, err = Parse(nil, env(map[string]string{"HTTPMIRROR_AUTH_CACHE": "true", "HTTPMIRROR_AUTH_CACHE_TTL": "1m"}), io.Discard)
	if err != nil || !c.AuthCache || c.AuthCacheTTL != time.Minute {
		t.Fatalf("from env: AuthCache %v, AuthCacheTTL %v, err %v", c.AuthCache, c.AuthCacheTTL, err)
	}
}

func TestErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--link-expires", "x"},
		{"--link-expires", "-1s"},
		{"--log-level", "chatty"},
		{"--log-format", "yaml"},
		{"--max-path-length", "0"},
		{"--max-ranges", "0"},
		{"--prefetch-concurrency", "0"},
		{"--auth-cache-ttl", "0s"},
		{"--auth-cache-ttl", "-1m"},
		{"--nope"},
		{"extra"},
	} {
		if _, err := Parse(args, env(nil), io.Discard); err == nil {
			t.Errorf("Parse(%q) succeeded; want an error", args)
		}
	}
	if _, err := Parse(nil, env(map[string]string{"HTTPMIRROR_LINK_EXPIRES": "never"}), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "HTTPMIRROR_LINK_EXPIRES") {
		t.Errorf("bad environment value: error %v; want one naming the variable", err)
	}
}

func TestHelp(t *testing.T) {
	var out strings.Builder
	if _, err := Parse([]string{"--help"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("--help: %v; want ErrHelp", err)
	}
	if !strings.Contains(out.String(), "--storage-url") || !strings.Contains(out.String(), "HTTPMIRROR_STORAGE_URL") {
		t.Errorf("usage lacks flags or their variables:\n%s", out.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "20GiB": 20 << 30, "500MB": 500e6, "1.5GiB": 3 << 29, "64 KiB": 64 << 10, "2tb": 2e12, "10b": 10,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1GiB", "12XB", "1e400", "lots"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) succeeded; want an error", in)
		}
	}
}

func TestRevalidatePatternsFlag(t *testing.T) {
	c, _ := Parse(nil, env(nil), io.Discard)
	if strings.Join(c.RevalidatePatterns, ",") != strings.Join(httpmirror.DefaultRevalidatePatterns, ",") {
		t.Errorf("default patterns %q", c.RevalidatePatterns)
	}
	c, _ = Parse([]string{"--revalidate-pattern="}, env(nil), io.Discard)
	if c.RevalidatePatterns == nil || len(c.RevalidatePatterns) != 0 {
		t.Errorf("empty flag: %q; want an empty, non-nil list", c.RevalidatePatterns)
	}
	c, _ = Parse([]string{"--revalidate-pattern", "*/index.json, */latest"}, env(nil), io.Discard)
	if strings.Join(c.RevalidatePatterns, "|") != "*/index.json|*/latest" {
		t.Errorf("patterns %q", c.RevalidatePatterns)
	}
}

func TestCIDNFlags(t *testing.T) {
	const s3URL = "s3://k:s@bucket.us-east-1/root?regionendpoint=http://127.0.0.1:9000"
	c, err := Parse([]string{"--storage-url", s3URL}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.CIDNEnabled() || !c.CIDNWait || c.CIDNMaximumRunning != 10 || c.CIDNMinimumChunkSize != 128<<20 {
		t.Errorf("defaults: enabled %v, wait %v, maximum running %d, minimum chunk %d", c.CIDNEnabled(), c.CIDNWait, c.CIDNMaximumRunning, c.CIDNMinimumChunkSize)
	}
	c, err = Parse([]string{"--storage-url", s3URL, "--kubeconfig", "/etc/cidn/kubeconfig", "--cidn-minimum-chunk-size", "64MiB"}, env(map[string]string{
		"HTTPMIRROR_CIDN_WAIT":                "false",
		"HTTPMIRROR_MASTER":                   "https://cidn:6443",
		"HTTPMIRROR_CIDN_MAXIMUM_RUNNING":     "4",
		"HTTPMIRROR_INSECURE_SKIP_TLS_VERIFY": "true",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !c.CIDNEnabled() || c.CIDNWait || c.Kubeconfig != "/etc/cidn/kubeconfig" || c.Master != "https://cidn:6443" || !c.InsecureSkipTLSVerify ||
		c.CIDNDestination != "s3" || c.CIDNMaximumRunning != 4 || c.CIDNMinimumChunkSize != 64<<20 {
		t.Errorf("parsed %+v", c)
	}
	c, err = Parse([]string{"--storage-url", s3URL, "--master", "http://127.0.0.1:1", "--cidn-destination", "mirror-bucket"}, env(nil), io.Discard)
	if err != nil || c.CIDNDestination != "mirror-bucket" {
		t.Errorf("destination %q, %v; want mirror-bucket", c.CIDNDestination, err)
	}
	for _, args := range [][]string{
		{"--master", "http://127.0.0.1:1"}, // local disk
		{"--storage-url=", "--kubeconfig", "k"},
		{"--storage-url", "file:///tmp/x", "--kubeconfig", "k"},
		{"--storage-url", s3URL, "--cidn-maximum-running", "-1"},
	} {
		if _, err := Parse(args, env(nil), io.Discard); err == nil {
			t.Errorf("Parse(%q) accepted", args)
		} else if strings.Contains(err.Error(), "s3://k:s@") {
			t.Errorf("error %q quotes the storage URL", err)
		}
	}
}

func TestMaxIdle(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, 0},
		{[]string{"--max-idle", "30d"}, nil, 30 * 24 * time.Hour},
		{[]string{"--max-idle=1d12h"}, nil, 36 * time.Hour},
		{[]string{"--max-idle", "720h"}, nil, 720 * time.Hour},
		{nil, map[string]string{"HTTPMIRROR_MAX_IDLE": "90m"}, 90 * time.Minute},
	} {
		cfg, err := Parse(append([]string{"--storage-url=file:///tmp/x"}, c.args...), env(c.env), io.Discard)
		if err != nil || cfg.MaxIdle != c.want {
			t.Errorf("%v %v: MaxIdle %v, %v; want %v", c.args, c.env, cfg.MaxIdle, err, c.want)
		}
	}
	for _, v := range []string{"0", "0s", "0d", "-1h", "-3d", "garbage", "30", "d", "30x", "1s", "30d-1h", "99999d", ""} {
		_, err := Parse([]string{"--storage-url=file:///tmp/x", "--max-idle", v}, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "max-idle") || !strings.Contains(err.Error(), "30d") {
			t.Errorf("--max-idle %q: %v; want an error naming the flag with an example", v, err)
		}
	}
	if _, err := Parse([]string{"--storage-url=file:///tmp/x"}, env(map[string]string{"HTTPMIRROR_MAX_IDLE": "soon"}), io.Discard); err == nil || !strings.Contains(err.Error(), "HTTPMIRROR_MAX_IDLE") {
		t.Errorf("HTTPMIRROR_MAX_IDLE=soon: %v; want an error naming the variable", err)
	}
}
