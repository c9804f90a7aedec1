package admin_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror/internal/admin"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

const (
	aliceToken = "alice-0123456789abcdef0123456789"
	ciToken    = "ci-fedcba9876543210fedcba98765432"
)

// syncBuffer is a log destination the test reads while servers write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the logged lines that contain msg.
func (s *syncBuffer) lines(msg string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for line := range strings.SplitSeq(s.b.String(), "\n") {
		if strings.Contains(line, msg) {
			out = append(out, line)
		}
	}
	return out
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// adminServer starts another admin listener over e's mirror with tokens
// (none when nil), logging into the returned buffer.
func adminServer(t *testing.T, e *env, tokens []admin.Token, metricsAuth bool) (string, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	srv := &admin.Server{
		Gatherer: e.reg, Mirror: e.h, Tokens: tokens, MetricsAuth: metricsAuth,
		Logger: slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL, buf
}

var twoTokens = []admin.Token{{Name: "alice", Secret: aliceToken}, {Name: "ci", Secret: ciToken}}

// send sends a request with the Authorization header auth (none when
// empty) and returns the response with its body read.
func send(t *testing.T, method, u, auth string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// Without tokens every endpoint answers without credentials, as before
// tokens existed.
func TestAdminWithoutTokensIsOpen(t *testing.T) {
	e := newEnv(t, "file")
	e.origin.Put("/a", []byte("a"))
	for _, c := range []struct{ method, path string }{
		{"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/metrics"}, {"GET", "/debug/pprof/"},
		{"GET", "/status.json"}, {"GET", "/"}, {"GET", "/cache/?prefix=" + e.origin.HostPort()},
		{"DELETE", "/cache/" + e.key("/a")}, {"DELETE", "/cache/?prefix=" + e.origin.HostPort()},
	} {
		if resp, body := send(t, c.method, e.admin.URL+c.path, "", nil); resp.StatusCode != 200 {
			t.Errorf("%s %s without tokens: %d %q; want 200", c.method, c.path, resp.StatusCode, body)
		}
	}
}

// With tokens: no credential (or another scheme) is 401 with a Bearer
// challenge, a wrong token 403, either right token 200 with the scheme in
// any case; the probes and /metrics stay open, pprof does not, and
// --admin-metrics-auth closes /metrics.
func TestAdminTokens(t *testing.T) {
	e := newEnv(t, "file")
	base, _ := adminServer(t, e, twoTokens, false)
	for _, c := range []struct {
		name, method, path, auth string
		status                   int
	}{
		{"no credential", "GET", "/status.json", "", 401},
		{"basic scheme", "GET", "/status.json", "Basic YWxpY2U6eA==", 401},
		{"bearer without token", "GET", "/status.json", "Bearer ", 401},
		{"wrong token", "GET", "/status.json", "Bearer wrong-0123456789abcdef01234567", 403},
		{"prefix of a token", "GET", "/status.json", "Bearer " + aliceToken[:20], 403},
		{"token and more", "GET", "/status.json", "Bearer " + aliceToken + "x", 403},
		{"alice", "GET", "/status.json", "Bearer " + aliceToken, 200},
		{"ci", "GET", "/status.json", "Bearer " + ciToken, 200},
		{"lower-case scheme", "GET", "/status.json", "bearer " + ciToken, 200},
		{"upper-case scheme", "GET", "/status.json", "BEARER " + aliceToken, 200},
		{"list", "GET", "/cache/?prefix=", "Bearer " + aliceToken, 200},
		{"list without token", "GET", "/cache/?prefix=", "", 401},
		{"purge without token", "DELETE", "/cache/" + e.key("/a"), "", 401},
		{"prefetch without token", "POST", "/prefetch", "", 401},
		{"status page without token", "GET", "/", "", 401},
		{"pprof without token", "GET", "/debug/pprof/", "", 401},
		{"pprof cmdline without token", "GET", "/debug/pprof/cmdline", "", 401},
		{"pprof wrong token", "GET", "/debug/pprof/", "Bearer " + strings.Repeat("x", 32), 403},
		{"pprof", "GET", "/debug/pprof/", "Bearer " + aliceToken, 200},
		{"healthz", "GET", "/healthz", "", 200},
		{"readyz", "GET", "/readyz", "", 200},
		{"metrics", "GET", "/metrics", "", 200},
		{"metrics with a wrong token", "GET", "/metrics", "Bearer nope", 200},
	} {
		resp, body := send(t, c.method, base+c.path, c.auth, nil)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %s %s: %d %q; want %d", c.name, c.method, c.path, resp.StatusCode, body, c.status)
			continue
		}
		challenge := resp.Header.Get("WWW-Authenticate")
		switch c.status {
		case 401:
			if challenge != `Bearer realm="httpmirror admin"` {
				t.Errorf("%s: WWW-Authenticate %q; want the Bearer challenge", c.name, challenge)
			}
		case 403:
			if challenge != "" {
				t.Errorf("%s: WWW-Authenticate %q on a 403", c.name, challenge)
			}
		}
		if c.status >= 400 {
			var ae apiErr
			if resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &ae) != nil || ae.Error == "" {
				t.Errorf("%s: body %q (%s); want a JSON error", c.name, body, resp.Header.Get("Content-Type"))
			}
			if strings.Contains(string(body), aliceToken) || strings.Contains(string(body), ciToken) {
				t.Errorf("%s: the answer shows a token: %q", c.name, body)
			}
		}
	}

	closed, _ := adminServer(t, e, twoTokens, true)
	for _, c := range []struct {
		path, auth string
		status     int
	}{
		{"/metrics", "", 401}, {"/metrics", "Bearer " + strings.Repeat("y", 32), 403},
		{"/metrics", "Bearer " + ciToken, 200}, {"/healthz", "", 200}, {"/readyz", "", 200},
	} {
		if resp, body := send(t, "GET", closed+c.path, c.auth, nil); resp.StatusCode != c.status {
			t.Errorf("with MetricsAuth: GET %s (%q): %d %q; want %d", c.path, c.auth, resp.StatusCode, body, c.status)
		}
	}
}

// Purges and prefetch starts and cancels each log one line naming the
// remote address, the token's name, what was asked and what came of it;
// refused attempts log a warning; no line holds a token.
func TestAdminAuditLog(t *testing.T) {
	e := newEnv(t, "file")
	host := e.origin.HostPort()
	e.origin.Put("/pool/a.deb", testutil.Payload(1, 1000))
	e.origin.Put("/pool/b.deb", testutil.Payload(2, 2000))
	for _, p := range []string{"/pool/a.deb", "/pool/b.deb"} {
		if code, _ := e.get(t, p); code != 200 {
			t.Fatalf("GET %s: %d", p, code)
		}
	}
	e.waitFills(t)
	base, log := adminServer(t, e, twoTokens, false)
	alice, ci := "Bearer "+aliceToken, "Bearer "+ciToken
	const wrong = "wrong-token-0123456789abcdef"

	if resp, body := send(t, "DELETE", base+"/cache/"+e.ref("/pool/a.deb"), alice, nil); resp.StatusCode != 200 {
		t.Fatalf("purge: %d %q", resp.StatusCode, body)
	}
	if resp, body := send(t, "DELETE", base+"/cache/?prefix="+host+"/pool", ci, nil); resp.StatusCode != 200 {
		t.Fatalf("purge prefix: %d %q", resp.StatusCode, body)
	}
	resp, body := send(t, "POST", base+"/prefetch", alice, []byte(e.ref("/pool/a.deb")+"\n"+e.ref("/pool/b.deb")))
	var started struct{ ID string }
	if resp.StatusCode != 202 || json.Unmarshal(body, &started) != nil {
		t.Fatalf("prefetch: %d %q", resp.StatusCode, body)
	}
	waitPrefetch(t, e, started.ID)
	if resp, body := send(t, "DELETE", base+"/prefetch/"+started.ID, ci, nil); resp.StatusCode != 200 {
		t.Fatalf("cancel: %d %q", resp.StatusCode, body)
	}
	if resp, _ := send(t, "DELETE", base+"/cache/?prefix="+host, "Bearer "+wrong, nil); resp.StatusCode != 403 {
		t.Fatalf("purge with a wrong token: %d", resp.StatusCode)
	}
	if resp, _ := send(t, "POST", base+"/prefetch", "", []byte(e.ref("/pool/a.deb"))); resp.StatusCode != 401 {
		t.Fatalf("prefetch without a token: %d", resp.StatusCode)
	}
	if resp, _ := send(t, "DELETE", base+"/prefetch/"+started.ID, "Bearer "+wrong, nil); resp.StatusCode != 403 {
		t.Fatalf("cancel with a wrong token: %d", resp.StatusCode)
	}

	for _, c := range []struct {
		msg  string
		want [][]string // one line per entry, each holding all of its parts
	}{
		{`msg="admin purge"`, [][]string{
			{"level=INFO", "remote=127.0.0.1:", "by=alice", "key=" + host + "/pool/a.deb", "objects=1", "status=200"},
		}},
		{`msg="admin purge prefix"`, [][]string{
			{"level=INFO", "remote=127.0.0.1:", "by=ci", "prefix=" + host + "/pool", "objects=1", "status=200"},
			{"level=WARN", "remote=127.0.0.1:", "by=-", "method=DELETE", "status=403"},
		}},
		{`msg="admin prefetch start"`, [][]string{
			{"level=INFO", "remote=127.0.0.1:", "by=alice", "urls=2", "id=" + started.ID, "status=202"},
			{"level=WARN", "remote=127.0.0.1:", "by=-", "method=POST", "path=/prefetch", "status=401"},
		}},
		{`msg="admin prefetch cancel"`, [][]string{
			{"level=INFO", "remote=127.0.0.1:", "by=ci", "id=" + started.ID, "state=done", "status=200"},
			{"level=WARN", "remote=127.0.0.1:", "by=-", "path=/prefetch/" + started.ID, "status=403"},
		}},
	} {
		lines := log.lines(c.msg)
		if len(lines) != len(c.want) {
			t.Errorf("%d lines with %s; want %d:\n%s", len(lines), c.msg, len(c.want), strings.Join(lines, "\n"))
			continue
		}
		for i, parts := range c.want {
			for _, p := range parts {
				if !strings.Contains(lines[i], p) {
					t.Errorf("audit line %q lacks %q", lines[i], p)
				}
			}
		}
	}
	all := log.String()
	for _, secret := range []string{aliceToken, ciToken, wrong} {
		if strings.Contains(all, secret) {
			t.Errorf("the log shows a token:\n%s", all)
		}
	}

	// Without tokens the lines name no one.
	open, openLog := adminServer(t, e, nil, false)
	if resp, body := send(t, "DELETE", open+"/cache/"+e.key("/pool/b.deb"), "", nil); resp.StatusCode != 200 {
		t.Fatalf("purge without tokens: %d %q", resp.StatusCode, body)
	}
	if lines := openLog.lines(`msg="admin purge"`); len(lines) != 1 || !strings.Contains(lines[0], "by=- key="+host+"/pool/b.deb") {
		t.Errorf("purge without tokens logged %q; want one line by -", lines)
	}
}
