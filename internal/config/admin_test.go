package config

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/internal/admin"
)

const (
	tokenA = "3f9a1c0d5e7b2a4c6e8f0a1b3c5d7e9f"
	tokenB = "Zm9vYmFyYmF6cXV4cXV1eA=="
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseTokens(t *testing.T) {
	got, err := ParseTokens(strings.NewReader("# admin tokens\n\n  " + tokenA + "   alice\n\t" + tokenB + "\r\n# end\n"))
	want := []admin.Token{{Name: "alice", Secret: tokenA}, {Name: "line-4", Secret: tokenB}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseTokens = %+v, %v; want %+v", got, err, want)
	}
	for name, c := range map[string]struct{ in, want string }{
		"empty":            {"", "holds no token"},
		"comments only":    {"# nothing\n\n", "holds no token"},
		"three fields":     {tokenA + " alice extra\n", "line 1: want TOKEN [NAME]"},
		"name:token":       {"alice:" + tokenA + "\n", "line 1: the token holds a character"},
		"short token":      {"# c\nxq7t2 alice\n", "line 2: the token is shorter than 16"},
		"only padding":     {"==== alice\n", "line 1: the token is not a bearer token"},
		"non-ASCII token":  {tokenA + "é x\n", "line 1: the token holds a character"},
		"bad name":         {tokenA + " al/ice\n", "line 1: the name"},
		"long name":        {tokenA + " " + strings.Repeat("n", 65) + "\n", "line 1: the name"},
		"duplicate name":   {tokenA + " ops\n" + tokenB + " ops\n", "line 2: the name ops is used on line 1"},
		"duplicate token":  {tokenA + " a\n" + tokenA + " b\n", "line 2: the same token as on line 1"},
		"padding in token": {"abc=defghijklmnopqrst x\n", "line 1: the token holds a character"},
	} {
		_, err := ParseTokens(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want an error with %q", name, err, c.want)
			continue
		}
		for _, secret := range []string{tokenA, tokenB, "xq7t2", "abc=defghijklmnopqrst"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: the error %q shows the token", name, err)
			}
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9090": true, "127.1.2.3:1": true, "[::1]:9090": true, "localhost:9090": true, "LocalHost:1": true,
		"[::ffff:127.0.0.1]:1": true,
		":9090":                false, "0.0.0.0:9090": false, "[::]:9090": false, "10.0.0.5:9090": false,
		"admin.internal:9090": false, "localhost.evil.org:1": false, "128.0.0.1:1": false,
	} {
		if got, err := IsLoopback(addr); err != nil || got != want {
			t.Errorf("IsLoopback(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := IsLoopback("127.0.0.1"); err == nil {
		t.Error("IsLoopback without a port: no error")
	}
}

// The admin flags: tokens from a file (or its environment variable), and
// a listener off loopback refused without tokens unless --admin-insecure.
func TestAdminFlags(t *testing.T) {
	good := writeFile(t, tokenA+" alice\n"+tokenB+" ci\n")
	c, err := Parse([]string{"--admin-address", "0.0.0.0:9090", "--admin-token-file", good, "--admin-metrics-auth"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AdminTokens) != 2 || c.AdminTokens[1].Name != "ci" || !c.AdminMetricsAuth || c.AdminExposed() {
		t.Errorf("config %+v", c)
	}
	c, err = Parse([]string{"--admin-address", ":9090"}, env(map[string]string{"HTTPMIRROR_ADMIN_TOKEN_FILE": good}), io.Discard)
	if err != nil || len(c.AdminTokens) != 2 {
		t.Fatalf("token file from the environment: %v, %+v", err, c)
	}
	for _, addr := range []string{"127.0.0.1:9090", "[::1]:9090", "localhost:9090"} {
		if c, err := Parse([]string{"--admin-address", addr}, env(nil), io.Discard); err != nil || c.AdminExposed() {
			t.Errorf("--admin-address %s without tokens: %v", addr, err)
		}
	}
	for _, addr := range []string{":9090", "0.0.0.0:9090", "[::]:9090", "10.1.2.3:9090", "admin.example.com:9090"} {
		_, err := Parse([]string{"--admin-address", addr}, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "--admin-insecure") {
			t.Errorf("--admin-address %s without tokens: %v; want a refusal naming --admin-insecure", addr, err)
		}
		c, err := Parse([]string{"--admin-address", addr, "--admin-insecure"}, env(nil), io.Discard)
		if err != nil || !c.AdminExposed() {
			t.Errorf("--admin-address %s --admin-insecure: %v; want accepted, exposed", addr, err)
		}
	}

	unreadable := filepath.Join(t.TempDir(), "missing")
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"unreadable file":      {[]string{"--admin-address", "127.0.0.1:1", "--admin-token-file", unreadable}, "--admin-token-file: open " + unreadable},
		"empty file":           {[]string{"--admin-address", "127.0.0.1:1", "--admin-token-file", writeFile(t, "")}, "holds no token"},
		"malformed file":       {[]string{"--admin-address", "127.0.0.1:1", "--admin-token-file", writeFile(t, tokenA+" a b\n")}, "line 1: want TOKEN [NAME]"},
		"directory":            {[]string{"--admin-address", "127.0.0.1:1", "--admin-token-file", t.TempDir()}, "--admin-token-file"},
		"metrics auth alone":   {[]string{"--admin-address", "127.0.0.1:1", "--admin-metrics-auth"}, "--admin-metrics-auth needs --admin-token-file"},
		"tokens without admin": {[]string{"--admin-token-file", good}, "need --admin-address"},
		"bad address":          {[]string{"--admin-address", "9090"}, "--admin-address"},
	} {
		_, err := Parse(c.args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line with %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), tokenA) {
			t.Errorf("%s: the error shows a token: %v", name, err)
		}
	}
}
