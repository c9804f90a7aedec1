package s3test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// serverPackage is the versitygw command; its version is pinned by the
// tools module next to this file (tools/go.mod), which keeps versitygw's
// many dependencies out of httpmirror's own go.mod.
const serverPackage = "github.com/versity/versitygw/cmd/versitygw"

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of the versitygw binary, building it the first
// time on this machine. The build (about a minute, longer on a busy
// machine) lands in the user's cache directory under a name derived from
// the pinned module versions and the Go toolchain, so later test runs and
// other test packages reuse it. Test packages run in parallel by go test
// build it only once: the build is serialized by a lock file, and the
// binary appears under its final name only when complete (rename).
func Binary() (string, error) {
	buildOnce.Do(func() { buildPath, buildErr = build() })
	return buildPath, buildErr
}

func build() (string, error) {
	tools, err := toolsDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, name := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(tools, name))
		if err != nil {
			return "", fmt.Errorf("s3test: reading tools module: %w", err)
		}
		h.Write(b)
	}
	fmt.Fprint(h, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	id := hex.EncodeToString(h.Sum(nil))[:16]

	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "httpmirror-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	bin := filepath.Join(dir, "versitygw-"+id)
	if ok, err := isFile(bin); ok || err != nil {
		return bin, err
	}

	unlock, err := lockFile(bin + ".lock")
	if err != nil {
		return "", fmt.Errorf("s3test: locking the build: %w", err)
	}
	defer unlock()
	// Another package may have built it while this one waited for the lock.
	if ok, err := isFile(bin); ok || err != nil {
		return bin, err
	}
	tmp := fmt.Sprintf("%s.tmp%d", bin, os.Getpid())
	defer os.Remove(tmp)
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-o", tmp, serverPackage)
	cmd.Dir = tools
	// CGO off: versitygw needs no C, and CI machines may have no C
	// compiler. GOWORK off: the tools module builds on its own.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("s3test: building versitygw: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	fmt.Fprintf(os.Stderr, "s3test: built versitygw in %s (%s)\n", time.Since(start).Round(time.Second), bin)
	return bin, nil
}

func isFile(p string) (bool, error) {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("s3test: %w", err)
	}
	return fi.Mode().IsRegular(), nil
}

// toolsDir finds the tools module from this source file's location: tests
// always run from a source tree.
func toolsDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("s3test: cannot locate the tools module")
	}
	return filepath.Join(filepath.Dir(file), "tools"), nil
}
