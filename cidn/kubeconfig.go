package cidn

import (
	"errors"
	"fmt"
	"log/slog"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// RESTConfig returns the client configuration of the CIDN API server, as
// kubectl builds it from --kubeconfig and --server: the kubeconfig file's
// current context, whose server master replaces when set. insecure skips
// the verification of the server's certificate. At least one of kubeconfig
// and master must be set; the default kubeconfig locations and in-cluster
// configuration are not consulted, so that CIDN is used only when asked
// for.
func RESTConfig(kubeconfig, master string, insecure bool) (*rest.Config, error) {
	if kubeconfig == "" && master == "" {
		return nil, errors.New("cidn: neither a kubeconfig nor a master URL")
	}
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
	overrides := &clientcmd.ConfigOverrides{}
	overrides.ClusterInfo.Server = master
	// clientcmd drops the kubeconfig's CA when this override is set, as
	// kubectl --insecure-skip-tls-verify does.
	overrides.ClusterInfo.InsecureSkipTLSVerify = insecure
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("cidn: kubeconfig: %w", err)
	}
	// client-go's default of 5 requests a second would queue a burst of
	// misses behind each other; every miss of a cold file costs one or
	// two requests.
	if rc.QPS == 0 {
		rc.QPS = 50
	}
	if rc.Burst == 0 {
		rc.Burst = 100
	}
	rc.UserAgent = "httpmirror"
	return rc, nil
}

// SetKlogLogger sends the log lines of the Kubernetes client libraries
// (watch errors and reconnections) to log, instead of klog's own format on
// standard error. It changes process-wide state: main calls it once.
func SetKlogLogger(log *slog.Logger) {
	klog.SetSlogLogger(log)
}
