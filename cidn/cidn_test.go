package cidn

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/httpmirror/httpmirror"
)

// The Client's behaviour against a real Kubernetes API server is tested in
// the tests/cidn module, which keeps the API server's dependencies out of
// this module.

func TestBlobName(t *testing.T) {
	// printf example.com/a/b.tgz | md5sum
	if got, want := BlobName("example.com/a/b.tgz"), "81c8c5a646b2ccca6b778bd8ec8ef4bb"; got != want {
		t.Errorf("BlobName = %s; want %s", got, want)
	}
}

func TestNewBlob(t *testing.T) {
	c := &Client{cfg: Config{Destination: "s3", MaximumRunning: 10, MinimumChunkSize: 128 << 20, TTL: time.Hour}}
	u := c.newBlob("n", "root/example.com/a/b.tgz", "https://example.com/a/b.tgz")
	if u.GetAPIVersion() != "task.opencidn.daocloud.io/v1alpha1" || u.GetKind() != "Blob" || u.GetName() != "n" || u.GetNamespace() != "" {
		t.Errorf("object %s %s %s/%s; want a cluster-scoped Blob n", u.GetAPIVersion(), u.GetKind(), u.GetNamespace(), u.GetName())
	}
	want := map[string]string{
		AnnotationDisplayName: "https://example.com/a/b.tgz",
		AnnotationGroup:       "example.com",
		AnnotationTags:        "httpmirror",
		AnnotationTTL:         "1h",
	}
	if got := u.GetAnnotations(); !reflect.DeepEqual(got, want) {
		t.Errorf("annotations %v; want %v", got, want)
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	wantSpec := map[string]any{
		"source":           []any{map[string]any{"url": "https://example.com/a/b.tgz"}},
		"destination":      []any{map[string]any{"name": "s3", "path": "root/example.com/a/b.tgz", "skipIfExists": true}},
		"maximumRunning":   int64(10),
		"minimumChunkSize": int64(128 << 20),
	}
	if !reflect.DeepEqual(spec, wantSpec) {
		t.Errorf("spec %#v; want %#v", spec, wantSpec)
	}
	// Zero tuning leaves CIDN's defaults.
	c.cfg.MaximumRunning, c.cfg.MinimumChunkSize = 0, 0
	spec, _, _ = unstructured.NestedMap(c.newBlob("n", "p", "https://h.example/x").Object, "spec")
	if _, ok := spec["maximumRunning"]; ok {
		t.Errorf("spec %v sets maximumRunning; want CIDN's default", spec)
	}
}

func TestFormatTTL(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 90 * time.Minute: "1h30m", 2*time.Hour + 5*time.Second: "2h0m5s", 30 * time.Second: "30s", 10 * time.Minute: "10m",
	} {
		if got := formatTTL(d); got != want {
			t.Errorf("formatTTL(%s) = %q; want %q", d, got, want)
		}
	}
}

func TestFailure(t *testing.T) {
	blob := func(conds ...any) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": "Failed", "conditions": conds}}}
	}
	cond := func(typ, reason, msg string) map[string]any {
		return map[string]any{"type": typ, "reason": reason, "message": msg}
	}
	for _, c := range []struct {
		name string
		u    *unstructured.Unstructured
		want httpmirror.CIDNError
	}{
		{"head chunk 404", blob(cond("Process", "", "unexpected status code: got 404, want 200")),
			httpmirror.CIDNError{Message: "unexpected status code: got 404, want 200", SourceStatus: 404}},
		{"status code", blob(cond("Process", "", "source returned error status code: 410")),
			httpmirror.CIDNError{Message: "source returned error status code: 410", SourceStatus: 410}},
		{"server error", blob(cond("Process", "", "server error (status 503)")),
			httpmirror.CIDNError{Message: "server error (status 503)"}},
		{"want is not got", blob(cond("Process", "", "unexpected status code: got 200, want 404")),
			httpmirror.CIDNError{Message: "unexpected status code: got 200, want 404"}},
		{"reason", blob(cond("Source", "NotFound", "no such file")),
			httpmirror.CIDNError{Message: "no such file", SourceStatus: 404}},
		{"retryable marker skipped", blob(cond("Retryable", "", "Retryable, Retry count: 3"), cond("Process", "", "network error occurred: EOF")),
			httpmirror.CIDNError{Message: "network error occurred: EOF"}},
		{"size in message", blob(cond("SizeMismatch", "", "total size of uploaded parts (404) does not match expected total (410)")),
			httpmirror.CIDNError{Message: "total size of uploaded parts (404) does not match expected total (410)"}},
		{"no condition", blob(), httpmirror.CIDNError{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := statusOf(c.u)
			if st.Phase != PhaseFailed {
				t.Fatalf("phase %q; want Failed", st.Phase)
			}
			if got := failure(st); *got != c.want {
				t.Errorf("failure = %+v; want %+v", *got, c.want)
			}
		})
	}
}

func TestStatusOfMalformed(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": int64(3)}}}
	if st := statusOf(u); st.Phase != "" {
		t.Errorf("phase %q; want none for a status that does not decode", st.Phase)
	}
}

func TestTrim(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"spec":   map[string]any{"source": []any{map[string]any{"url": "https://x.example/a"}}},
		"status": map[string]any{"phase": "Running"},
	}}
	u.SetName("n")
	u.SetUID("u1")
	u.SetManagedFields(nil)
	u.SetAnnotations(map[string]string{AnnotationDisplayName: "x"})
	out, err := trim(u)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*unstructured.Unstructured)
	if got.GetName() != "n" || got.GetUID() != "u1" || statusOf(got).Phase != "Running" || got.Object["spec"] != nil || got.GetAnnotations() != nil {
		t.Errorf("trimmed %v; want name, UID and status only", got.Object)
	}
}

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: cidn
  cluster:
    server: https://cidn.example:6443
    certificate-authority-data: %s
contexts:
- name: cidn
  context: {cluster: cidn, user: httpmirror}
current-context: cidn
users:
- name: httpmirror
  user: {token: secret-token}
`

func TestRESTConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	// Any base64 will do: the CA is parsed only when a connection is made.
	if err := os.WriteFile(path, []byte(fmtKubeconfig("Y2E=")), 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := RESTConfig(path, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://cidn.example:6443" || rc.BearerToken != "secret-token" || string(rc.CAData) != "ca" || rc.QPS != 50 {
		t.Errorf("config %s, token %q, CA %q, QPS %v; want the kubeconfig's, QPS 50", rc.Host, rc.BearerToken, rc.CAData, rc.QPS)
	}
	rc, err = RESTConfig(path, "https://127.0.0.1:7443", true)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://127.0.0.1:7443" || !rc.Insecure || len(rc.CAData) != 0 || rc.BearerToken != "secret-token" {
		t.Errorf("with master and insecure: host %s, insecure %v, CA %q; want the master, no verification", rc.Host, rc.Insecure, rc.CAData)
	}
	rc, err = RESTConfig("", "http://127.0.0.1:8001", false)
	if err != nil || rc.Host != "http://127.0.0.1:8001" {
		t.Errorf("master only: %v, %v", rc, err)
	}
	if _, err := RESTConfig(filepath.Join(t.TempDir(), "missing"), "", false); err == nil {
		t.Error("a missing kubeconfig was accepted")
	}
	if _, err := RESTConfig("", "", false); err == nil {
		t.Error("no kubeconfig and no master was accepted")
	}
}

func fmtKubeconfig(ca string) string { return fmt.Sprintf(kubeconfig, ca) }
