package cidn

import (
	"errors"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/httpmirror/httpmirror"
)

// errRunning is what Err reports before the transfer ended.
var errRunning = errors.New("cidn: transfer still running")

// onEvent passes an informer event to the transfer of its Blob, if one is
// followed.
func (c *Client) onEvent(old, obj any, deleted bool) {
	u := asBlob(obj)
	if u == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[u.GetName()]; f != nil {
		c.observeLocked(f, old, u, deleted)
	}
}

// observeLocked applies what is known of a Blob named like f's: obj, as it
// is now, or just deleted; old, for an update, as it was. Transfers follow
// their Blob by UID: another Blob of the same name is an older one seen
// late, or one that replaced it.
func (c *Client) observeLocked(f *flight, old, obj any, deleted bool) {
	u := asBlob(obj)
	if u == nil || f.finished {
		return
	}
	var oldUID types.UID
	if o := asBlob(old); o != nil {
		oldUID = o.GetUID()
	}
	uid := u.GetUID()
	if !f.isReady {
		// Not known yet which Blob is followed: remember deletions.
		if deleted {
			f.gone[uid] = true
		} else if oldUID != "" && oldUID != uid {
			f.gone[oldUID] = true
		}
		return
	}
	switch {
	case deleted:
		if uid == f.uid {
			c.finishLocked(f, httpmirror.ErrCIDNDeleted)
		}
	case uid != f.uid:
		if oldUID == f.uid {
			// Replaced by another Blob while the watch was down: the
			// relist shows the swap as an update.
			c.finishLocked(f, httpmirror.ErrCIDNDeleted)
		}
	default:
		switch st := statusOf(u); st.Phase {
		case PhaseSucceeded:
			c.finishLocked(f, nil)
		case PhaseFailed:
			c.finishLocked(f, failure(st))
		}
	}
}

// finishLocked ends f with err; it is no longer followed.
func (c *Client) finishLocked(f *flight, err error) {
	if f.finished {
		return
	}
	f.finished = true
	f.err = err
	close(f.done)
	if c.flights[f.name] == f {
		delete(c.flights, f.name)
	}
	var ce *httpmirror.CIDNError
	switch {
	case err == nil:
		c.cfg.Metrics.blobFinished("succeeded")
		c.log.Debug("cidn blob succeeded", "blob", f.name)
	case errors.As(err, &ce):
		c.cfg.Metrics.blobFinished("failed")
		c.log.Info("cidn blob failed", "blob", f.name, "err", err)
	case errors.Is(err, httpmirror.ErrCIDNDeleted):
		c.cfg.Metrics.blobFinished("deleted")
		c.log.Info("cidn blob deleted before it ended", "blob", f.name)
	}
}

// release drops one request from f; a transfer nobody follows is
// forgotten (its Blob goes on).
func (c *Client) release(f *flight) {
	c.mu.Lock()
	f.refs--
	c.waiting--
	if f.refs == 0 && !f.finished && c.flights[f.name] == f {
		delete(c.flights, f.name)
	}
	c.mu.Unlock()
	c.cfg.Metrics.addWaiting(-1)
}

// transfer is one request's handle on a flight.
type transfer struct {
	c    *Client
	f    *flight
	once sync.Once
}

func (t *transfer) Done() <-chan struct{} { return t.f.done }

func (t *transfer) Err() error {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if !t.f.finished {
		return errRunning
	}
	return t.f.err
}

func (t *transfer) Release() { t.once.Do(func() { t.c.release(t.f) }) }
