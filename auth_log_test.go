package httpmirror_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// No credential reaches the logs (at debug level, access log included),
// the metrics or the cache directory, whatever happens to the requests
// that carry them: fills streamed and stored, checks allowed, denied and
// failing, redirects.
func TestCredentialsNeverLogged(t *testing.T) {
	const wrong = "Bearer wrong-93b7d51f"
	o := gatedOrigin(t)
	data := payload(150, 60000)
	o.Put("/gated.bin", data)
	o.Put("/other.bin", data)
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	metrics := httpmirror.NewMetrics(reg)
	m := newMirror(t, o, withAuthCache, func(m *httpmirror.MirrorHandler) {
		m.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		m.Metrics = metrics
	})
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.URL.Path == "/redirect" && r.Header.Get("Authorization") == goodToken {
			http.Redirect(w, r, "/gated.bin", http.StatusFound)
			return true
		}
		if r.URL.Path == "/down" {
			http.Error(w, "down", http.StatusBadGateway)
			return true
		}
		return gate(w, r, f)
	})
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/gated.bin", goodToken, 200},
		{"/gated.bin", wrong, 401},
		{"/gated.bin", "", 401},
		{"/redirect", goodToken, 200},
		{"/missing", wrong, 401},
		{"/down", goodToken, 502},
		{"/other.bin", wrong, 401},
	} {
		var h http.Header
		if c.token != "" {
			h = bearer(c.token)
		}
		if r := do(t, "GET", m.url(o, c.path), h); r.StatusCode != c.want {
			t.Errorf("%s with %q: status %d; want %d", c.path, c.token, r.StatusCode, c.want)
		}
		waitFills(t, m)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if value(families(fams), "httpmirror_auth_checks_total", map[string]string{"result": "denied"}) != 2 {
		t.Errorf("denied checks: %v; want 2", value(families(fams), "httpmirror_auth_checks_total", map[string]string{"result": "denied"}))
	}
	text := strings.Join(logs.lines(), "\n")
	if !strings.Contains(text, "msg=request") {
		t.Fatal("no access log captured")
	}
	for _, secret := range []string{goodToken, wrong, "good-6f1c2a9e", "wrong-93b7d51f"} {
		if strings.Contains(text, secret) {
			t.Errorf("the log contains %q", secret)
		}
		if strings.Contains(fmt.Sprint(fams), secret) {
			t.Errorf("the metrics contain %q", secret)
		}
		scanDir(t, m.root, []byte(secret))
	}
}

func families(fams []*dto.MetricFamily) map[string]*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}
