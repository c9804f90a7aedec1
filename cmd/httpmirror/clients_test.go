package main_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// goModule is one version of a module in a GOPROXY tree.
type goModule struct {
	version string
	mod     []byte
	zip     []byte
	sums    string // go.sum lines
}

// memFile is a file for modzip.Create.
type memFile struct {
	path string
	data []byte
}

func (f memFile) Path() string                 { return f.path }
func (f memFile) Lstat() (os.FileInfo, error)  { return memInfo{f}, nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(f.data)), nil }

type memInfo struct{ f memFile }

func (i memInfo) Name() string       { return filepath.Base(i.f.path) }
func (i memInfo) Size() int64        { return int64(len(i.f.data)) }
func (i memInfo) Mode() os.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

// buildModule makes a module version's .mod and .zip and the go.sum lines
// Go would record for it.
func buildModule(t *testing.T, path, version string) goModule {
	t.Helper()
	mod := []byte("module " + path + "\n\ngo 1.21\n")
	src := []byte(fmt.Sprintf("package greet\n\n// Version is the module version.\nconst Version = %q\n", version))
	var buf bytes.Buffer
	err := modzip.Create(&buf, module.Version{Path: path, Version: version}, []modzip.File{
		memFile{"go.mod", mod}, memFile{"greet.go", src},
	})
	if err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(t.TempDir(), "m.zip")
	os.WriteFile(zipPath, buf.Bytes(), 0o644)
	h1, err := dirhash.HashZip(zipPath, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	modHash, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(mod)), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return goModule{
		version: version, mod: mod, zip: buf.Bytes(),
		sums: fmt.Sprintf("%s %s %s\n%s %s/go.mod %s\n", path, version, h1, path, version, modHash),
	}
}

// goCommand runs the go command against GOPROXY with a private module cache
// and nothing else from the environment that could reach a network.
func goCommand(t *testing.T, dir, goproxy, modcache string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GOPROXY="+goproxy, "GOMODCACHE="+modcache, "GOSUMDB=off", "GOFLAGS=-mod=mod -modcacherw",
		"GOTOOLCHAIN=local", "GOTELEMETRY=off", "GONOPROXY=", "GOPRIVATE=", "GONOSUMDB=",
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// `go mod download` through the mirror: an empty module cache, checksums
// verified against go.sum, twice with the origin's @v/list changing in
// between; the second run sees the new version.
func TestGoModDownload(t *testing.T) {
	const path = "example.com/mirrortest/greet"
	v1, v2 := buildModule(t, path, "v1.0.0"), buildModule(t, path, "v1.1.0")
	o := testutil.NewOrigin(t)
	base := "/" + path + "/@v/"
	for _, v := range []goModule{v1, v2} {
		o.Put(base+v.version+".info", []byte(fmt.Sprintf(`{"Version":%q,"Time":"2025-01-01T00:00:00Z"}`, v.version)))
		o.Put(base+v.version+".mod", v.mod)
		o.Put(base+v.version+".zip", v.zip)
	}
	o.Put(base+"list", []byte("v1.0.0\n"))

	p := start(t, mirrorArgs(t, o, t.TempDir())...)
	goproxy := "http://" + p.addr + "/" + o.HostPort()
	consumer := t.TempDir()
	os.WriteFile(filepath.Join(consumer, "go.mod"), []byte("module consumer\n\ngo 1.21\n"), 0o644)
	os.WriteFile(filepath.Join(consumer, "go.sum"), []byte(v1.sums+v2.sums), 0o644)
	modcache := t.TempDir()

	download := func() string {
		out := goCommand(t, consumer, goproxy, modcache, "mod", "download", "-json", path+"@latest")
		var res struct{ Version, Zip, Error string }
		if err := json.Unmarshal(out, &res); err != nil || res.Error != "" {
			t.Fatalf("go mod download: %v %s\n%s", err, res.Error, out)
		}
		return res.Version
	}
	if got := download(); got != "v1.0.0" {
		t.Fatalf("first download: %s; want v1.0.0", got)
	}
	o.Put(base+"list", []byte("v1.0.0\nv1.1.0\n"))
	if got := download(); got != "v1.1.0" {
		t.Fatalf("second download after the list changed: %s; want v1.1.0", got)
	}
	// Checksum verification is on: a go.sum with a wrong hash fails.
	bad := strings.Replace(v1.sums+v2.sums, "h1:", "h1:AAAA", 1)
	os.WriteFile(filepath.Join(consumer, "go.sum"), []byte(bad), 0o644)
	cmd := exec.Command("go", "mod", "download", path+"@v1.0.0")
	cmd.Dir = consumer
	cmd.Env = append(os.Environ(), "GOPROXY="+goproxy, "GOMODCACHE="+t.TempDir(), "GOSUMDB=off",
		"GOFLAGS=-mod=mod -modcacherw", "GOTOOLCHAIN=local", "GOTELEMETRY=off")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "checksum mismatch") {
		t.Fatalf("download against a wrong go.sum: err %v\n%s; want a checksum mismatch", err, out)
	}
}

// wheel builds a minimal pure-Python wheel.
func wheel(t *testing.T, name, version string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	dist := name + "-" + version + ".dist-info/"
	files := map[string]string{
		name + "/__init__.py": "VERSION = " + fmt.Sprintf("%q", version) + "\n",
		dist + "METADATA":     "Metadata-Version: 2.1\nName: " + name + "\nVersion: " + version + "\n",
		dist + "WHEEL":        "Wheel-Version: 1.0\nGenerator: httpmirror-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
	}
	var record strings.Builder
	for n, c := range files {
		w, _ := zw.Create(n)
		io.WriteString(w, c)
		fmt.Fprintf(&record, "%s,,\n", n)
	}
	fmt.Fprintf(&record, "%sRECORD,,\n", dist)
	w, _ := zw.Create(dist + "RECORD")
	io.WriteString(w, record.String())
	zw.Close()
	return buf.Bytes()
}

// `pip download` from a PEP 503 index through the mirror; the wheel link
// carries #sha256=, which pip verifies.
func TestPipDownload(t *testing.T) {
	if _, err := exec.Command("python3", "-m", "pip", "--version").Output(); err != nil {
		t.Skip("python3 with pip not installed")
	}
	const name = "mirrortestpkg"
	whl := wheel(t, name, "1.0")
	file := name + "-1.0-py3-none-any.whl"
	o := testutil.NewOrigin(t)
	o.Put("/files/"+file, whl)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path != "/simple/"+name+"/" {
			return false
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, "<!DOCTYPE html><html><body><a href=\"../../files/%s#sha256=%s\">%s</a></body></html>\n", file, testutil.SHA256(whl), file)
		return true
	})
	p := start(t, mirrorArgs(t, o, t.TempDir())...)
	dest := t.TempDir()
	for _, round := range []string{"cold", "warm"} {
		cmd := exec.Command("python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir",
			"--disable-pip-version-check", "--index-url", "http://"+p.addr+"/"+o.HostPort()+"/simple/",
			"--dest", filepath.Join(dest, round), name)
		cmd.Env = append(os.Environ(), "PIP_CONFIG_FILE=/dev/null", "HTTP_PROXY=", "HTTPS_PROXY=", "http_proxy=", "https_proxy=")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pip download (%s): %v\n%s", round, err, out)
		}
		if got := fileSHA(t, filepath.Join(dest, round, file)); got != testutil.SHA256(whl) {
			t.Fatalf("%s: wheel sha256 %s; want %s", round, got, testutil.SHA256(whl))
		}
	}
	if n := o.Gets.Load(); n < 2 {
		t.Fatalf("origin GETs %d; the mirror did not fetch the index and the wheel", n)
	}
}

// curl -C -, wget -c and aria2c -x8 -s8 get the right bytes, cold and warm.
func TestDownloadClients(t *testing.T) {
	o := testutil.NewOrigin(t)
	data := testutil.Payload(90, 24<<20+333)
	p := start(t, mirrorArgs(t, o, t.TempDir())...)
	dir := t.TempDir()
	want := testutil.SHA256(data)
	var mu sync.Mutex
	n := 0
	// Each client gets its own object, so its first round is cold.
	object := func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		path := fmt.Sprintf("/dl/file%d.bin", n)
		o.Put(path, data)
		return p.url(o, path)
	}
	clients := map[string]func(t *testing.T, u, out string){
		"curl -C -": func(t *testing.T, u, out string) {
			os.WriteFile(out, data[:len(data)/3], 0o644)
			curl(t, "-C", "-", "-o", out, u)
		},
		"wget -c": func(t *testing.T, u, out string) {
			if _, err := exec.LookPath("wget"); err != nil {
				t.Skip("wget not installed")
			}
			os.WriteFile(out, data[:len(data)/3], 0o644)
			run(t, "wget", "-q", "-c", "-O", out, u)
		},
		"aria2c -x8 -s8": func(t *testing.T, u, out string) {
			if _, err := exec.LookPath("aria2c"); err != nil {
				t.Skip("aria2c not installed (scripts/test.sh installs it)")
			}
			run(t, "aria2c", "-q", "-x8", "-s8", "-k1M", "--allow-overwrite=true", "--auto-file-renaming=false",
				"--connect-timeout=10", "--timeout=60", "-d", filepath.Dir(out), "-o", filepath.Base(out), u)
		},
	}
	for name, fetch := range clients {
		t.Run(name, func(t *testing.T) {
			u := object()
			for _, round := range []string{"cold", "warm"} {
				out := filepath.Join(dir, strings.Fields(name)[0]+"-"+round)
				fetch(t, u, out)
				if got := fileSHA(t, out); got != want {
					t.Fatalf("%s: sha256 %s; want %s", round, got, want)
				}
			}
			o.CheckFetchedOnce(t, strings.TrimPrefix(u, "http://"+p.addr+"/"+o.HostPort()), int64(len(data)))
		})
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
}
