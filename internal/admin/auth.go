package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strings"
)

// Token is a bearer token the admin endpoints accept.
type Token struct {
	// Name says whose token it is in the audit log, which never shows
	// Secret.
	Name string
	// Secret is the token a client sends: "Authorization: Bearer <Secret>".
	Secret string
}

// challenge is the WWW-Authenticate header of a 401 (RFC 6750 section 3).
const challenge = `Bearer realm="httpmirror admin"`

// guard checks the bearer tokens of admin requests and writes the audit
// log of the requests that change the cache.
type guard struct {
	s       *Server
	names   []string
	digests [][sha256.Size]byte
}

func (s *Server) newGuard() *guard {
	g := &guard{s: s}
	for _, t := range s.Tokens {
		g.names = append(g.names, t.Name)
		g.digests = append(g.digests, sha256.Sum256([]byte(t.Secret)))
	}
	return g
}

// open reports whether path is served without a token: the probes, and
// /metrics unless MetricsAuth.
func (g *guard) open(path string) bool {
	switch path {
	case "/healthz", "/readyz":
		return true
	case "/metrics":
		return !g.s.MetricsAuth
	}
	return false
}

// authenticate returns the name of the token r carries, or the status
// refusing it: 401 without a bearer credential, 403 with a wrong one.
//
// The credential is compared with every token, in constant time and
// through fixed-size digests, so neither the time taken nor an early exit
// says how much of a token matched, which token it was, or how long the
// tokens are.
func (g *guard) authenticate(r *http.Request) (name string, status int) {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	cred = strings.TrimSpace(cred)
	if !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return "", http.StatusUnauthorized
	}
	sum := sha256.Sum256([]byte(cred))
	match := -1
	for i, d := range g.digests {
		match = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(sum[:], d[:]), i, match)
	}
	if match < 0 {
		return "", http.StatusForbidden
	}
	return g.names[match], 0
}

// action names what an admin request changes, for the audit log; "" for
// requests that change nothing.
func action(r *http.Request) string {
	p := r.URL.EscapedPath()
	switch {
	case r.Method == http.MethodPost && p == "/cache/invalidate":
		return "invalidate"
	case r.Method == http.MethodDelete && (p == "/cache" || p == "/cache/"):
		return "purge prefix"
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/cache/"):
		return "purge"
	case r.Method == http.MethodPost && p == "/prefetch":
		return "prefetch start"
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/prefetch/"):
		return "prefetch cancel"
	case r.Method == http.MethodPost && p == "/verify":
		return "verify start"
	case r.Method == http.MethodDelete && strings.HasPrefix(p, "/verify/"):
		return "verify cancel"
	}
	return ""
}

// endpoint names the path of r in log lines about requests that may be
// unauthenticated: a reference under /cache/ may hold anything (a URL
// with a password, say), so it is left out.
func endpoint(r *http.Request) string {
	p := r.URL.EscapedPath()
	if strings.HasPrefix(p, "/cache/") {
		return "/cache/…"
	}
	if len(p) > 80 {
		return p[:80] + "…"
	}
	return p
}

// auditRecord collects what an audited request asked for and what came of
// it, for its one audit line.
type auditRecord struct {
	by    string // the token's name, "-" without tokens
	attrs []any
}

type auditKey struct{}

// auditedBy returns the name of the token of the audited request r ("-"
// without tokens), or "" when r is not audited.
func auditedBy(r *http.Request) string {
	if rec, ok := r.Context().Value(auditKey{}).(*auditRecord); ok {
		return rec.by
	}
	return ""
}

// audit adds key-value pairs to the audit line of r, if r is audited.
func audit(r *http.Request, args ...any) {
	if rec, ok := r.Context().Value(auditKey{}).(*auditRecord); ok {
		rec.attrs = append(rec.attrs, args...)
	}
}

// statusRecorder remembers the status of an audited response.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// wrap returns next behind the token check (when Tokens are set) and the
// audit log. Every request that purges, or starts or cancels a prefetch
// or verify job, logs one line with the remote address, the token's name ("-"
// without tokens), what it asked for and the status it got: at info level
// when it succeeded, at warn level when it was refused or failed. A wrong
// token on any endpoint is logged at warn level too; the token itself is
// never logged.
func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		act := action(r)
		by := "-"
		status := 0
		if len(g.digests) > 0 && !g.open(r.URL.Path) {
			by, status = g.authenticate(r)
		}
		if status != 0 {
			g.refuse(w, r, act, status)
			return
		}
		if act == "" {
			next.ServeHTTP(w, r)
			return
		}
		rec := &auditRecord{by: by}
		sw := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), auditKey{}, rec)))
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		level := slog.LevelInfo
		if sw.status >= 400 {
			level = slog.LevelWarn
		}
		args := append([]any{"remote", r.RemoteAddr, "by", by}, rec.attrs...)
		g.s.log().Log(r.Context(), level, "admin "+act, append(args, "status", sw.status)...)
	})
}

// refuse answers a request without a valid token and logs it: at warn
// level when it carried a wrong token or asked to change something, at
// debug level otherwise (a probe or scanner without credentials).
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, act string, status int) {
	level := slog.LevelDebug
	if status == http.StatusForbidden || act != "" {
		level = slog.LevelWarn
	}
	msg := "admin request refused"
	if act != "" {
		msg = "admin " + act
	}
	g.s.log().Log(r.Context(), level, msg, "remote", r.RemoteAddr, "by", "-", "method", r.Method, "path", endpoint(r), "status", status)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", challenge)
		writeError(w, status, "this endpoint needs a token: send Authorization: Bearer <token>")
		return
	}
	writeError(w, status, "the token is not valid")
}
