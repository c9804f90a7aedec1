package httpmirror_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
)

// hubClient reaches o whatever host a request names, so that the mirror
// can serve huggingface.co from a loopback origin.
func hubClient(o *testOrigin) *http.Client {
	addr := o.Listener.Addr().String()
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
}

// On the Hugging Face Hub one authorisation covers a repository: once a
// token is checked for one file, the other files of the repository need
// no check, while another repository does.
func TestAuthorisationScopeIsTheHubRepository(t *testing.T) {
	o := gatedOrigin(t)
	data := payload(160, 20000)
	for _, p := range []string{"/org/model/resolve/main/a.bin", "/org/model/resolve/main/b.bin", "/org/other/resolve/main/a.bin"} {
		o.Put(p, data)
	}
	clk := newClock()
	m := newClockedMirror(t, o, clk, withAuthCache, func(m *httpmirror.MirrorHandler) {
		m.HostFromFirstPath = false
		m.Host = "huggingface.co"
		m.Client = hubClient(o)
	})
	fetch := func(p string) {
		t.Helper()
		if r := do(t, "GET", m.URL+p, bearer(goodToken)); r.StatusCode != 200 || sha(r.body) != sha(data) {
			t.Fatalf("%s: status %d", p, r.StatusCode)
		}
		waitFills(t, m)
	}
	for _, p := range []string{"/org/model/resolve/main/a.bin", "/org/model/resolve/main/b.bin", "/org/other/resolve/main/a.bin"} {
		fetch(p)
	}
	clk.advance(time.Hour)
	fetch("/org/model/resolve/main/a.bin")
	fetch("/org/model/resolve/main/b.bin")
	if n := o.Heads.Load(); n != 1 {
		t.Errorf("checks for one repository: %d; want 1", n)
	}
	fetch("/org/other/resolve/main/a.bin")
	if n := o.Heads.Load(); n != 2 {
		t.Errorf("checks after another repository: %d; want 2", n)
	}
	if r := get(t, m.URL+"/org/model/resolve/main/b.bin"); r.StatusCode != 401 {
		t.Errorf("anonymous: status %d; want 401", r.StatusCode)
	}
}

// openSignal is a store whose Open calls for key are counted; the n-th
// opens gate before it returns.
type openSignal struct {
	storage.Backend
	key  string
	n    int
	gate *testutil.Gate
	mu   sync.Mutex
	seen int
}

func (s *openSignal) Open(ctx context.Context, key string) (storage.Object, error) {
	obj, err := s.Backend.Open(ctx, key)
	s.mu.Lock()
	if key == s.key {
		if s.seen++; s.seen == s.n {
			s.gate.Open()
		}
	}
	s.mu.Unlock()
	return obj, err
}

// A client with a credential that meets a fill started without one, which
// the origin refuses, asks again with its own credential instead of
// taking the other client's 401.
func TestCredentialRetriesAfterAnotherClientsDenial(t *testing.T) {
	o := newOrigin(t)
	data := payload(161, 30000)
	o.Put("/gated.bin", data)
	anonymousIn := make(chan struct{})
	var once sync.Once
	bothIn := newGate(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if r.Header.Get("Authorization") == "" {
			once.Do(func() { close(anonymousIn) })
			bothIn.Wait() // the anonymous fill is answered once the other client looked
		}
		return gate(w, r, f)
	})
	// Opens of the key: the anonymous request's, its fill's, then the
	// other client's, which finds no object and joins the fill.
	m := newMirror(t, o, func(m *httpmirror.MirrorHandler) {
		m.RemoteCache = &openSignal{Backend: m.RemoteCache, key: o.HostPort() + "/gated.bin", n: 3, gate: bothIn}
	})
	u := m.url(o, "/gated.bin")
	anonymous := make(chan response, 1)
	go func() { anonymous <- get(t, u) }()
	<-anonymousIn
	if r := do(t, "GET", u, bearer(goodToken)); r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Errorf("token: status %d; want 200 and the file", r.StatusCode)
	}
	if r := <-anonymous; r.StatusCode != 401 {
		t.Errorf("anonymous: status %d; want 401", r.StatusCode)
	}
	if n := o.Gets.Load(); n != 2 {
		t.Errorf("origin GETs %d; want 2", n)
	}
}
