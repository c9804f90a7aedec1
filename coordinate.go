package httpmirror

import (
	"context"
	"net/http"
	"net/url"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/storage"
)

// Coordinator shares the misses of replicas that serve from one store, so
// that a file several replicas miss at the same time leaves its origin
// once: one replica fetches and stores it, the others stream it from that
// replica as it arrives. Package cluster implements it with leases kept in
// the store (storage.Claimer) and an authenticated peer listener; the
// handler depends on this interface only.
type Coordinator interface {
	// Coordinate starts the coordination of one fill of key, whose bytes
	// would otherwise come from origin (which takes the extra request
	// headers of fill.Source.Get). It does no I/O: the fill's first Get
	// decides where the bytes come from.
	Coordinate(key string, origin func(ctx context.Context, h http.Header) (*http.Response, error)) Coordination
}

// Coordination is one fill's part in the coordination of its key.
type Coordination interface {
	// Get answers the fill's requests in place of the origin, with the
	// same extra headers (Range and If-Range when a broken body is
	// resumed). fromOrigin reports whether the response is the origin's;
	// one that is not (another replica's copy, or the stored object) is
	// streamed to the fill's clients and not stored again.
	Get(ctx context.Context, h http.Header) (resp *http.Response, fromOrigin bool, err error)
	// Done is called once, after the fill has ended and its object was
	// committed (or the fill failed). Whatever the coordination holds for
	// the key is given up.
	Done()
}

// peerMark is the context key that marks the responses of coordinated
// fills that did not come from the origin.
type peerMark struct{}

// coordinatedSource returns the source of a miss of t, and the function to
// call with the fill once it is known that this request started it. Without
// a Coordinator (or with CIDN, which stays in charge of shared fetches) it
// is the origin, and the function does nothing.
func (m *MirrorHandler) coordinatedSource(t target, r *http.Request) (fill.Source, func(*fill.Fill)) {
	src := m.source(t, r)
	// A request with a credential fetches for itself: another replica's
	// peer endpoint would hand its bytes to anyone holding the peer
	// secret, without the origin's word on this credential.
	if m.Coordinator == nil || m.CIDN != nil || len(r.Header["Authorization"]) > 0 {
		return src, func(*fill.Fill) {}
	}
	c := m.Coordinator.Coordinate(t.key, src.Get)
	origin := src.URL
	src.Get = func(ctx context.Context, h http.Header) (*http.Response, error) {
		resp, fromOrigin, err := c.Get(ctx, h)
		if err != nil || fromOrigin {
			return resp, err
		}
		// The response is judged as the origin's answer to this client's
		// request (anonymous: credentialed requests are not shared), not
		// as the answer to the peer request, whose Authorization carries
		// the peer secret. Nor is it cut into segments again: the peer
		// streams it, and the owner fetches it once.
		u, _ := url.Parse(origin)
		resp.Request = (&http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}).
			WithContext(context.WithValue(ctx, peerMark{}, origin))
		resp.Header.Del("Accept-Ranges")
		m.peerSourced.Store(t.key, c)
		return resp, nil
	}
	return src, func(f *fill.Fill) {
		go func() {
			<-f.Done()
			m.peerSourced.CompareAndDelete(t.key, c)
			c.Done()
		}()
	}
}

// fromPeer reports whether resp, a fill's response, came from another
// replica or the stored object rather than the origin: the fill then
// streams it without storing it (the replica that fetched it stores it).
func fromPeer(resp *http.Response) bool {
	return resp.Request != nil && resp.Request.Context().Value(peerMark{}) != nil
}

// StorageObserver returns the observer that times storage operations in
// m's metrics (httpmirror_storage_operation_seconds), for a store used
// beside the handler, such as the leases of a Coordinator: wrap it with
// storage.Instrument. Nil (nothing recorded) for a nil *Metrics.
func (m *Metrics) StorageObserver() storage.OpObserver { return m.storageObserver() }
