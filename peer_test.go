package httpmirror_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// peerSecretHeader is what another replica's request carries: the peer
// secret, which authenticates the replica, not a user of the origin.
var peerSecretHeader = http.Header{"Authorization": {"Bearer peer-secret-4b1d"}}

// An object that needs authorisation is never handed to another replica,
// whether it is stored or still arriving, and the peer secret never
// reaches the origin: the replica then fetches for its own client.
func TestPeerNeverServesGatedObjects(t *testing.T) {
	o := gatedOrigin(t)
	data := payload(170, 200000)
	o.Put("/org/model/resolve/main/stored.bin", data)
	o.Put("/org/model/resolve/main/filling.bin", data)
	m := newMirror(t, o, withAuthCache)
	peer := m.h.PeerHandler()
	ask := func(path string) int {
		req := httptest.NewRequest(http.MethodGet, httpmirror.PeerPrefix+o.HostPort()+path, nil)
		req.Header = peerSecretHeader.Clone()
		w := httptest.NewRecorder()
		peer.ServeHTTP(w, req)
		if w.Body.Len() >= len(data) {
			t.Errorf("peer request for %s: got the object's bytes", path)
		}
		return w.Code
	}

	// Stored, for the good token.
	if r := do(t, "GET", m.url(o, "/org/model/resolve/main/stored.bin"), bearer(goodToken)); r.StatusCode != 200 {
		t.Fatalf("client with the token: %d", r.StatusCode)
	}
	waitFills(t, m)
	if code := ask("/org/model/resolve/main/stored.bin"); code != httpmirror.StatusNotFilling {
		t.Errorf("peer request for a stored gated object: %d; want %d", code, httpmirror.StatusNotFilling)
	}

	// Still arriving: the origin holds the body after 64 KiB.
	reached := make(chan struct{})
	hold := newGate(t)
	stall := stallingHook(64<<10, func() { close(reached) }, hold)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		return gate(w, r, f) || stall(w, r, f)
	})
	done := make(chan response, 1)
	go func() { done <- do(t, "GET", m.url(o, "/org/model/resolve/main/filling.bin"), bearer(goodToken)) }()
	<-reached
	if code := ask("/org/model/resolve/main/filling.bin"); code != httpmirror.StatusNotFilling {
		t.Errorf("peer request for a gated fill: %d; want %d", code, httpmirror.StatusNotFilling)
	}
	hold.Open()
	if r := <-done; r.StatusCode != 200 || sha(r.body) != sha(data) {
		t.Errorf("the client with the token: %d", r.StatusCode)
	}
	for _, r := range o.Received() {
		if r.Header.Get("Authorization") == peerSecretHeader.Get("Authorization") {
			t.Fatalf("the origin received the peer secret (%s %s)", r.Method, r.URL.Path)
		}
	}
}
