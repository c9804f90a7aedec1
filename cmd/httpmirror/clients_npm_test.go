package main_test

import (
	"crypto/sha1"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// needNpm skips the test unless npm and node can run here.
func needNpm(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(tool + " not installed")
		}
	}
}

// npmTarball is a package as npm publishes it: a gzipped tar whose files
// are under package/.
func npmTarball(t *testing.T, name, version, index string) []byte {
	t.Helper()
	pkg := fmt.Sprintf(`{"name":%q,"version":%q,"main":"index.js","license":"MIT"}`+"\n", name, version)
	return tarGz(t, []tarEntry{{"package/package.json", pkg}, {"package/index.js", index}})
}

// packument is the registry document of a package with one version,
// whose tarball is at tarball: what GET /<name> returns.
func packument(name, version, tarball string, tgz []byte) []byte {
	s512 := sha512.Sum512(tgz)
	s1 := sha1.Sum(tgz)
	doc := map[string]any{
		"name":      name,
		"dist-tags": map[string]string{"latest": version},
		"modified":  "2025-01-02T03:04:05.000Z",
		"versions": map[string]any{
			version: map[string]any{
				"name": name, "version": version, "main": "index.js", "license": "MIT",
				"dist": map[string]string{
					"tarball":   tarball,
					"integrity": "sha512-" + base64.StdEncoding.EncodeToString(s512[:]),
					"shasum":    hex.EncodeToString(s1[:]),
				},
			},
		},
	}
	b, _ := json.Marshal(doc)
	return b
}

// npmInstall installs spec with npm from registry into a fresh prefix,
// with a fresh cache, a fresh HOME and a user configuration that names
// only that registry, and returns the prefix.
func npmInstall(t *testing.T, registry, spec string) string {
	t.Helper()
	prefix, out, err := runNpmInstall(t, registry, spec)
	if err != nil {
		t.Fatalf("npm install %s: %v\n%s", spec, err, out)
	}
	return prefix
}

// runNpmInstall is npmInstall that returns npm's output and error.
func runNpmInstall(t *testing.T, registry, spec string) (prefix string, out []byte, err error) {
	t.Helper()
	d := t.TempDir()
	prefix, cache, home := filepath.Join(d, "prefix"), filepath.Join(d, "cache"), filepath.Join(d, "home")
	for _, dir := range []string{prefix, cache, home} {
		os.MkdirAll(dir, 0o755)
	}
	userconfig, globalconfig := filepath.Join(d, "npmrc"), filepath.Join(d, "global-npmrc")
	os.WriteFile(userconfig, []byte("registry="+registry+"\naudit=false\nfund=false\nupdate-notifier=false\nprogress=false\nfetch-retries=0\n"), 0o644)
	os.WriteFile(globalconfig, nil, 0o644)
	cmd := exec.Command("npm", "install", spec, "--registry", registry, "--cache", cache, "--prefix", prefix,
		"--userconfig", userconfig, "--globalconfig", globalconfig,
		"--no-audit", "--no-fund", "--offline=false", "--update-notifier=false")
	cmd.Dir = d
	// Nothing from the environment: no npm_config_* settings, no proxy.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "NO_UPDATE_NOTIFIER=1", "LC_ALL=C"}
	out, err = cmd.CombinedOutput()
	return prefix, out, err
}

// `npm install` through the mirror from a registry whose packument names
// the tarball at the mirror: npm checks the tarball's sha512 integrity; a
// second install with an empty npm cache is served from the mirror's cache.
func TestNpmInstall(t *testing.T) {
	needNpm(t)
	const name, version = "mirrortest-greet", "1.0.0"
	index := "module.exports = () => 'hello through the mirror';\n"
	tgz := npmTarball(t, name, version, index)
	o := testutil.NewOrigin(t)
	tarPath := "/" + name + "/-/" + name + "-" + version + ".tgz"
	o.Put(tarPath, tgz)
	p := start(t, mirrorArgs(t, o, t.TempDir())...)
	// As registry.npmjs.org does, a packument may be cached for minutes.
	doc := o.Put("/"+name, packument(name, version, p.url(o, tarPath), tgz))
	doc.Type = "application/json"
	doc.Header = map[string][]string{"Cache-Control": {"public, max-age=300"}}

	registry := p.url(o, "/")
	for _, round := range []string{"cold", "warm"} {
		t.Run(round, func(t *testing.T) {
			prefix := npmInstall(t, registry, name+"@"+version)
			got, err := os.ReadFile(filepath.Join(prefix, "node_modules", name, "index.js"))
			if err != nil || string(got) != index {
				t.Fatalf("installed index.js: %q, %v; want %q", got, err, index)
			}
		})
	}
	// npm checks what the mirror gave it: a packument whose integrity does
	// not match the tarball makes the install fail.
	t.Run("integrity checked", func(t *testing.T) {
		const other = "mirrortest-wrong"
		otherTar := "/" + other + "/-/" + other + "-" + version + ".tgz"
		o.Put(otherTar, npmTarball(t, other, version, index))
		o.Put("/"+other, packument(other, version, p.url(o, otherTar), tgz))
		_, out, err := runNpmInstall(t, registry, other+"@"+version)
		if err == nil || !strings.Contains(string(out), "EINTEGRITY") {
			t.Fatalf("npm install with a wrong integrity: %v\n%s; want EINTEGRITY", err, out)
		}
	})
	gets := originGets(o)
	for _, path := range []string{"/" + name, tarPath} {
		if gets[path] != 1 {
			t.Errorf("origin got %d GETs of %s; want 1 (the second install served from the cache)", gets[path], path)
		}
	}
	// npm fetched nothing else from the origin: no audit, no other package.
	for path, n := range gets {
		if !strings.HasPrefix(path, "/mirrortest-") {
			t.Errorf("origin got %d GETs of %s; want none", n, path)
		}
	}
	// The tarball is stored with its SHA-256, which the mirror sends (RFC
	// 9530) for any client to check.
	resp, err := http.Get(p.url(o, tarPath))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("Repr-Digest"), repr256(tgz); got != want {
		t.Errorf("GET %s: Repr-Digest %q; want %q", tarPath, got, want)
	}
}
