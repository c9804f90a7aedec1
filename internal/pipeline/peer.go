package pipeline

import (
	"net/http"
	"strings"
)

// PeerPrefix starts the paths the peer endpoint answers: GET /peer/<key>.
const PeerPrefix = "/peer/"

// StatusNotFilling is the peer endpoint's answer for a key this replica
// neither fills nor stores: 421 Misdirected Request, the server is not the
// one that can answer. The asking replica then looks again at who fills it.
const StatusNotFilling = http.StatusMisdirectedRequest

// ServePeer answers another replica's request for an object (see
// LookupPeer): from this replica's fill in progress, as it arrives, with
// the Range and conditional rules clients get, or from storage. Peer
// requests are not clients' requests: they are not observed.
//
// It does not authenticate: serve it on a listener of its own, never the
// public one, behind an authenticating handler (package cluster's
// Node.Handler).
func (p *Pipeline) ServePeer(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.URL.Path, PeerPrefix)
	if !ok {
		http.NotFound(w, r)
		return
	}
	// The secret that let the request in authenticates a replica, not a
	// user of the origin: nothing below may take it for a credential (and
	// send it on to an origin).
	r2 := *r
	r2.Header = r.Header.Clone()
	r2.Header.Del("Authorization")
	req := FromHTTP(&r2)
	req.Kind = Peer
	rw := &responseWriter{ResponseWriter: w}
	res := p.dispatch(rw, &r2, p.LookupPeer(r.Context(), req, key))
	if res.abort != nil {
		panic(http.ErrAbortHandler)
	}
}
