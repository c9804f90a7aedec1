package fill

import (
	"context"
	"errors"
	"slices"
	"time"
)

// ErrCancelled ends a fill stopped by Group.Cancel: its clients' responses
// are cut off and nothing is stored.
var ErrCancelled = errors.New("fill: cancelled")

// control is what a Group keeps to watch and stop one fill: the fill runs
// on ctx, a child of the group's context, so that Cancel stops one fill
// and Shutdown all of them.
type control struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	started time.Time
}

func newControl(parent context.Context) control {
	ctx, cancel := context.WithCancelCause(parent)
	return control{ctx: ctx, cancel: cancel, started: time.Now()}
}

// Progress describes a fill in progress.
type Progress struct {
	// Key is the fill's cache key; URL its upstream URL.
	Key, URL string
	// Op is what the fill does: "miss" (fetch a missing object),
	// "revalidate" (ask the origin whether a stored object is current) or
	// "refetch" (fetch an object again).
	Op string
	// Bytes is how many bytes have arrived so far.
	Bytes int64
	// Size is the object's size, -1 while unknown (no Content-Length, or
	// no response yet).
	Size int64
	// Started is when the fill began.
	Started time.Time
	// Readers counts the requests (and prefetches) using the fill.
	Readers int
}

var opNames = [...]string{opMiss: "miss", opRevalidate: "revalidate", opRefetch: "refetch"}

// Progress returns the fills in progress, oldest first.
func (g *Group) Progress() []Progress {
	type running struct {
		f       *Fill
		readers int
	}
	g.mu.Lock()
	fills := make([]running, 0, len(g.fills))
	for _, f := range g.fills {
		// One reference is the running fill's own.
		fills = append(fills, running{f, max(f.refs-1, 0)})
	}
	g.mu.Unlock()
	out := make([]Progress, 0, len(fills))
	for _, r := range fills {
		n, size := r.f.Progress()
		out = append(out, Progress{
			Key: r.f.key, URL: r.f.src.URL, Op: opNames[r.f.op],
			Bytes: n, Size: size, Started: r.f.started, Readers: r.readers,
		})
	}
	slices.SortFunc(out, func(a, b Progress) int { return a.Started.Compare(b.Started) })
	return out
}

// Progress returns how many bytes of the object have arrived and its size
// (-1 while unknown).
func (f *Fill) Progress() (bytes, size int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seg != nil {
		// Segments arrive out of order: count them all, not the prefix.
		return f.filled.size(), f.size
	}
	return f.n, f.size
}

// Cancel stops the fills in progress whose keys match, with cause as their
// error (ErrCancelled when nil), and returns a channel per stopped fill
// that is closed once it has finished: a fill cancelled after its object
// was committed has stored it, one cancelled before stores nothing. The
// fill's clients see their responses cut off; requests that arrive later
// start a new fill.
func (g *Group) Cancel(match func(key string) bool, cause error) []<-chan struct{} {
	if cause == nil {
		cause = ErrCancelled
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var done []<-chan struct{}
	for key, f := range g.fills {
		if match(key) {
			f.cancel(cause)
			done = append(done, f.done)
		}
	}
	return done
}

// Running returns, for each fill in progress whose key matches, a channel
// that is closed once it has finished (stored or not), by key. Unlike
// Cancel it leaves the fills alone.
func (g *Group) Running(match func(key string) bool) map[string]<-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	done := map[string]<-chan struct{}{}
	for key, f := range g.fills {
		if match(key) {
			done[key] = f.done
		}
	}
	return done
}

// Withdraw drops the caller's reference, as Release does, and stops the
// fill with ErrCancelled when nobody else uses it any more, whether or not
// it would store its object. It is for a caller that started a download on
// its own account and no longer wants it (a cancelled prefetch): a fill
// that other readers still use goes on for them and is stored as usual,
// so a withdrawal never cuts a client off. A stopped fill leaves the
// group at once; a later request starts a new one.
func (f *Fill) Withdraw() {
	f.g.mu.Lock()
	// One reference is the caller's, one the running fill's own.
	if f.refs == 2 {
		f.mu.Lock()
		running := !f.isDone()
		f.mu.Unlock()
		if running {
			if f.g.fills[f.key] == f {
				delete(f.g.fills, f.key)
			}
			f.cancel(ErrCancelled)
		}
	}
	f.g.mu.Unlock()
	f.Release()
}
