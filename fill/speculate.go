package fill

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// speculation is the ranged request a miss that wants a byte far into the
// object sends beside its first request (Source.Want), before the first
// response's headers say whether the object will be fetched in segments.
type speculation struct {
	want   int64
	end    int64 // the requested end, exclusive
	cancel context.CancelFunc
	done   chan struct{}
	resp   *http.Response // valid once done is closed, when err is nil
	err    error
	used   bool
}

// speculate starts the speculative request of a fill whose source wants
// a byte beyond the first segment, when the fill may use more than one
// connection; nil otherwise.
func (f *Fill) speculate(ctx context.Context) *speculation {
	o := f.g.opts
	seg := o.segmentSize()
	if f.src.Want < seg || o.Connections < 2 || f.op == opRevalidate {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	sp := &speculation{want: f.src.Want, end: f.src.Want + seg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(sp.done)
		h := http.Header{}
		h.Set("Range", "bytes="+strconv.FormatInt(sp.want, 10)+"-"+strconv.FormatInt(sp.end-1, 10))
		sp.resp, sp.err = f.src.Get(ctx, h)
	}()
	return sp
}

// claimLocked takes the speculative range from pending, cut to the
// object, if the fill has one and nobody else fetches it. s.mu must be
// held.
func (sp *speculation) claimLocked(s *segmenter) (start, end int64, ok bool) {
	if sp == nil || sp.want >= s.size {
		return 0, 0, false
	}
	if !s.pending.contains(sp.want) {
		return 0, 0, false
	}
	s.takenEnd = min(sp.end, s.pending.runFrom(sp.want))
	if s.takenEnd != min(sp.end, s.size) {
		return 0, 0, false // part of it is taken already: not worth the bother
	}
	s.pending.remove(sp.want, s.takenEnd)
	sp.used = true
	return sp.want, s.takenEnd, true
}

// drop discards a speculative request the fill did not use.
func (sp *speculation) drop() {
	if sp == nil || sp.used {
		return
	}
	sp.cancel()
	<-sp.done
	if sp.err == nil {
		drain(sp.resp.Body)
	}
}

// speculated fetches [start, end) from the speculative response when it
// proves to be that range of the object (the first response's length and
// validators), else with a ranged request of its own; then it works as
// any fetcher.
func (s *segmenter) speculated(sp *speculation, start, end int64) {
	defer sp.cancel()
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	var body io.ReadCloser
	select {
	case <-sp.done:
		if sp.err == nil {
			if sp.resp.StatusCode == http.StatusPartialContent && sameRange(sp.resp, start, end-1, s.info) == nil {
				body = sp.resp.Body
			} else {
				drain(sp.resp.Body)
			}
		}
	case <-s.ctx.Done():
		<-sp.done
		if sp.err == nil {
			sp.resp.Body.Close()
		}
		return
	}
	err := errors.New("speculative range unusable")
	cur := start
	if body != nil {
		err = s.f.pump(s.ctx, io.LimitReader(body, end-cur), body, *buf, s.sink(&cur, nil))
		if err == nil {
			body.Read((*buf)[:1]) // to the end, so the connection is reused
		}
		body.Close()
		if err == nil && cur < end {
			err = ErrShortBody
		}
	}
	if err != nil {
		if !retryableSpeculation(s.ctx, err) {
			s.fail(err)
			return
		}
		if err := s.fetch(cur, end, *buf, 0, nil); err != nil {
			s.fail(err)
			return
		}
	}
	s.work(false, nil)
}

// retryableSpeculation reports whether [cur, end) may still be fetched
// properly after the speculative response failed with err: anything but a
// spool failure or a cancelled fill.
func retryableSpeculation(ctx context.Context, err error) bool {
	return ctx.Err() == nil && !errors.Is(err, ErrSpool)
}
