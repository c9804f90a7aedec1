// Package cidn_test runs httpmirror's CIDN client against a real Kubernetes
// API server (apiextensions-apiserver on an embedded etcd, with a CRD
// shaped like CIDN's Blob) and a real S3 store (versitygw), with a
// stand-in for CIDN's runners. It is a module of its own so that the API
// server's dependencies stay out of httpmirror's go.mod;
// scripts/test.sh runs it.
package cidn_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/klog/v2"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/cidn"
	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

var verboseKlog = flag.Bool("klog", false, "show the Kubernetes libraries' log (API server, informers)")

func TestMain(m *testing.M) {
	flag.Parse()
	if !*verboseKlog {
		// The API server logs a great deal; the tests report what matters.
		klog.SetSlogLogger(slog.New(slog.DiscardHandler))
	}
	code := m.Run()
	s3test.StopShared()
	os.Exit(code)
}

// TestCIDN runs the acceptance cases that share one API server.
func TestCIDN(t *testing.T) {
	e := newEnv(t)
	r := startRunner(t, e, s3test.Shared(t).Client(), runnerClient(t))
	t.Run("MissCreatesBlobAndServesStoredObject", func(t *testing.T) { testMissCreatesBlob(t, e, r) })
	t.Run("TwoMirrorsTwentyClientsOneBlob", func(t *testing.T) { testTwoMirrorsOneBlob(t, e, r) })
	t.Run("FailedBlob", func(t *testing.T) { testFailedBlob(t, e, r) })
	t.Run("BlobDeletedWhileWaiting", func(t *testing.T) { testBlobDeleted(t, e, r) })
	t.Run("NoWaitProxiesWhileRunning", func(t *testing.T) { testNoWait(t, e, r) })
	t.Run("Command", func(t *testing.T) { testCommand(t, e, r) })
}

// Acceptance 1: a miss creates a Blob with the right spec and annotations;
// once the runner completed it, the client gets the file through the
// usual S3 path (302 to a presigned URL); with NoRedirect the bytes come
// through the mirror.
func testMissCreatesBlob(t *testing.T, e *env, r *runner) {
	f := newFixture(t, e, r)
	data := testutil.Payload(1, 3<<20+17)
	const path = "/releases/tool-1.0.tar.gz"
	f.o.Put(path, data)
	m := f.mirror(t, nil)

	got := getVia302(t, f, m.url(f, path))
	if got.status != 200 || sha(got.body) != sha(data) {
		t.Fatalf("following the redirect: status %d, sha256 %s; want 200, %s", got.status, sha(got.body), sha(data))
	}

	u := f.blob(t, path)
	if u == nil {
		t.Fatal("no Blob for the file")
	}
	okey, err := f.store.ObjectKey(f.key(path))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(okey, "mirror/") {
		t.Fatalf("object key %q; want it under the root directory", okey)
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	wantSpec := map[string]any{
		"source":           []any{map[string]any{"url": f.upstream(path)}},
		"destination":      []any{map[string]any{"name": f.bucket, "path": okey, "skipIfExists": true}},
		"maximumRunning":   int64(10),
		"minimumChunkSize": int64(128 << 20),
	}
	if fmt.Sprint(spec) != fmt.Sprint(wantSpec) {
		t.Errorf("spec %v; want %v", spec, wantSpec)
	}
	wantAnn := map[string]string{
		cidn.AnnotationDisplayName: f.upstream(path),
		cidn.AnnotationGroup:       f.o.HostPort(),
		cidn.AnnotationTags:        "httpmirror",
		cidn.AnnotationTTL:         "1h",
	}
	for k, v := range wantAnn {
		if got := u.GetAnnotations()[k]; got != v {
			t.Errorf("annotation %s = %q; want %q", k, got, v)
		}
	}
	if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase != cidn.PhaseSucceeded {
		t.Errorf("Blob phase %q; want Succeeded", phase)
	}

	// Later requests are plain hits: no new Blob, no origin request.
	if got := getVia302(t, f, m.url(f, path)); sha(got.body) != sha(data) {
		t.Errorf("second request: sha256 %s; want %s", sha(got.body), sha(data))
	}
	if n := len(r.taken(u.GetName())); n != 1 {
		t.Errorf("the runner took %d Blobs; want 1", n)
	}
	if n := f.o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1 (the runner's)", n)
	}
	if n := m.metric(t, "httpmirror_cidn_blobs_created_total", nil); n != 1 {
		t.Errorf("blobs created = %v; want 1", n)
	}
	if n := m.metric(t, "httpmirror_cidn_blobs_finished_total", map[string]string{"result": "succeeded"}); n != 1 {
		t.Errorf("blobs succeeded = %v; want 1", n)
	}

	// NoRedirect: the object CIDN wrote (without httpmirror's metadata)
	// is served through the mirror, with the store's validators.
	data2 := testutil.Payload(2, 200000)
	f.o.Put("/releases/tool-1.1.tar.gz", data2)
	nr := f.mirror(t, nil, func(h *httpmirror.MirrorHandler) { h.NoRedirect = true })
	got = do(t, noRedirect, http.MethodGet, nr.url(f, "/releases/tool-1.1.tar.gz"))
	if got.status != 200 || sha(got.body) != sha(data2) || got.header.Get("Etag") == "" {
		t.Fatalf("NoRedirect: status %d, sha256 %s, ETag %q; want 200, %s and an ETag", got.status, sha(got.body), got.header.Get("Etag"), sha(data2))
	}
}

// Acceptance 2: two mirrors, each with its own informer, and 20
// concurrent clients of one cold file make exactly one Blob; every client
// gets the file.
func testTwoMirrorsOneBlob(t *testing.T, e *env, r *runner) {
	f := newFixture(t, e, r)
	data := testutil.Payload(3, 2<<20+5)
	const path = "/models/weights.bin"
	f.o.Put(path, data)
	m1 := f.mirror(t, nil)
	m2 := f.mirror(t, f.newStore(t))
	name := cidn.BlobName(f.key(path))
	// The runner holds the Blob until every client waits for it, so all
	// of them meet the transfer running.
	r.hold(name)

	const clients = 20
	wait := testutil.GetMany(t, following, clients, func(i int) string {
		if i%2 == 1 {
			return m2.url(f, path)
		}
		return m1.url(f, path)
	}, sha(data))
	r.waitHeld(t, name)
	eventually(t, 30*time.Second, "20 waiting clients", func() bool { return m1.c.Waiting()+m2.c.Waiting() == clients })
	r.release(name)
	wait()
	if n := len(r.taken(name)); n != 1 {
		t.Errorf("the runner took %d Blobs; want exactly 1", n)
	}
	if n := m1.metric(t, "httpmirror_cidn_blobs_created_total", nil) + m2.metric(t, "httpmirror_cidn_blobs_created_total", nil); n != 1 {
		t.Errorf("the mirrors created %v Blobs; want 1 (the other found it)", n)
	}
	if n := f.o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
}

// Acceptance 3: a failed Blob answers 502 with its message; a source that
// does not exist answers 404. The next request after a failure retries
// with a new Blob; a 404 is remembered for the negative TTL.
func testFailedBlob(t *testing.T, e *env, r *runner) {
	f := newFixture(t, e, r)
	f.o.SetHook(func(w http.ResponseWriter, req *http.Request, _ *testutil.File) bool {
		if req.URL.Path == "/broken.bin" {
			http.Error(w, "disk on fire", http.StatusInternalServerError)
			return true
		}
		return false
	})
	m := f.mirror(t, nil)

	for i := range 2 {
		got := do(t, noRedirect, http.MethodGet, m.url(f, "/broken.bin"))
		if body := string(got.body); got.status != http.StatusBadGateway || !strings.Contains(body, "unexpected status code: got 500, want 200") {
			t.Fatalf("request %d: status %d, body %q; want 502 with the Blob's message", i, got.status, body)
		}
	}
	if n := len(r.taken(cidn.BlobName(f.key("/broken.bin")))); n != 2 {
		t.Errorf("the runner took %d Blobs of the broken file; want 2 (the failed one is retried)", n)
	}

	for i := range 2 {
		if got := do(t, noRedirect, http.MethodGet, m.url(f, "/missing.bin")); got.status != http.StatusNotFound {
			t.Fatalf("request %d: status %d, body %q; want 404", i, got.status, got.body)
		}
	}
	if n := len(r.taken(cidn.BlobName(f.key("/missing.bin")))); n != 1 {
		t.Errorf("the runner took %d Blobs of the missing file; want 1 (the 404 is remembered)", n)
	}
	if n := m.metric(t, "httpmirror_cidn_blobs_finished_total", map[string]string{"result": "failed"}); n != 3 {
		t.Errorf("blobs failed = %v; want 3", n)
	}
}

// Acceptance 4: a Blob deleted while clients wait for it answers them
// with 502 at once.
func testBlobDeleted(t *testing.T, e *env, r *runner) {
	f := newFixture(t, e, r)
	const path = "/iso/disk.img"
	f.o.Put(path, testutil.Payload(4, 100000))
	m := f.mirror(t, nil)
	name := cidn.BlobName(f.key(path))
	r.hold(name)

	const clients = 5
	statuses := make(chan response, clients)
	for range clients {
		go func() {
			r, err := fetch(noRedirect, http.MethodGet, m.url(f, path))
			if err != nil {
				r.body = []byte(err.Error())
			}
			statuses <- r
		}()
	}
	r.waitHeld(t, name)
	eventually(t, 30*time.Second, "5 waiting clients", func() bool { return m.c.Waiting() == clients })
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.dyn.Resource(cidn.BlobResource).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for range clients {
		select {
		case got := <-statuses:
			if got.status != http.StatusBadGateway || !strings.Contains(string(got.body), "deleted") {
				t.Errorf("status %d, body %q; want 502 saying the transfer was deleted", got.status, got.body)
			}
		case <-time.After(clientTimeout):
			t.Fatal("a client still waits after the Blob was deleted")
		}
	}
	t.Logf("clients answered %s after the deletion", time.Since(start).Round(time.Millisecond))
	r.release(name)
	if n := m.metric(t, "httpmirror_cidn_blobs_finished_total", map[string]string{"result": "deleted"}); n != 1 {
		t.Errorf("blobs deleted = %v; want 1", n)
	}
}

// With CIDNNoWait (--cidn-wait=false), a miss whose Blob still runs is
// proxied from the origin; once the Blob succeeded, requests are hits.
func testNoWait(t *testing.T, e *env, r *runner) {
	f := newFixture(t, e, r)
	const path = "/pkgs/big.deb"
	data := testutil.Payload(5, 500000)
	f.o.Put(path, data)
	m := f.mirror(t, nil, func(h *httpmirror.MirrorHandler) { h.CIDNNoWait = true })
	name := cidn.BlobName(f.key(path))
	r.hold(name)

	got := do(t, noRedirect, http.MethodGet, m.url(f, path))
	if got.status != 200 || sha(got.body) != sha(data) {
		t.Fatalf("while the Blob runs: status %d; want 200 with the file from the origin", got.status)
	}
	r.waitHeld(t, name)
	r.release(name)
	eventually(t, 30*time.Second, "the Blob to succeed", func() bool {
		u := f.blob(t, path)
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return phase == cidn.PhaseSucceeded
	})
	if got := getVia302(t, f, m.url(f, path)); sha(got.body) != sha(data) {
		t.Fatalf("after the Blob: sha256 %s; want %s", sha(got.body), sha(data))
	}
	if n := f.o.Gets.Load(); n != 2 {
		t.Errorf("origin saw %d GETs; want 2 (the proxied request and the runner)", n)
	}
}

// Acceptance 5: with the API server stopped, misses are served by the
// built-in fill engine, and counted.
func TestCIDNAPIServerStopped(t *testing.T) {
	e := newEnv(t)
	r := startRunner(t, e, s3test.Shared(t).Client(), runnerClient(t))
	f := newFixture(t, e, r)
	before, after := testutil.Payload(6, 300000), testutil.Payload(7, 400000)
	f.o.Put("/before.bin", before)
	f.o.Put("/after.bin", after)
	m := f.mirror(t, nil)
	if got := getVia302(t, f, m.url(f, "/before.bin")); sha(got.body) != sha(before) {
		t.Fatalf("through CIDN: sha256 %s; want %s", sha(got.body), sha(before))
	}

	e.stopAPIServer()
	got := do(t, noRedirect, http.MethodGet, m.url(f, "/after.bin"))
	if got.status != 200 || sha(got.body) != sha(after) {
		t.Fatalf("with the API server stopped: status %d, %d bytes; want 200 with the file", got.status, len(got.body))
	}
	if n := m.metric(t, "httpmirror_cidn_fallbacks_total", nil); n != 1 {
		t.Errorf("httpmirror_cidn_fallbacks_total = %v; want 1", n)
	}
	if n := len(r.taken(cidn.BlobName(f.key("/after.bin")))); n != 0 {
		t.Errorf("the runner took %d Blobs of the file; want none", n)
	}
	// The fill engine stored it: the next request is a hit.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.h.WaitFills(ctx); err != nil {
		t.Fatal(err)
	}
	if got := getVia302(t, f, m.url(f, "/after.bin")); sha(got.body) != sha(after) {
		t.Fatalf("stored by the fill engine: sha256 %s; want %s", sha(got.body), sha(after))
	}
	if n := f.o.Gets.Load(); n != 2 {
		t.Errorf("origin saw %d GETs; want 2 (the runner's, the fill engine's)", n)
	}
}

// Acceptance 6: the informer survives an API server restart: a client
// waiting across the restart gets its file when the Blob completes on the
// new server, and the next miss goes through CIDN as before.
func TestCIDNAPIServerRestart(t *testing.T) {
	e := newEnv(t)
	r := startRunner(t, e, s3test.Shared(t).Client(), runnerClient(t))
	f := newFixture(t, e, r)
	across, next := testutil.Payload(8, 1<<20), testutil.Payload(9, 250000)
	f.o.Put("/across.bin", across)
	f.o.Put("/next.bin", next)
	m := f.mirror(t, nil)
	name := cidn.BlobName(f.key("/across.bin"))
	r.hold(name)

	waiting := make(chan response, 1)
	go func() {
		r, err := fetch(following, http.MethodGet, m.url(f, "/across.bin"))
		if err != nil {
			r.body = []byte(err.Error())
		}
		waiting <- r
	}()
	r.waitHeld(t, name)
	eventually(t, 30*time.Second, "the client to wait", func() bool { return m.c.Waiting() == 1 })

	start := time.Now()
	e.restartAPIServer(t)
	t.Logf("API server restarted in %s", time.Since(start).Round(time.Millisecond))
	r.release(name)
	select {
	case got := <-waiting:
		if got.status != 200 || sha(got.body) != sha(across) {
			t.Fatalf("the client that waited across the restart: status %d, sha256 %s; want 200, %s", got.status, sha(got.body), sha(across))
		}
	case <-time.After(clientTimeout):
		t.Fatal("the client that waited across the restart got no answer")
	}
	if got := getVia302(t, f, m.url(f, "/next.bin")); sha(got.body) != sha(next) {
		t.Fatalf("the miss after the restart: sha256 %s; want %s", sha(got.body), sha(next))
	}
	if n := len(r.taken(cidn.BlobName(f.key("/next.bin")))); n != 1 {
		t.Errorf("the runner took %d Blobs of the file after the restart; want 1", n)
	}
	if n := m.metric(t, "httpmirror_cidn_fallbacks_total", nil); n != 0 {
		t.Errorf("httpmirror_cidn_fallbacks_total = %v; want 0", n)
	}
}
