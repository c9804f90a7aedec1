package httpmirror

import (
	"errors"
	"net/http"
	"strings"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// PeerPrefix starts the paths PeerHandler answers: GET /peer/<key>.
const PeerPrefix = "/peer/"

// StatusNotFilling is PeerHandler's answer for a key this replica neither
// fills nor stores: 421 Misdirected Request, the server is not the one
// that can answer. The asking replica then looks again at who fills it.
const StatusNotFilling = http.StatusMisdirectedRequest

// PeerHandler returns the handler other replicas of a shared store read
// objects from (see Coordinator): GET or HEAD /peer/<key> answers the
// object of cache key key from this replica's fill in progress, as it
// arrives, with the Range and conditional rules clients get, or from
// storage once it is committed; never with a redirect, and never by
// starting a fill. A fill that this replica itself streams from another
// replica is not served on (so peers never chase each other), and a key
// neither filled nor stored is answered StatusNotFilling. The origin's
// error statuses (404, 410, 5xx) of a fill are passed on.
//
// The handler does not authenticate: serve it on a listener of its own,
// never the public one, behind an authenticating handler (package
// cluster's Node.Handler).
func (m *MirrorHandler) PeerHandler() http.Handler { return peerHandler{m} }

type peerHandler struct{ m *MirrorHandler }

// peerJoined, when set (by tests), is called with the key of every fill a
// peer request joins.
var peerJoined func(key string)

func (p peerHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := p.m
	if err := m.init(); err != nil {
		http.Error(w, "mirror misconfigured", http.StatusInternalServerError)
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, PeerPrefix)
	if !ok || m.store == nil || storage.ValidateKey(key) != nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// The secret that let the request in authenticates a replica, not a
	// user of the origin: nothing below may take it for a credential (and
	// send it on to an origin).
	r2 := *r
	r2.Header = r.Header.Clone()
	r2.Header.Del("Authorization")
	m.servePeer(&recorder{ResponseWriter: w}, &r2, key)
}

// servePeer answers another replica's request for key.
func (m *MirrorHandler) servePeer(w *recorder, r *http.Request, key string) {
	ctx := r.Context()
	host, rest, _ := strings.Cut(key, "/")
	t := target{host: host, path: "/" + rest, key: key}
	if f := m.fills.Join(key); f != nil {
		_, fed := m.peerSourced.Load(key)
		if peerJoined != nil && !fed {
			peerJoined(key)
		}
		var info storage.Info
		var err error
		if !fed {
			info, err = f.Header(ctx)
		}
		var se *fill.StatusError
		switch {
		case fed:
		case err == nil && info.Header[policy.AuthHeader] != nil:
			// Fetched with a client's credential: the other replica
			// fetches for its own client.
			f.Release()
			http.Error(w, "not filling this key", StatusNotFilling)
			return
		case err == nil:
			defer f.Release()
			m.serveFill(w, r, t, f, info)
			return
		case errors.As(err, &se), ctx.Err() != nil:
			f.Release()
			m.fail(w, r, err)
			return
		}
		// Not an object (a revalidation's 304, a fill over the size
		// limit or without disk): storage may have it.
		f.Release()
	}
	obj, err := m.store.Open(ctx, key)
	if err != nil {
		http.Error(w, "not filling this key", StatusNotFilling)
		return
	}
	defer obj.Close()
	info := obj.Info()
	if info.Header[policy.AuthHeader] != nil {
		http.Error(w, "not filling this key", StatusNotFilling)
		return
	}
	m.serveBytes(w, r, obj, info)
}
