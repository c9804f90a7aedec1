package fill

import (
	"sync"
	"time"
)

// startConnections is how many connections a segmented fill starts with
// (the first response's included), when Options.Connections allows as
// many: two already show whether a second connection adds to the first.
const startConnections = 2

// adaptWindow is how long adapt measures the aggregate rate, once every
// fetcher it counts brings bytes. It is long enough to smooth an origin
// that paces each connection in slices of a tenth of a second, and short
// enough that a fill from a capped origin reaches eight connections
// within a second.
var adaptWindow = 250 * time.Millisecond

// addLocked starts n more workers (n may be zero), which count as fresh
// until their first bytes arrive (or they stop without any): adapt's
// measures wait for flowing, so that the time a new connection takes to
// open is not taken for the rate it brings. s.mu must be held, and s.done
// false.
func (s *segmenter) addLocked(n int) {
	s.flowing = make(chan struct{})
	if n <= 0 {
		close(s.flowing)
		return
	}
	for range n {
		s.workers++
		s.fresh++
		var once sync.Once
		s.startLocked(func() { s.work(false, func() { once.Do(s.arrived) }) })
	}
}

// arrived records that a fresh worker brought its first bytes, or
// stopped.
func (s *segmenter) arrived() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fresh--
	if s.fresh == 0 {
		close(s.flowing)
	}
}

// adapt chooses how many connections the fill uses: it measures the
// aggregate rate of the fetchers running, doubles them (up to
// Options.Connections) and measures again, for as long as the rate grows
// by at least half of what the new fetchers would add if each brought as
// much as the others did. When it does not, the doubling is taken back:
// the fetchers beyond the count stop as they finish their segment, and
// the origin is asked with no more connections than helped. It returns
// when the count is settled or the fill has stopped, closing s.adapted.
func (s *segmenter) adapt() {
	defer close(s.adapted)
	if !s.settle() {
		return
	}
	rate, ok := s.measure()
	for ok {
		s.mu.Lock()
		if s.done || len(s.pending) == 0 {
			s.mu.Unlock()
			return
		}
		n := s.conns
		m := min(2*n, s.max)
		s.conns = m
		s.addLocked(m - s.workers)
		s.mu.Unlock()
		if !s.settle() {
			return
		}
		var r float64
		if r, ok = s.measure(); !ok {
			return
		}
		if r < rate*(1+0.5*float64(m-n)/float64(n)) {
			s.mu.Lock()
			s.conns = n
			s.mu.Unlock()
			s.f.g.log.Debug("segmented fill: more connections did not pay", "key", s.f.key, "connections", n, "tried", m, "rate", int64(rate), "then", int64(r))
			return
		}
		s.f.g.log.Debug("segmented fill: more connections paid", "key", s.f.key, "connections", m, "rate", int64(r), "before", int64(rate))
		rate = r
		if m >= s.max {
			return
		}
	}
}

// settle waits until every fresh worker brings bytes. It reports false
// when the fill stopped first.
func (s *segmenter) settle() bool {
	s.mu.Lock()
	ch := s.flowing
	s.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-s.stopped:
		return false
	case <-s.ctx.Done():
		return false
	}
}

// measure returns the bytes per second that arrived during adaptWindow,
// or false when the fill stopped first.
func (s *segmenter) measure() (float64, bool) {
	b0, t0 := s.got.Load(), time.Now()
	t := time.NewTimer(adaptWindow)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.stopped:
		return 0, false
	case <-s.ctx.Done():
		return 0, false
	}
	return float64(s.got.Load()-b0) / time.Since(t0).Seconds(), true
}
