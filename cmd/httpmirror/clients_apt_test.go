package main_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/internal/testutil"
)

// tarEntry is one member of a tar archive a test builds: a directory when
// its name ends in "/", a regular file otherwise.
type tarEntry struct {
	name string
	data string
}

// tarGz returns a gzip-compressed tar archive of entries, with fixed
// owners and times so the bytes are the same on every run.
func tarGz(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	mtime := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, ModTime: mtime, Uname: "root", Gname: "root", Format: tar.FormatUSTAR}
		if strings.HasSuffix(e.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		} else {
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buildDeb builds a binary package the way dpkg-deb lays it out (deb(5)):
// an ar archive of debian-binary, control.tar.gz and data.tar.gz, in that
// order. It is built here rather than with dpkg-deb --build so that the
// bytes, and the digests the repository publishes, are the same on every
// machine; apt only fetches it and checks its size and SHA256.
func buildDeb(t *testing.T, name, version, arch, file, content string) []byte {
	t.Helper()
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: httpmirror tests <tests@example.invalid>\n"+
		"Installed-Size: 1\nDescription: a package the mirror tests fetch\n", name, version, arch)
	members := []struct {
		name string
		data []byte
	}{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", tarGz(t, []tarEntry{{"./", ""}, {"./control", control}})},
		{"data.tar.gz", tarGz(t, []tarEntry{
			{"./", ""}, {"./usr/", ""}, {"./usr/share/", ""}, {"./usr/share/" + name + "/", ""},
			{"./usr/share/" + name + "/" + file, content},
		})},
	}
	var buf bytes.Buffer
	buf.WriteString("!<arch>\n")
	for _, m := range members {
		// The 60-byte member header: name, mtime, uid, gid, octal mode,
		// size, and the magic "`\n"; members start at even offsets.
		fmt.Fprintf(&buf, "%-16s%-12d%-6d%-6d%-8o%-10d`\n", m.name, 1735787045, 0, 0, 0o100644, len(m.data))
		buf.Write(m.data)
		if len(m.data)%2 == 1 {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes()
}

// aptRepo is a one-package Debian repository: suite stable, component
// main, architecture amd64, whose Release says Acquire-By-Hash, so that apt
// fetches the indexes by their SHA256 (by-hash/SHA256/<hex>).
type aptRepo struct {
	pkg, version string
	deb          []byte
	debPath      string // under the repository root
	files        map[string][]byte
	byHash       map[string]string // index path -> its by-hash path
}

func newAptRepo(t *testing.T) *aptRepo {
	t.Helper()
	r := &aptRepo{pkg: "mirrortest-hello", version: "1.0", files: map[string][]byte{}, byHash: map[string]string{}}
	r.deb = buildDeb(t, r.pkg, r.version, "amd64", "hello.txt", "hello through the mirror\n")
	r.debPath = fmt.Sprintf("pool/main/m/%s/%s_%s_amd64.deb", r.pkg, r.pkg, r.version)
	r.files[r.debPath] = r.deb
	packages := []byte(fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\n"+
		"Maintainer: httpmirror tests <tests@example.invalid>\nInstalled-Size: 1\n"+
		"Filename: %s\nSize: %d\nSHA256: %s\nDescription: a package the mirror tests fetch\n",
		r.pkg, r.version, r.debPath, len(r.deb), testutil.SHA256(r.deb)))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(packages)
	zw.Close()

	var release strings.Builder
	release.WriteString("Origin: mirrortest\nLabel: mirrortest\nSuite: stable\nCodename: stable\n" +
		"Date: Thu, 02 Jan 2025 03:04:05 UTC\nArchitectures: amd64\nComponents: main\n" +
		"Description: the mirror tests' repository\nAcquire-By-Hash: yes\nSHA256:\n")
	const dir = "dists/stable/main/binary-amd64/"
	for _, idx := range []struct {
		name string
		data []byte
	}{{"Packages", packages}, {"Packages.gz", gz.Bytes()}} {
		sum := testutil.SHA256(idx.data)
		fmt.Fprintf(&release, " %s %d main/binary-amd64/%s\n", sum, len(idx.data), idx.name)
		r.files[dir+idx.name] = idx.data
		r.files[dir+"by-hash/SHA256/"+sum] = idx.data
		r.byHash[dir+idx.name] = dir + "by-hash/SHA256/" + sum
	}
	// Unsigned, the way of a repository without InRelease: a Release and no
	// Release.gpg, which the sources line's [trusted=yes] accepts. apt
	// ignores an InRelease that is not clearsigned, trusted or not.
	r.files["dists/stable/Release"] = []byte(release.String())
	return r
}

// put makes origin o serve the repository under root.
func (r *aptRepo) put(o *testutil.Origin, root string) {
	for p, b := range r.files {
		o.Put(root+p, b)
	}
}

// checkDeb checks, when dpkg-deb is installed, that the package at path
// is one dpkg can unpack, with the file buildDeb put in it.
func checkDeb(t *testing.T, path string, r *aptRepo) {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return
	}
	dir := t.TempDir()
	run(t, "dpkg-deb", "-x", path, dir)
	got, err := os.ReadFile(filepath.Join(dir, "usr/share", r.pkg, "hello.txt"))
	if err != nil || string(got) != "hello through the mirror\n" {
		t.Fatalf("unpacked hello.txt: %q, %v; want the package's content", got, err)
	}
}

// needApt skips the test unless apt-get can run here.
func needApt(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("apt-get not installed")
	}
}

// aptClient is apt-get with a private configuration, state and cache:
// nothing from /etc/apt, no lock on the system's directories, one source.
type aptClient struct {
	dir, conf string
}

// newAptClient sets up apt-get to read only the sources line source.
func newAptClient(t *testing.T, source string) *aptClient {
	t.Helper()
	d := t.TempDir()
	for _, sub := range []string{"etc/apt.conf.d", "etc/preferences.d", "etc/trusted.gpg.d", "etc/sources.list.d",
		"state/lists/partial", "cache/archives/partial", "log", "out"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(d, "etc/sources.list"), []byte(source+"\n"), 0o644)
	os.WriteFile(filepath.Join(d, "status"), nil, 0o644) // no installed packages
	conf := fmt.Sprintf(`Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "%[1]s/etc/apt.conf.d";
Dir::Etc::SourceList "%[1]s/etc/sources.list";
Dir::Etc::SourceParts "%[1]s/etc/sources.list.d";
Dir::Etc::Preferences "%[1]s/etc/preferences";
Dir::Etc::PreferencesParts "%[1]s/etc/preferences.d";
Dir::Etc::Trusted "%[1]s/etc/trusted.gpg";
Dir::Etc::TrustedParts "%[1]s/etc/trusted.gpg.d";
Dir::State "%[1]s/state";
Dir::State::status "%[1]s/status";
Dir::Cache "%[1]s/cache";
Dir::Log "%[1]s/log";
Debug::NoLocking "true";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
Acquire::Languages "none";
Acquire::Retries "0";
`, d)
	// As root, apt runs its download methods as the _apt user, who cannot
	// enter the test's private directories.
	if os.Getuid() == 0 {
		conf += "APT::Sandbox::User \"root\";\n"
	}
	a := &aptClient{dir: d, conf: filepath.Join(d, "apt.conf")}
	os.WriteFile(a.conf, []byte(conf), 0o644)
	return a
}

// run runs apt-get args in the client's output directory and returns its
// combined output.
func (a *aptClient) run(args ...string) ([]byte, error) {
	cmd := exec.Command("apt-get", append([]string{"-q"}, args...)...)
	cmd.Dir = filepath.Join(a.dir, "out")
	cmd.Env = []string{"APT_CONFIG=" + a.conf, "PATH=" + os.Getenv("PATH"), "LC_ALL=C", "HOME=" + a.dir}
	return cmd.CombinedOutput()
}

// mustRun runs apt-get args and fails the test when it fails or warns.
func (a *aptClient) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := a.run(args...)
	if err != nil || bytes.Contains(out, []byte("\nW: ")) || bytes.Contains(out, []byte("\nE: ")) {
		t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// originGets counts the GET requests origin o received, by path.
func originGets(o *testutil.Origin) map[string]int {
	n := map[string]int{}
	for _, r := range o.Received() {
		if r.Method == http.MethodGet {
			n[r.URL.Path]++
		}
	}
	return n
}

// `apt-get update` and `apt-get download` through the mirror from a
// repository that publishes its indexes by hash: apt fetches them by
// their SHA256, which the mirror checks; a second apt with a fresh state
// is served the indexes and the package from the mirror's cache.
func TestAptGet(t *testing.T) {
	needApt(t)
	repo := newAptRepo(t)
	o := testutil.NewOrigin(t)
	const root = "/debian/"
	repo.put(o, root)
	p := start(t, mirrorArgs(t, o, t.TempDir())...)
	source := "deb [trusted=yes arch=amd64] " + p.url(o, "/debian") + " stable main"

	coldRequests := 0
	for _, round := range []string{"cold", "warm"} {
		t.Run(round, func(t *testing.T) {
			apt := newAptClient(t, source)
			apt.mustRun(t, "update")
			apt.mustRun(t, "download", repo.pkg)
			deb := filepath.Join(apt.dir, "out", filepath.Base(repo.debPath))
			if got, want := fileSHA(t, deb), testutil.SHA256(repo.deb); got != want {
				t.Fatalf("downloaded .deb sha256 %s; want %s", got, want)
			}
			checkDeb(t, deb, repo)
		})
		if t.Failed() {
			return
		}
		if round == "cold" {
			coldRequests = len(o.Received())
			gets := originGets(o)
			// apt asked for the index by hash only: the mirror checked what
			// it stored against the hash in the URL.
			byHash := 0
			for idx, h := range repo.byHash {
				byHash += gets[root+h]
				if gets[root+idx] != 0 {
					t.Errorf("origin got %d GETs of %s; want it fetched by hash only", gets[root+idx], idx)
				}
			}
			if byHash != 1 {
				t.Errorf("origin got %d by-hash GETs; want 1 (requests: %v)", byHash, gets)
			}
			if n := gets[root+repo.debPath]; n != 1 {
				t.Errorf("origin got %d GETs of the .deb; want 1", n)
			}
			continue
		}
		// The by-hash index and the package came from the mirror's cache;
		// only the Release, an index changed in place, was revalidated.
		for _, r := range o.Received()[coldRequests:] {
			conditional := r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != ""
			if r.URL.Path != root+"dists/stable/Release" || !conditional {
				t.Errorf("warm round: origin got %s %s (conditional: %v); want only a revalidation of the Release", r.Method, r.URL.Path, conditional)
			}
		}
	}
	// What apt fetched is stored with its SHA-256, which the mirror sends
	// (RFC 9530) for any client to check.
	gets := originGets(o)
	for _, path := range append(slices.Collect(maps.Values(repo.byHash)), repo.debPath) {
		if gets[root+path] == 0 {
			continue // apt took the other index
		}
		want := repr256(repo.files[path])
		resp, err := http.Get(p.url(o, root+path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Repr-Digest"); got != want {
			t.Errorf("GET %s: Repr-Digest %q; want %q", path, got, want)
		}
	}
}

// repr256 is the Repr-Digest field value of b's SHA-256 (RFC 9530).
func repr256(b []byte) string {
	s := sha256.Sum256(b)
	return "sha-256=:" + base64.StdEncoding.EncodeToString(s[:]) + ":"
}

// logLine returns the first line of log that contains s.
func logLine(log, s string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// flipped returns a copy of b with one byte changed: the same length, so
// only a digest tells it from b.
func flipped(b []byte) []byte {
	c := bytes.Clone(b)
	c[len(c)/2] ^= 0x01
	return c
}

// An origin serves corrupted indexes (one byte flipped) under their by-hash
// URLs: the mirror checks them against the SHA256 in the URL, aborts apt's
// transfers, stores nothing and logs the mismatch; apt reports the index
// failed. Once the origin serves the right bytes, the next apt gets them.
//
// The repository publishes its indexes by hash only, as apt's own tests do:
// apt falls back from a failed by-hash URL to the index's plain name, and
// a plain name served right would hide the failure (or, when apt resumes
// its partial download there, fail apt's own hash check instead).
func TestAptGetCorruptIndex(t *testing.T) {
	needApt(t)
	repo := newAptRepo(t)
	o := testutil.NewOrigin(t)
	const root = "/debian/"
	for path, b := range repo.files {
		if _, index := repo.byHash[path]; !index {
			o.Put(root+path, b)
		}
	}
	corrupt := map[string][]byte{}
	for idx, h := range repo.byHash {
		corrupt[h] = flipped(repo.files[idx])
		o.Put(root+h, corrupt[h])
	}
	cache := t.TempDir()
	p := start(t, mirrorArgs(t, o, cache)...)
	source := "deb [trusted=yes arch=amd64] " + p.url(o, "/debian") + " stable main"

	out, err := newAptClient(t, source).run("update")
	if err == nil {
		t.Errorf("apt-get update succeeded with corrupted indexes; want it to fail")
	}
	// apt never had a whole wrong index to check: the mirror cut every
	// transfer short. apt names the index by its plain name, the last URL
	// it tried.
	if bytes.Contains(out, []byte("Hash Sum mismatch")) {
		t.Errorf("apt-get update received a whole corrupted index")
	}
	for _, want := range []string{
		"E: Failed to fetch " + p.url(o, root+"dists/stable/main/binary-amd64/Packages"),
		"E: Some index files failed to download.",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("apt-get update output lacks %q", want)
		}
	}
	t.Logf("apt-get update:\n%s", out)
	gets := originGets(o)
	fetched := 0
	for h, bad := range corrupt {
		if gets[root+h] == 0 {
			continue // apt gave up before this one
		}
		fetched++
		// The fill throws its bytes away before it logs the mismatch.
		hex := h[strings.LastIndex(h, "/")+1:]
		p.waitLog(t, "expected="+hex)
		if line := logLine(p.log(), "expected="+hex); !strings.Contains(line, `level=ERROR msg="digest mismatch`) {
			t.Errorf("the mirror's log line on %s: %s; want an ERROR digest mismatch", h, line)
		}
		for path, b := range testutil.ReadFiles(t, cache) {
			if bytes.Contains(b, bad) {
				t.Errorf("the corrupted %s is stored in %s", h, path)
			}
		}
	}
	if fetched == 0 {
		t.Fatalf("apt fetched no index by hash; origin requests: %v", gets)
	}

	// Repaired at the origin: the mirror stored nothing, so it fetches the
	// index again.
	for idx, h := range repo.byHash {
		o.Put(root+h, repo.files[idx])
	}
	before := originGets(o)
	apt := newAptClient(t, source)
	apt.mustRun(t, "update")
	apt.mustRun(t, "download", repo.pkg)
	if got, want := fileSHA(t, filepath.Join(apt.dir, "out", filepath.Base(repo.debPath))), testutil.SHA256(repo.deb); got != want {
		t.Fatalf("downloaded .deb sha256 %s; want %s", got, want)
	}
	after := originGets(o)
	refetched := 0
	for _, h := range repo.byHash {
		refetched += after[root+h] - before[root+h]
	}
	if refetched != 1 {
		t.Errorf("origin got %d by-hash GETs after the repair; want 1", refetched)
	}
}
