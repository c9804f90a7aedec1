package httpmirror

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// ErrNoMaxIdle is returned by ExpireIdle on a handler without MaxIdle.
var ErrNoMaxIdle = errors.New("MaxIdle is not set: no object expires")

// idleSweep is the background sweep of MaxIdle.
type idleSweep struct {
	mu   sync.Mutex // one sweep at a time
	stop context.CancelFunc
	done chan struct{}
}

// validateMaxIdle checks MaxIdle against the cache.
func (m *MirrorHandler) validateMaxIdle() error {
	switch {
	case m.MaxIdle < 0:
		return errors.New("the maximum idle time must not be negative")
	case m.MaxIdle == 0:
		return nil
	case m.RemoteCache == nil:
		return errors.New("a maximum idle time needs a cache")
	}
	if _, ok := m.RemoteCache.(storage.Expirer); !ok {
		return errors.New("the storage backend cannot expire idle objects")
	}
	return nil
}

// idleInterval is the pause between two sweeps for maxIdle: a tenth of
// it, so that an object goes at most 10% late, between a minute and an
// hour.
func idleInterval(maxIdle time.Duration) time.Duration {
	return min(max(maxIdle/10, time.Minute), time.Hour)
}

// startIdleSweep starts the background sweep when MaxIdle asks for one.
func (m *MirrorHandler) startIdleSweep() {
	if m.MaxIdle <= 0 || !m.p.Cached() {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	m.idle.stop, m.idle.done = stop, make(chan struct{})
	go func() {
		defer close(m.idle.done)
		// The first sweep a minute after the start, so that a process
		// restarted more often than the interval still sweeps.
		t := time.NewTimer(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			m.ExpireIdle(ctx) // it logs what it did
			t.Reset(idleInterval(m.MaxIdle))
		}
	}()
}

// Start prepares the handler to serve and starts its background work
// (the MaxIdle sweep) at once, instead of at its first request; it
// returns Validate's error. Close stops the work.
func (m *MirrorHandler) Start() error { return m.setup() }

// stopIdleSweep stops the background sweep and waits for it.
func (m *MirrorHandler) stopIdleSweep() {
	if m.idle.stop != nil {
		m.idle.stop()
		<-m.idle.done
	}
}

// ExpireIdle runs one sweep of MaxIdle now and returns how many objects
// it removed: those whose last read (see storage.Info.LastAccess) is more
// than MaxIdle ago, as the handler's clock tells. It removes them as
// eviction does, through the backend's storage.Expirer, which leaves
// alone objects being read; objects that a download in progress fetches,
// revalidates or streams from are left too. It logs one line and counts
// the objects removed in httpmirror_expired_objects_total. The background
// sweep calls it; a second call waits for a sweep in progress.
func (m *MirrorHandler) ExpireIdle(ctx context.Context) (int, error) {
	if err := m.adminReady(); err != nil {
		return 0, err
	}
	if m.MaxIdle <= 0 {
		return 0, ErrNoMaxIdle
	}
	ex, ok := m.p.Store().(storage.Expirer)
	if !ok {
		return 0, storage.ErrNotSupported
	}
	m.idle.mu.Lock()
	defer m.idle.mu.Unlock()
	began := time.Now()
	cutoff := m.now().Add(-m.MaxIdle)
	busy := map[string]bool{}
	for _, p := range m.p.Progress() {
		busy[p.Key] = true
	}
	n, err := ex.Expire(ctx, cutoff, func(key string) bool { return busy[key] })
	m.Metrics.expired(n)
	attrs := []any{"removed", n, "maxIdle", m.MaxIdle.String(), "idleSince", cutoff.UTC().Format(time.RFC3339),
		"duration", time.Since(began).Round(time.Millisecond).String()}
	switch {
	case err != nil && ctx.Err() != nil:
		m.log.Info("idle sweep interrupted", attrs...) // a shutdown
		return n, err
	case err != nil:
		m.log.Warn("idle sweep stopped early", append(attrs, "err", err)...)
		return n, err
	}
	m.log.Info("idle sweep", attrs...)
	return n, nil
}
