package main

// Capped objects: the origin sends the body of /c/<name>/<size> at most at
// a fixed rate per request (and so per connection: HTTP/1.1 answers one
// request at a time on a connection), like a real origin or CDN that
// limits each connection. This is what parallel ranged fetching is for:
// scenario (f) measures how much a proxy gains from it.

import (
	"context"
	"net/http"
	"time"
)

// paceChunk is the most a paced response sends at once (http.ServeContent
// writes 32 KiB at a time anyway).
const paceChunk = 32 << 10

// pacedWriter is an http.ResponseWriter whose body leaves at most rate
// bytes per second, measured from the start of the response. It only
// embeds http.ResponseWriter, so io.Copy cannot bypass Write through the
// connection's ReadFrom.
type pacedWriter struct {
	http.ResponseWriter
	ctx   context.Context
	rate  float64 // bytes per second
	chunk int     // bytes per write: at most a tenth of a second's worth
	start time.Time
	sent  int64
	timer *time.Timer
}

func newPacedWriter(w http.ResponseWriter, ctx context.Context, rate float64) *pacedWriter {
	return &pacedWriter{
		ResponseWriter: w,
		ctx:            ctx,
		rate:           rate,
		chunk:          max(1, min(paceChunk, int(rate/10))),
		start:          time.Now(),
	}
}

// Write sends p a chunk at a time, each once the bytes before it are due.
// The schedule is absolute (start + sent/rate), so a late wake-up does not
// lower the rate, and each wait is at most one chunk's time (a tenth of a
// second at most), on a timer: no busy loop. A client that goes away ends
// the wait.
func (p *pacedWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		due := p.start.Add(time.Duration(float64(p.sent) / p.rate * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			if err := p.wait(d); err != nil {
				return written, err
			}
		}
		n, err := p.ResponseWriter.Write(b[:min(len(b), p.chunk)])
		written += n
		p.sent += int64(n)
		b = b[n:]
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (p *pacedWriter) wait(d time.Duration) error {
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
		return nil
	case <-p.ctx.Done():
		p.timer.Stop()
		return p.ctx.Err()
	}
}
