package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/internal/clock"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

func (f *Fill) run() {
	g := f.g
	defer f.Release()
	ctx := f.ctx
	log := g.log.With("key", f.key)
	if ctx.Err() != nil {
		f.finish(context.Cause(ctx), false)
		return
	}
	if f.op == opMiss && f.openStored(ctx, log) {
		return
	}

	start := time.Now()
	n, stored, err := f.fetch(ctx, log)
	g.opts.Observer.FillDone(f.key, n, stored, err, time.Since(start))
	var de *DigestError
	switch {
	case errors.Is(err, ErrAbandoned):
		log.Debug("fill stopped: no reader left and nothing to store", "upstream", f.src.URL, "bytes", n)
	case errors.Is(err, ErrTooLarge):
		log.Info("object larger than the size limit; not fetched through the cache", "upstream", f.src.URL)
	case errors.As(err, &de):
		// The one line that says the origin served wrong bytes.
		log.Error("digest mismatch: nothing stored, every transfer aborted", "upstream", f.src.URL,
			"source", de.Source, "alg", de.Alg, "expected", fmt.Sprintf("%x", de.Expected), "got", fmt.Sprintf("%x", de.Got))
	case err != nil:
		if !errors.Is(err, ErrNotOK) && !errors.Is(err, ErrNotModified) {
			log.Warn("fill failed", "upstream", f.src.URL, "bytes", n, "err", err)
		}
	default:
		log.Debug("fill complete", "upstream", f.src.URL, "bytes", n, "stored", stored, "duration", time.Since(start))
	}
	f.finish(err, stored)
}

// openStored ends a miss's fill at once when storage has the object by now,
// with the stored object as its spool. It reports whether it did.
func (f *Fill) openStored(ctx context.Context, log *slog.Logger) bool {
	obj, err := f.g.store.Open(ctx, f.key)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			log.Warn("storage open failed; fetching from origin", "err", err)
		}
		return false
	}
	f.addCloser(obj.Close)
	info := obj.Info()
	f.setHeader(info, objectReaderAt(obj))
	f.advance(info.Size)
	f.finish(nil, true)
	return true
}

// objectReaderAt reads a stored object at offsets: directly when it can,
// else by seeking under a lock.
func objectReaderAt(obj storage.Object) io.ReaderAt {
	if ra, ok := obj.(io.ReaderAt); ok {
		return ra
	}
	return &seekReaderAt{rs: obj}
}

type seekReaderAt struct {
	mu sync.Mutex
	rs io.ReadSeeker
}

func (s *seekReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.rs.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	return io.ReadFull(s.rs, p)
}

// fetch downloads the object into the spool and storage. It returns the
// bytes received, whether the object was committed, and the error that
// ended the download.
func (f *Fill) fetch(ctx context.Context, log *slog.Logger) (n int64, stored bool, err error) {
	g := f.g
	spec := f.speculate(ctx)
	// The speculative range is used by the segments, or dropped here.
	defer spec.drop()
	resp, end, err := f.first(ctx)
	if err != nil {
		return 0, false, f.cause(ctx, err)
	}
	if resp.StatusCode == http.StatusNotModified && f.op == opRevalidate {
		drain(resp.Body)
		return 0, false, &NotModifiedError{Header: resp.Header}
	}
	if resp.StatusCode != http.StatusOK && end < 0 {
		drain(resp.Body)
		return 0, false, &StatusError{Code: resp.StatusCode, Header: resp.Header}
	}
	info := g.opts.Info(resp)
	info.Key = f.key
	if max := g.opts.MaxObjectSize; max > 0 && info.Size > max {
		resp.Body.Close()
		return 0, false, ErrTooLarge
	}
	// keepable: the object may be stored, by this fill unless another
	// party's copy is relayed (then by this fill only if it takes the
	// fetch over, see Options.Relayed).
	keepable := g.opts.Storable == nil || g.opts.Storable(f.key, resp)
	relayed := g.opts.Relayed != nil && g.opts.Relayed(resp)
	storable := keepable && !relayed
	segmented := f.segmentable(info, end, relayed)
	var published []policy.Expected
	if g.opts.Digests != nil {
		published = g.opts.Digests(f.key, resp)
	}
	v := newVerifier(published, storable)
	if segmented && g.opts.Digests != nil && f.src.Head != nil && !resp.Uncompressed {
		// The first answer is a part: the digests of a whole response
		// come from a HEAD, asked beside the segments (of the bytes as
		// sent: none when the transport decoded them).
		if v == nil {
			v = &verifier{}
		}
		v.late = f.wholeDigests(ctx, resp, info, log)
	}
	if v == nil && relayed && keepable {
		// Computes nothing unless the fill takes the fetch over and
		// stores the object: it then hashes the prefix (see store).
		v = &verifier{}
	}
	if v.checking() {
		// Before any byte is visible: readers wait for the verdict to
		// take the last one.
		f.mu.Lock()
		f.holdLast = true
		f.mu.Unlock()
	}

	spool, err := f.openSpool(ctx, info, storable, segmented, relayed)
	if err != nil {
		resp.Body.Close()
		return 0, false, err
	}

	if segmented {
		n, err = f.fetchSegments(ctx, resp, end, info, spool, spec, v)
	} else {
		n, err = f.copyBody(ctx, resp, end, info, spool, v, relayed, keepable)
	}
	if err == nil && v != nil {
		var sum []byte
		sum, err = v.verdict()
		if err == nil {
			f.verified()
		}
		if err == nil && sum != nil {
			// Readers hold the published header: the stored one is a copy.
			h := info.Header.Clone()
			if h == nil {
				h = http.Header{}
			}
			h.Set(policy.DigestHeader, policy.FormatSHA256(sum))
			info.Header = h
		}
	}
	// spool.w is nil when storage failed: the clients are served from the
	// spool and nothing is cached.
	w := spool.w
	if err != nil {
		if w != nil {
			w.Cancel(context.Background())
		}
		return n, false, err
	}
	if w == nil {
		return n, false, nil
	}
	if u, ok := w.(storage.InfoUpdater); ok && info.Header.Get(policy.DigestHeader) != "" {
		// The object's digest is part of its metadata.
		if err := u.UpdateInfo(info); err != nil {
			g.log.Warn("recording the object's digest failed", "key", f.key, "err", err)
		}
	}
	if err := w.Commit(ctx); err != nil {
		// Every client got its bytes from the spool; only the cache
		// misses out. The next request fetches again.
		g.storeFailed(f.key, "storage commit failed", err)
		w.Cancel(context.Background())
		return n, false, nil
	}
	g.storeWorked()
	return n, true, nil
}

// cause turns a cancellation of the group's context into ErrShutdown.
func (f *Fill) cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return err
}

const bufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// copyBody copies the origin's body into the spool (and the verifier v,
// when not nil), resuming broken bodies as the options allow. A relayed
// body (another party's copy, see Options.Relayed) is resumed as long as
// it brings bytes; once a resume comes from the origin itself, the object
// is stored if it may be (keepable). A first body that brings the
// object's first end bytes only (end not -1, see first) is followed by
// the rest, asked for as a resume is, without counting as one. It returns
// the number of bytes written.
func (f *Fill) copyBody(ctx context.Context, resp *http.Response, end int64, info storage.Info, sw *spoolWriter, v *verifier, relayed, keepable bool) (int64, error) {
	var fd *feeder
	n, err := f.copyBodyFrom(ctx, resp, end, info, sw, v, relayed, func() {
		if keepable {
			fd = sw.store(ctx, f, info, v)
		}
	})
	if fd != nil {
		err = fd.wait(err)
	}
	return n, err
}

// copyBodyFrom is copyBody; takeover is called when a resume of a relayed
// body came from the origin.
func (f *Fill) copyBodyFrom(ctx context.Context, resp *http.Response, end int64, info storage.Info, sw *spoolWriter, v *verifier, relayed bool, takeover func()) (int64, error) {
	g := f.g
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	body := resp.Body
	max := g.opts.MaxObjectSize
	var hash io.Writer
	switch {
	case v == nil || v.sha == nil && len(v.checks) == 0:
		// Nothing to hash (a relayed body's verifier is filled in by
		// the feeder if this fill takes the fetch over).
	case info.Size >= 0 && info.Size <= 4*bufSize:
		hash = v // hashed in a moment: no goroutine for it
	default:
		w, wait := v.behind()
		defer wait() // before the caller takes the verdict
		hash = w
	}
	sink := func(p []byte) error {
		if max > 0 && n+int64(len(p)) > max {
			return ErrTooLarge
		}
		if err := sw.write(f, n, p); err != nil {
			return err
		}
		n += int64(len(p))
		// Readers take the chunk while it is hashed beside the copy (the
		// last byte waits for the verdict when a digest is checked: see
		// holdLast).
		f.advance(int64(len(p)))
		if hash != nil {
			hash.Write(p) // in order, resumed bodies included
		}
		return nil
	}
	var from int64 // where the current body started
	for attempt := 0; ; {
		err := f.pump(ctx, body, body, buf, sink)
		body.Close()
		// part: the body was the object's first part, and brought it.
		part := err == nil && end >= 0 && n == end && n < info.Size
		end = -1
		if part {
			err = errFirstPart
		}
		if err == nil {
			if info.Size >= 0 && n != info.Size {
				return n, ErrShortBody
			}
			return n, nil
		}
		if ctx.Err() != nil {
			return n, f.cause(ctx, err)
		}
		if errors.Is(err, ErrSpool) || errors.Is(err, ErrTooLarge) {
			return n, err
		}
		// A relayed body that brought bytes is resumed once more at
		// once, beyond Retry: the party it came from may be gone, and the
		// source finds where the rest is (see Options.Relayed). A resume
		// that brings nothing counts as an attempt.
		free := relayed && n > from || part
		if !free && attempt >= g.opts.Retry {
			return n, err
		}
		validator := policy.IfRange(info)
		if validator == "" {
			return n, fmt.Errorf("%w (cannot resume: origin sent no strong ETag or Last-Modified)", err)
		}
		// Attempts that fail before any body arrives count too, so a dead
		// origin ends the fill after Retry tries.
		var next *http.Response
		for {
			if !free {
				attempt++
				if err := clock.Sleep(ctx, g.opts.RetryInterval); err != nil {
					return n, f.cause(ctx, err)
				}
			}
			if !part {
				g.log.Info("resuming upstream body", "key", f.key, "offset", n, "attempt", attempt, "relayed", relayed, "err", err)
			}
			part = false
			next, err = f.resume(ctx, n, info, validator)
			if err == nil {
				break
			}
			free = false
			if errors.Is(err, ErrOriginChanged) || attempt >= g.opts.Retry || ctx.Err() != nil {
				return n, f.cause(ctx, err)
			}
		}
		body, from = next.Body, n
		if relayed && !g.opts.Relayed(next) {
			// The origin answered: this fill took the fetch over.
			relayed = false
			takeover()
		}
	}
}

// pump reads body until EOF or an error and hands every chunk to sink,
// enforcing the idle timeout and the minimum rate. closer closes the
// response body underneath: when ctx ends or the body stalls.
func (f *Fill) pump(ctx context.Context, body io.Reader, closer io.Closer, buf []byte, sink func([]byte) error) error {
	// A body whose reader ignores cancellation would keep a shutdown
	// waiting: close it when the fill's context ends.
	stop := context.AfterFunc(ctx, func() { closer.Close() })
	defer stop()
	idle := f.g.opts.IdleTimeout
	var timer *time.Timer
	timedOut := make(chan struct{})
	if idle > 0 {
		// A body that stalls is closed from the timer; the blocked Read then
		// returns and the stall is reported as ErrIdleTimeout.
		timer = time.AfterFunc(idle, func() {
			close(timedOut)
			closer.Close()
		})
		defer timer.Stop()
	}
	rate := newRateCheck(f.g.opts.MinRate, idle)
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			f.g.opts.Observer.UpstreamBytes(m)
			if err := sink(buf[:m]); err != nil {
				return err
			}
			if rate != nil && rate.slow(m) {
				return ErrTooSlow
			}
		}
		if timer != nil {
			select {
			case <-timedOut:
				return ErrIdleTimeout
			default:
				timer.Reset(idle)
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if rerr == io.ErrUnexpectedEOF {
				return fmt.Errorf("%w: %w", ErrShortBody, rerr)
			}
			return rerr
		}
	}
}

// rateCheck enforces Options.MinRate: at least min bytes must arrive in
// every window.
type rateCheck struct {
	min    int64
	window time.Duration
	start  time.Time
	bytes  int64
}

func newRateCheck(rate int64, window time.Duration) *rateCheck {
	if rate <= 0 || window <= 0 {
		return nil
	}
	return &rateCheck{min: int64(float64(rate) * window.Seconds()), window: window, start: time.Now()}
}

// slow counts n more bytes and reports whether the last full window had
// too few.
func (r *rateCheck) slow(n int) bool {
	r.bytes += int64(n)
	if now := time.Now(); now.Sub(r.start) >= r.window {
		if r.bytes < r.min {
			return true
		}
		r.start, r.bytes = now, 0
	}
	return false
}

// resume requests the rest of the object from offset and checks that the
// origin continues the same object there. The response's body is the
// rest.
func (f *Fill) resume(ctx context.Context, offset int64, info storage.Info, validator string) (*http.Response, error) {
	h := http.Header{}
	h.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-")
	h.Set("If-Range", validator)
	resp, err := f.src.Get(ctx, h)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
	case http.StatusOK, http.StatusRequestedRangeNotSatisfiable:
		// 200: If-Range did not match, the origin sent a new full object.
		// 416: the object shrank below offset.
		drain(resp.Body)
		return nil, ErrOriginChanged
	default:
		drain(resp.Body)
		return nil, &StatusError{Code: resp.StatusCode, Header: resp.Header}
	}
	if err := sameObject(resp, offset, info); err != nil {
		drain(resp.Body)
		return nil, err
	}
	return resp, nil
}

// Continues reports, with an error matching ErrOriginChanged, whether resp,
// a 206 answering a Range request from offset, does not continue the
// object info describes (see sameObject).
func Continues(resp *http.Response, offset int64, info storage.Info) error {
	return sameObject(resp, offset, info)
}

// sameRange is sameObject for a 206 that must hold exactly the bytes
// [start, last] of the object.
func sameRange(resp *http.Response, start, last int64, info storage.Info) error {
	cr := resp.Header.Get("Content-Range")
	if _, end, _, ok := parseContentRange(cr); !ok || end != last {
		return fmt.Errorf("%w: a request for bytes %d-%d answered Content-Range %q", ErrOriginChanged, start, last, cr)
	}
	if err := sameValidators(resp, info); err != nil {
		return err
	}
	s, e, total, _ := parseContentRange(cr)
	if s != start || total != info.Size || (resp.ContentLength >= 0 && resp.ContentLength != e-s+1) {
		return fmt.Errorf("%w: a request for bytes %d-%d answered Content-Range %q", ErrOriginChanged, start, last, cr)
	}
	return nil
}

// sameObject checks that a 206 answering a resume at offset continues the
// object the first response described: the range starts at offset and runs
// to the end of the same total length, and every validator (ETag,
// Last-Modified) is present and equal exactly when it was in the first
// response. An origin that ignores If-Range would otherwise splice two
// versions of a file together; RFC 9110 section 15.3.7 requires a 206 to
// carry the validators a 200 would have.
func sameObject(resp *http.Response, offset int64, info storage.Info) error {
	cr := resp.Header.Get("Content-Range")
	start, end, total, ok := parseContentRange(cr)
	if !ok || start != offset || (info.Size >= 0 && (total != info.Size || end != total-1)) ||
		(resp.ContentLength >= 0 && resp.ContentLength != end-start+1) {
		return fmt.Errorf("%w: resume answered Content-Range %q for offset %d", ErrOriginChanged, cr, offset)
	}
	return sameValidators(resp, info)
}

// sameValidators checks that resp carries exactly the validators the
// first response had.
func sameValidators(resp *http.Response, info storage.Info) error {
	if etag := resp.Header.Get("ETag"); etag != info.ETag {
		return fmt.Errorf("%w: ETag %q became %q", ErrOriginChanged, info.ETag, etag)
	}
	lm := resp.Header.Get("Last-Modified")
	var t time.Time
	if lm != "" {
		var err error
		if t, err = http.ParseTime(lm); err != nil {
			return fmt.Errorf("%w: resume answered Last-Modified %q", ErrOriginChanged, lm)
		}
	}
	if !t.Equal(info.LastModified) {
		return fmt.Errorf("%w: Last-Modified %v became %q", ErrOriginChanged, info.LastModified, lm)
	}
	return nil
}

// parseContentRange parses "bytes START-END/TOTAL".
func parseContentRange(s string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(b, 10, 64)
	if tot == "*" {
		total = -1
	} else {
		total, err3 = strconv.ParseInt(tot, 10, 64)
	}
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || (total >= 0 && end >= total) {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

// drain reads a little of an unwanted body so the connection can be reused,
// then closes it.
func drain(body io.ReadCloser) {
	io.CopyN(io.Discard, body, 64<<10)
	body.Close()
}
