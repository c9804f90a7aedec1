package httpmirror

import (
	"net/http"
	"time"

	"github.com/httpmirror/httpmirror/internal/pipeline"
)

// ResolveKey exposes target resolution to the external tests: the cache key
// and upstream URL a request maps to.
func (m *MirrorHandler) ResolveKey(r *http.Request) (key, upstream string, err error) {
	if err := m.setup(); err != nil {
		return "", "", err
	}
	t, err := m.p.Resolve(pipeline.FromHTTP(r))
	if err != nil {
		return "", "", err
	}
	return t.Key(), m.p.URL(t), nil
}

// SetClock replaces the handler's clock; call it before the first request.
func (m *MirrorHandler) SetClock(now func() time.Time) { m.now = now }

// SetPeerJoined makes PeerHandler call f with the key of every fill a peer
// request joins; nil stops it. Set it while no handler serves.
func SetPeerJoined(f func(key string)) { pipeline.PeerJoined = f }
