package deploy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/httpmirror/httpmirror/internal/config"
)

const (
	kubeDir    = "kubernetes"
	unitFile   = "systemd/httpmirror.service"
	dockerfile = "../Dockerfile"
)

// strict decodes Kubernetes objects as the API server's strict field
// validation does: an unknown or duplicate field is an error, so that a
// misspelt field (imagePullPolcy) fails here instead of being dropped
// without a word by kubectl apply.
var strict = serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()

// kustomization is the part of kustomize's Kustomization the base uses;
// decoded strictly, so a field kustomize does not know fails too.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// files is a deployment's files by path: the real ones, or a test's
// broken copy.
type files map[string][]byte

// readFiles reads the Kubernetes base, the systemd unit and the
// Dockerfile.
func readFiles(t *testing.T) files {
	t.Helper()
	f := files{}
	entries, err := os.ReadDir(kubeDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(kubeDir, e.Name())
		if f[p], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{unitFile, dockerfile} {
		if f[p], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// check runs every check on f and returns the errors found.
func check(f files) []error {
	var errs []error
	objs, err := checkKubernetes(f)
	if err != nil {
		errs = append(errs, err)
	}
	for _, o := range objs {
		if err := checkPodCommand(o); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkUnit(f[unitFile]); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", unitFile, err))
	}
	if _, err := dockerArgs(f[dockerfile]); err != nil {
		errs = append(errs, fmt.Errorf("Dockerfile: %w", err))
	}
	return errs
}

// checkKubernetes decodes the kustomization and every manifest strictly,
// checks that the kustomization lists every manifest and only files that
// exist, and returns the objects.
func checkKubernetes(f files) ([]runtime.Object, error) {
	var k kustomization
	kpath := filepath.Join(kubeDir, "kustomization.yaml")
	if err := yaml.UnmarshalStrict(f[kpath], &k); err != nil {
		return nil, fmt.Errorf("%s: %w", kpath, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion %q kind %q; want kustomize.config.k8s.io/v1beta1 Kustomization", kpath, k.APIVersion, k.Kind)
	}
	for i, r := range k.Resources {
		if _, ok := f[filepath.Join(kubeDir, r)]; !ok {
			return nil, fmt.Errorf("%s: resource %s does not exist", kpath, r)
		}
		if slices.Contains(k.Resources[:i], r) {
			return nil, fmt.Errorf("%s: resource %s listed twice", kpath, r)
		}
	}
	var objs []runtime.Object
	paths := mapsKeys(f)
	slices.Sort(paths)
	for _, p := range paths {
		if filepath.Dir(p) != kubeDir || p == kpath {
			continue
		}
		if !slices.Contains(k.Resources, filepath.Base(p)) {
			return nil, fmt.Errorf("%s is not listed in %s", p, kpath)
		}
		for i, doc := range splitYAML(f[p]) {
			obj, _, err := strict.Decode(doc, nil, nil)
			if err != nil {
				return nil, fmt.Errorf("%s, document %d: %w", p, i+1, err)
			}
			objs = append(objs, obj)
		}
	}
	for _, img := range k.Images {
		if !slices.ContainsFunc(objs, func(o runtime.Object) bool { return usesImage(o, img.Name) }) {
			return nil, fmt.Errorf("%s: image %s is used by no container", kpath, img.Name)
		}
	}
	return objs, nil
}

func mapsKeys(f files) []string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	return keys
}

// splitYAML splits a file of YAML documents separated by "---" lines,
// leaving out empty ones (comments only).
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	var cur strings.Builder
	flush := func() {
		for line := range strings.SplitSeq(cur.String(), "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, []byte(cur.String()))
				break
			}
		}
		cur.Reset()
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if strings.TrimRight(line, " ") == "---" {
			flush()
			continue
		}
		cur.WriteString(line + "\n")
	}
	flush()
	return docs
}

// podSpec returns the pod template of the workload kinds, nil for others.
func podSpec(o runtime.Object) *corev1.PodSpec {
	switch o := o.(type) {
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return &o.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec
	case *corev1.Pod:
		return &o.Spec
	}
	return nil
}

func usesImage(o runtime.Object, name string) bool {
	ps := podSpec(o)
	if ps == nil {
		return false
	}
	return slices.ContainsFunc(ps.Containers, func(c corev1.Container) bool {
		img, _, _ := strings.Cut(c.Image, "@")
		return img == name || strings.HasPrefix(img, name+":")
	})
}

// checkPodCommand checks the flags and HTTPMIRROR_ variables every
// container of a workload passes against the command's configuration.
func checkPodCommand(o runtime.Object) error {
	ps := podSpec(o)
	if ps == nil {
		return nil
	}
	for _, c := range ps.Containers {
		args := c.Args
		if len(c.Command) > 0 {
			args = append(slices.Clone(c.Command[1:]), c.Args...)
		}
		if err := config.CheckArgs(args); err != nil {
			return fmt.Errorf("container %s: args: %w", c.Name, err)
		}
		for _, e := range c.Env {
			var err error
			if e.ValueFrom != nil {
				err = config.CheckEnviron([]string{e.Name}) // the name only: the value is elsewhere
			} else {
				err = config.CheckEnv(e.Name, e.Value)
			}
			if err != nil {
				return fmt.Errorf("container %s: env: %w", c.Name, err)
			}
		}
	}
	return nil
}

// unitDirectives returns the directives of a systemd unit, with
// continuation lines joined, in order.
func unitDirectives(data []byte) [][2]string {
	var out [][2]string
	var cur string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "[")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		cur += line
		k, v, _ := strings.Cut(cur, "=")
		out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		cur = ""
	}
	return out
}

// unitWords splits a systemd command line or Environment= value into
// words as systemd does for the cases used here: whitespace separates,
// double or single quotes group.
func unitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	var quote rune
	inWord := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// checkUnit checks the unit's ExecStart flags and Environment= variables.
func checkUnit(data []byte) error {
	execs := 0
	for _, d := range unitDirectives(data) {
		switch d[0] {
		case "ExecStart":
			execs++
			words, err := unitWords(strings.TrimLeft(d[1], "-@:+!"))
			if err != nil || len(words) == 0 {
				return fmt.Errorf("ExecStart: %v", err)
			}
			if filepath.Base(words[0]) != "httpmirror" {
				return fmt.Errorf("ExecStart runs %s; want httpmirror", words[0])
			}
			if err := config.CheckArgs(words[1:]); err != nil {
				return fmt.Errorf("ExecStart: %w", err)
			}
		case "Environment":
			words, err := unitWords(d[1])
			if err != nil {
				return fmt.Errorf("Environment: %v", err)
			}
			for _, w := range words {
				name, value, _ := strings.Cut(w, "=")
				if err := config.CheckEnv(name, value); err != nil {
					return fmt.Errorf("Environment: %w", err)
				}
			}
		}
	}
	if execs != 1 {
		return fmt.Errorf("%d ExecStart lines; want 1", execs)
	}
	return nil
}

// dockerArgs returns the flags the image runs with by default (ENTRYPOINT
// after the binary, then CMD) after checking them and the ENV variables.
// ENTRYPOINT and CMD must be in exec (JSON) form: the image has no shell.
func dockerArgs(data []byte) ([]string, error) {
	var entry, cmd []string
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		instr, rest, _ := strings.Cut(line, " ")
		var dst *[]string
		switch strings.ToUpper(instr) {
		case "FROM":
			entry, cmd = nil, nil // a new stage: only the last one's count
			continue
		case "ENTRYPOINT":
			dst = &entry
		case "CMD":
			dst = &cmd
		case "ENV":
			for _, w := range strings.Fields(rest) {
				name, value, _ := strings.Cut(w, "=")
				if err := config.CheckEnv(name, strings.Trim(value, `"`)); err != nil {
					return nil, fmt.Errorf("ENV: %w", err)
				}
			}
			continue
		default:
			continue
		}
		if err := json.Unmarshal([]byte(rest), dst); err != nil {
			return nil, fmt.Errorf("%s %s: want the exec form, a JSON array (the image has no shell): %v", instr, rest, err)
		}
	}
	if len(entry) == 0 || filepath.Base(entry[0]) != "httpmirror" {
		return nil, fmt.Errorf("ENTRYPOINT %q; want the httpmirror binary first", entry)
	}
	args := append(slices.Clone(entry[1:]), cmd...)
	if err := config.CheckArgs(args); err != nil {
		return nil, fmt.Errorf("ENTRYPOINT and CMD: %w", err)
	}
	return args, nil
}

// Every manifest decodes strictly, the kustomization lists exactly the
// manifests, and every flag and variable the manifests, the systemd unit
// and the Dockerfile pass is one the command takes, with a value of the
// right kind.
func TestDeploymentFiles(t *testing.T) {
	for _, err := range check(readFiles(t)) {
		t.Error(err)
	}
}

// The checks fail on a broken copy of the files: each case breaks one
// file in memory and names the error it must cause.
func TestDeploymentChecksFail(t *testing.T) {
	deployment := filepath.Join(kubeDir, "deployment.yaml")
	service := filepath.Join(kubeDir, "service.yaml")
	kpath := filepath.Join(kubeDir, "kustomization.yaml")
	for _, c := range []struct {
		name, file, old, new string
		want                 string // in one of the errors
	}{
		{"unknown field", deployment, "imagePullPolicy:", "imagePullPolcy:", `unknown field "spec.template.spec.containers[0].imagePullPolcy"`},
		{"duplicate field", service, "  type: ClusterIP\n", "  type: ClusterIP\n  type: NodePort\n", `key "type" already set`},
		{"wrong type", deployment, "replicas: 3", "replicas: three", "replicas"},
		{"unknown kind", service, "kind: Service", "kind: Servce", `no kind "Servce"`},
		{"bogus flag", deployment, "- --host-from-first-path", "- --host-from-frist-path", "unknown flag --host-from-frist-path (did you mean --host-from-first-path?)"},
		{"duration without unit", deployment, "value: 30s", "value: \"30\"", `invalid value "30" for HTTPMIRROR_LEASE_DURATION: want a duration`},
		{"bogus variable", deployment, "name: HTTPMIRROR_ALLOW_HOST", "name: HTTPMIRROR_ALLOWED_HOSTS", "unknown environment variable HTTPMIRROR_ALLOWED_HOSTS"},
		{"stray argument", deployment, "- --log-format=json", "- --log-format\n            - json\n            - serve", `unexpected argument "serve"`},
		{"kustomization unknown field", kpath, "resources:", "resource:", `unknown field "resource"`},
		{"resource missing", kpath, "  - networkpolicy.yaml\n", "  - networkpolicy.yaml\n  - ingress.yaml\n", "resource ingress.yaml does not exist"},
		{"manifest not listed", kpath, "  - poddisruptionbudget.yaml\n", "", "poddisruptionbudget.yaml is not listed"},
		{"image not used", kpath, "name: ghcr.io/httpmirror/httpmirror", "name: ghcr.io/example/other", "image ghcr.io/example/other is used by no container"},
		{"unit bogus flag", unitFile, "--cache-max-size 100GiB", "--cache-max-szie 100GiB", "unknown flag --cache-max-szie"},
		{"unit bad size", unitFile, "--cache-max-size 100GiB", "--cache-max-size lots", `invalid value "lots" for --cache-max-size`},
		{"unit bogus variable", unitFile, "EnvironmentFile=", "Environment=HTTPMIRROR_LOGLEVEL=debug\nEnvironmentFile=", "unknown environment variable HTTPMIRROR_LOGLEVEL"},
		{"docker bogus flag", dockerfile, `"--host-from-first-path"`, `"--host-from-path"`, "unknown flag --host-from-path"},
		{"docker shell form", dockerfile, `CMD ["--address", ":8080",`, `CMD --address :8080 ["x",`, "want the exec form"},
		{"docker bogus variable", dockerfile, "USER 65532:65532", "ENV HTTPMIRROR_STORAGE=file:///x\nUSER 65532:65532", "unknown environment variable HTTPMIRROR_STORAGE"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := readFiles(t)
			if !strings.Contains(string(f[c.file]), c.old) {
				t.Fatalf("%s does not contain %q: update the case", c.file, c.old)
			}
			f[c.file] = []byte(strings.Replace(string(f[c.file]), c.old, c.new, 1))
			errs := check(f)
			if !slices.ContainsFunc(errs, func(err error) bool { return strings.Contains(err.Error(), c.want) }) {
				t.Errorf("errors %v; want one containing %q", errs, c.want)
			}
		})
	}
}

// objects decodes the base's objects (checked by TestDeploymentFiles).
func objects(t *testing.T) []runtime.Object {
	t.Helper()
	objs, err := checkKubernetes(readFiles(t))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func find[T runtime.Object](objs []runtime.Object, name string) T {
	for _, o := range objs {
		if v, ok := o.(T); ok && o.(interface{ GetName() string }).GetName() == name {
			return v
		}
	}
	var zero T
	return zero
}

// flagValue returns the value of --name in args (--name=v or --name v).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func portOf(addr string) int32 {
	i := strings.LastIndex(addr, ":")
	n, _ := strconv.Atoi(addr[i+1:])
	return int32(n)
}

// The Deployment runs several replicas on one bucket with the peer
// listener, probes /healthz and /readyz on the admin port, is scraped
// there, runs as non-root on a read-only root file system, and the
// Services, the PodDisruptionBudget and the Secret fit it.
func TestKubernetesShape(t *testing.T) {
	objs := objects(t)
	d := find[*appsv1.Deployment](objs, "httpmirror")
	if d == nil {
		t.Fatal("no Deployment httpmirror")
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v; want 2 or more sharing the bucket", d.Spec.Replicas)
	}
	pod := d.Spec.Template
	c := pod.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for flag, port := range map[string]string{"address": "http", "admin-address": "admin", "peer-address": "peer"} {
		if got := portOf(flagValue(c.Args, flag)); got == 0 || got != ports[port] {
			t.Errorf("--%s port %d; want the container port %s (%d)", flag, got, port, ports[port])
		}
	}
	if adv := flagValue(c.Args, "advertise-url"); !strings.Contains(adv, "$(POD_IP)") || portOf(adv) != ports["peer"] {
		t.Errorf("--advertise-url %q; want the pod IP and the peer port", adv)
	}
	if !strings.HasPrefix(env["HTTPMIRROR_STORAGE_URL"], "s3://") || strings.Contains(env["HTTPMIRROR_STORAGE_URL"], "@") {
		t.Errorf("storage %q; want an s3:// bucket without credentials in the URL", env["HTTPMIRROR_STORAGE_URL"])
	}
	if env["HTTPMIRROR_ALLOW_HOST"] == "" {
		t.Error("no HTTPMIRROR_ALLOW_HOST: the mirror would be open to every host")
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		want := "/healthz"
		if name == "readiness" {
			want = "/readyz"
		}
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want || p.HTTPGet.Port.String() != "admin" {
			t.Errorf("%s probe %+v; want GET %s on the admin port", name, p, want)
		}
	}
	if a := pod.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(int(ports["admin"])) || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("annotations %v; want Prometheus to scrape /metrics on the admin port", a)
	}
	psc, csc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod security context %+v; want a numeric non-root user", psc)
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
		t.Errorf("container security context %+v; want a read-only root, no privilege escalation, no capabilities", csc)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
		t.Error("no writable /tmp for spool files on the read-only root")
	}

	// Services select the pods and reach named container ports; one
	// carries the peer port.
	peerService := false
	for _, o := range objs {
		s, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		for k, v := range s.Spec.Selector {
			if pod.Labels[k] != v {
				t.Errorf("Service %s selects %s=%s, which the pods lack", s.Name, k, v)
			}
		}
		for _, p := range s.Spec.Ports {
			if _, ok := ports[p.TargetPort.String()]; !ok {
				t.Errorf("Service %s port %s targets %s, no container port", s.Name, p.Name, p.TargetPort.String())
			}
			peerService = peerService || p.TargetPort.String() == "peer"
		}
	}
	if !peerService {
		t.Error("no Service carries the peer port")
	}
	pdb := find[*policyv1.PodDisruptionBudget](objs, "httpmirror")
	if pdb == nil || pdb.Spec.Selector == nil {
		t.Fatal("no PodDisruptionBudget httpmirror with a selector")
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("PodDisruptionBudget selects %s=%s, which the pods lack", k, v)
		}
	}

	// The Secret holds every key the pods read, and its admin token
	// placeholder is refused at start: an unedited Secret does not run
	// with a token everyone can read here.
	sec := find[*corev1.Secret](objs, "httpmirror")
	if sec == nil {
		t.Fatal("no Secret httpmirror")
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil {
			for _, it := range v.Secret.Items {
				if _, ok := sec.StringData[it.Key]; !ok {
					t.Errorf("volume %s reads key %s, which the Secret lacks", v.Name, it.Key)
				}
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			if _, ok := sec.StringData[e.ValueFrom.SecretKeyRef.Key]; !ok {
				t.Errorf("env %s reads key %s, which the Secret lacks", e.Name, e.ValueFrom.SecretKeyRef.Key)
			}
		}
	}
	if flagValue(c.Args, "admin-token-file") == "" || flagValue(c.Args, "peer-secret-file") == "" {
		t.Error("the admin tokens and the peer secret must come from files of the Secret")
	}
	if _, err := config.ParseTokens(strings.NewReader(sec.StringData["admin-tokens"])); err == nil {
		t.Error("the Secret's placeholder admin token is accepted; want it refused until replaced")
	}
}

// The image is static, has no shell, runs as a numeric non-root user and
// exposes the port its default command listens on.
func TestDockerfileShape(t *testing.T) {
	data, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	args, err := dockerArgs(data)
	if err != nil {
		t.Fatal(err)
	}
	var from, user, expose string
	stages := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		instr, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch instr {
		case "FROM":
			stages++
			from = rest
		case "USER":
			user = rest
		case "EXPOSE":
			expose = rest
		}
	}
	if stages < 2 || !(strings.Contains(from, "distroless/static") || from == "scratch") {
		t.Errorf("%d stages, final FROM %q; want a multi-stage build ending on distroless static or scratch", stages, from)
	}
	if !strings.Contains(string(data), "CGO_ENABLED=0") {
		t.Error("the binary is not built with CGO_ENABLED=0: it would need libc")
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q; want a numeric non-root user", user)
	}
	port := strconv.Itoa(int(portOf(flagValue(args, "address"))))
	if !slices.Contains(strings.Fields(expose), port) {
		t.Errorf("EXPOSE %q lacks the --address port %s", expose, port)
	}
}

// The unit runs sandboxed: its own user, a cache directory of its own,
// a read-only system, no capabilities, the service system calls only.
func TestSystemdUnitShape(t *testing.T) {
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, d := range unitDirectives(data) {
		got[d[0]] = append(got[d[0]], d[1])
	}
	for k, want := range map[string]string{
		"DynamicUser": "yes", "CacheDirectory": "httpmirror", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "", "SystemCallFilter": "@system-service",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "PrivateDevices": "yes",
	} {
		if !slices.Contains(got[k], want) {
			t.Errorf("%s=%v; want %q among them", k, got[k], want)
		}
	}
	words, _ := unitWords(got["ExecStart"][0])
	if s := flagValue(words, "storage-url"); s != "file:///var/cache/httpmirror" {
		t.Errorf("--storage-url %q; want the CacheDirectory, file:///var/cache/httpmirror", s)
	}
	if a := flagValue(words, "admin-address"); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("--admin-address %q; want loopback (no tokens configured)", a)
	}
}

// parse parses a deployment's command line and environment as the
// command does at start, with the flags checked against each other: the
// files the flags name are replaced by files of the test (an admin token
// file with a real token) and $(POD_IP) by an address.
func parse(t *testing.T, args []string, env map[string]string) *config.Config {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	if err := os.WriteFile(tokens, []byte("0123456789abcdef0123456789abcdef operator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := 0; i < len(args); i++ {
		a := strings.ReplaceAll(args[i], "$(POD_IP)", "10.0.0.7")
		if a == "--admin-token-file" {
			i++
		}
		if strings.HasPrefix(a, "--admin-token-file") {
			a = "--admin-token-file=" + tokens
		}
		out = append(out, a)
	}
	cfg, err := config.Parse(out, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatalf("the command refuses %q with %v: %v", out, env, err)
	}
	return cfg
}

// Taken together, the flags and variables of each deployment are a
// configuration the command accepts, and the one meant: replicas on one
// bucket with tokens on the admin listener, the unit's local disk cache
// with the admin listener on loopback, the image's disk cache.
func TestDeploymentsParse(t *testing.T) {
	d := find[*appsv1.Deployment](objects(t), "httpmirror")
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	cfg := parse(t, c.Args, env)
	if !cfg.ClusterEnabled() || !strings.HasPrefix(cfg.StorageURL, "s3://") || len(cfg.AllowHost) == 0 || len(cfg.AdminTokens) == 0 || cfg.AdminExposed() {
		t.Errorf("Deployment: cluster %v, storage %q, allow %q, %d tokens, admin exposed %v; want replicas on s3 with an allow list and admin tokens",
			cfg.ClusterEnabled(), cfg.StorageURL, cfg.AllowHost, len(cfg.AdminTokens), cfg.AdminExposed())
	}

	data, _ := os.ReadFile(unitFile)
	for _, dir := range unitDirectives(data) {
		if dir[0] == "ExecStart" {
			words, _ := unitWords(dir[1])
			cfg := parse(t, words[1:], nil)
			if cfg.StorageURL != "file:///var/cache/httpmirror" || cfg.StorageDefault || len(cfg.AllowHost) == 0 || cfg.CacheMaxSize == 0 {
				t.Errorf("unit: storage %q (default %v), allow %q, size limit %d", cfg.StorageURL, cfg.StorageDefault, cfg.AllowHost, cfg.CacheMaxSize)
			}
		}
	}

	data, _ = os.ReadFile(dockerfile)
	args, err := dockerArgs(data)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := parse(t, args, nil); cfg.StorageURL != "file:///var/cache/httpmirror" || cfg.StorageDefault {
		t.Errorf("image: storage %q; want the image's volume", cfg.StorageURL)
	}
}
