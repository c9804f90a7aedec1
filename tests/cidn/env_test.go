package cidn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	servertesting "k8s.io/apiextensions-apiserver/pkg/cmd/server/testing"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/httpmirror/httpmirror/cidn"
)

// env is a Kubernetes API server serving CIDN's Blob resource: the
// apiextensions-apiserver of k8s.io/apiextensions-apiserver with a CRD
// shaped like CIDN's Blob, on an etcd embedded in the test process. Every
// client reaches it through a TCP proxy on a fixed loopback port, so that
// the server can be stopped and started again (on a new port, as the test
// server picks one) under the same address, with the same etcd data.
//
// Clients authenticate with a client certificate of the system:masters
// group, issued by a CA the server trusts (--client-ca-file): unlike the
// server's loopback token, it stays valid across restarts. The server's
// own certificate is the test server's fixture for 127.0.0.1, the same on
// every start.
type env struct {
	etcd   string // client URL of etcd
	prefix string // etcd prefix of this server's data
	dir    string

	apiFlags []string
	proxy    *tcpProxy

	// kubeconfig is a kubeconfig file for the server, through the proxy.
	kubeconfig string
	// rc is the same configuration, for the test's own clients.
	rc  *rest.Config
	dyn dynamic.Interface

	mu     sync.Mutex
	server *servertesting.TestServer // nil while stopped
}

// newEnv starts etcd and the API server, installs the Blob CRD and waits
// until Blobs can be created. Everything is stopped when t ends.
func newEnv(t *testing.T) *env {
	t.Helper()
	start := time.Now()
	e := &env{dir: t.TempDir(), prefix: "/cidntest-" + randomHex(4)}
	e.etcd = startEtcd(t, filepath.Join(e.dir, "etcd"))

	// Authentication and authorization delegate to a cluster the test
	// server never reaches for these clients: system:masters is always
	// allowed, and certificates are checked locally. It points at a closed
	// loopback port.
	fake := filepath.Join(e.dir, "delegate.kubeconfig")
	writeKubeconfig(t, fake, &clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"none": {Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"none": {}},
		Contexts:       map[string]*clientcmdapi.Context{"none": {Cluster: "none", AuthInfo: "none"}},
		CurrentContext: "none",
	})
	caPEM, certPEM, keyPEM := clientCertificate(t)
	caFile := filepath.Join(e.dir, "client-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	e.apiFlags = []string{
		"--etcd-servers=" + e.etcd,
		"--etcd-prefix=" + e.prefix,
		"--client-ca-file=" + caFile,
		"--authentication-skip-lookup",
		"--authentication-kubeconfig=" + fake,
		"--authorization-kubeconfig=" + fake,
		"--kubeconfig=" + fake,
		// Admission plugins and priority-and-fairness would need a full
		// Kubernetes API behind them.
		"--enable-priority-and-fairness=false",
		"--disable-admission-plugins=NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,MutatingAdmissionPolicy",
	}
	e.proxy = newTCPProxy(t)
	e.startAPIServer(t)
	t.Cleanup(e.stopAPIServer)

	servingCA, err := os.ReadFile(e.servingCertFile())
	if err != nil {
		t.Fatal(err)
	}
	e.rc = &rest.Config{
		Host: "https://" + e.proxy.addr(),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   servingCA,
			CertData: certPEM,
			KeyData:  keyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
	e.kubeconfig = filepath.Join(e.dir, "cidn.kubeconfig")
	writeKubeconfig(t, e.kubeconfig, &clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"cidn": {Server: e.rc.Host, CertificateAuthorityData: servingCA}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"httpmirror": {ClientCertificateData: certPEM, ClientKeyData: keyPEM}},
		Contexts:       map[string]*clientcmdapi.Context{"cidn": {Cluster: "cidn", AuthInfo: "httpmirror"}},
		CurrentContext: "cidn",
	})
	if e.dyn, err = dynamic.NewForConfig(e.rc); err != nil {
		t.Fatal(err)
	}
	e.installCRD(t)
	e.waitBlobsServed(t)
	t.Logf("API server with the Blob CRD ready in %s", time.Since(start).Round(time.Millisecond))
	return e
}

// startAPIServer starts the API server and points the proxy at it.
func (e *env) startAPIServer(t *testing.T) {
	t.Helper()
	s, err := servertesting.StartTestServer(quietLogger{t}, nil, e.apiFlags, nil)
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	e.mu.Lock()
	e.server = &s
	e.mu.Unlock()
	e.proxy.setTarget(s.ClientConfig.Host)
}

// stopAPIServer stops the API server; the proxy then drops every
// connection and refuses new ones, as a stopped server's address would.
func (e *env) stopAPIServer() {
	e.mu.Lock()
	s := e.server
	e.server = nil
	e.mu.Unlock()
	if s == nil {
		return
	}
	e.proxy.setTarget("")
	s.TearDownFn()
}

// restartAPIServer stops the API server and starts a new one on the same
// etcd data, then waits until it serves Blobs again.
func (e *env) restartAPIServer(t *testing.T) {
	t.Helper()
	e.stopAPIServer()
	e.startAPIServer(t)
	e.waitBlobsServed(t)
}

func (e *env) servingCertFile() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.server.ServerOpts.RecommendedOptions.SecureServing.ServerCert.CertKey.CertFile
}

// blobCRD is a CustomResourceDefinition matching CIDN's Blob: cluster
// scoped, with a status subresource and status.phase and
// status.handlerName as selectable fields. The schema names the fields
// httpmirror writes and keeps the rest open.
func blobCRD() *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	str := apiextensionsv1.JSONSchemaProps{Type: "string"}
	integer := apiextensionsv1.JSONSchemaProps{Type: "integer", Format: "int64"}
	boolean := apiextensionsv1.JSONSchemaProps{Type: "boolean"}
	object := func(required []string, props map[string]apiextensionsv1.JSONSchemaProps) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "object", Required: required, Properties: props, XPreserveUnknownFields: &preserve}
	}
	list := func(item apiextensionsv1.JSONSchemaProps) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &item}}
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: cidn.BlobResource.Resource + "." + cidn.Group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: cidn.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "blobs", Singular: "blob", Kind: cidn.Kind, ListKind: cidn.Kind + "List"},
			Scope: apiextensionsv1.ClusterScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name:         cidn.Version,
				Served:       true,
				Storage:      true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				SelectableFields: []apiextensionsv1.SelectableField{
					{JSONPath: ".status.phase"},
					{JSONPath: ".status.handlerName"},
				},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{
						"spec": object([]string{"source", "destination"}, map[string]apiextensionsv1.JSONSchemaProps{
							"source":           list(object([]string{"url"}, map[string]apiextensionsv1.JSONSchemaProps{"url": str})),
							"destination":      list(object([]string{"name", "path"}, map[string]apiextensionsv1.JSONSchemaProps{"name": str, "path": str, "skipIfExists": boolean})),
							"maximumRunning":   integer,
							"minimumChunkSize": integer,
						}),
						"status": object(nil, map[string]apiextensionsv1.JSONSchemaProps{
							"phase":       str,
							"handlerName": str,
							"progress":    integer,
							"total":       integer,
						}),
					},
				}},
			}},
		},
	}
}

// installCRD creates the Blob CRD and waits until it is Established.
func (e *env) installCRD(t *testing.T) {
	t.Helper()
	client, err := apiextensionsclient.NewForConfig(e.rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	if _, err := crds.Create(ctx, blobCRD(), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the Blob CRD: %v", err)
	}
	w, err := crds.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + blobCRD().Name})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		crd, ok := ev.Object.(*apiextensionsv1.CustomResourceDefinition)
		if !ok {
			continue
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return
			}
		}
	}
	t.Fatalf("the Blob CRD was not established: %v", ctx.Err())
}

// waitBlobsServed creates and deletes a probe Blob until that works. An
// established CRD can still refuse the first creates for a moment (its
// handler is installed asynchronously), and a restarted server loads its
// CRDs anew; this bounded retry is the synchronisation, not a fixed pause.
func (e *env) waitBlobsServed(t *testing.T) {
	t.Helper()
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cidn.Group + "/" + cidn.Version,
		"kind":       cidn.Kind,
		"metadata":   map[string]any{"name": "probe-" + randomHex(4)},
		"spec": map[string]any{
			"source":      []any{map[string]any{"url": "https://probe.invalid/"}},
			"destination": []any{map[string]any{"name": "probe", "path": "probe"}},
		},
		// A phase the test runner leaves alone.
		"status": map[string]any{"phase": cidn.PhaseUnknown},
	}}
	blobs := e.dyn.Resource(cidn.BlobResource)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := blobs.Create(ctx, probe, metav1.CreateOptions{})
		if err == nil {
			err = blobs.Delete(ctx, probe.GetName(), metav1.DeleteOptions{})
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Blobs not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startEtcd starts an etcd member in the test process, listening on
// loopback ports the system picks, and returns its client URL.
func startEtcd(t *testing.T, dir string) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "cidntest"
	cfg.Dir = dir
	cfg.Logger = "zap"
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(filepath.Dir(dir), "etcd.log")}
	cfg.UnsafeNoFsync = true // test data: durability buys nothing
	local, _ := url.Parse("http://127.0.0.1:0")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*local}, []url.URL{*local}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*local}, []url.URL{*local}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("starting etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("etcd not ready after 60s")
	}
	return "http://" + e.Clients[0].Addr().String()
}

// clientCertificate returns a CA and a client certificate with its key,
// PEM-encoded, for the user httpmirror-test in the group system:masters.
func clientCertificate(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cidntest client CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "httpmirror-test", Organization: []string{"system:masters"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}

func writeKubeconfig(t *testing.T, path string, cfg *clientcmdapi.Config) {
	t.Helper()
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

// quietLogger passes the test server's progress lines to t.Log only when
// the test fails or runs verbosely, as t.Log does; its errors fail the
// test.
type quietLogger struct{ t *testing.T }

func (l quietLogger) Errorf(format string, args ...any) { l.t.Errorf(format, args...) }
func (l quietLogger) Fatalf(format string, args ...any) { l.t.Fatalf(format, args...) }
func (l quietLogger) Logf(format string, args ...any)   { l.t.Logf(format, args...) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}
