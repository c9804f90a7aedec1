package fill

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// first sends the fill's first request. It returns the response as the
// object's, as a 200 would describe it (Content-Length the object's, no
// Content-Range), and end, where its body ends: -1 when the body is the
// whole object (or the response is no 200 at all), else the object's
// first end bytes only, the rest to be fetched with ranged requests.
//
// A fill that may use several connections asks for the first segment only
// (Range: bytes=0-SegmentSize-1, without If-Range: whatever version the
// origin has is the one fetched), so that its first response never has to
// be cut short. An object larger than a segment gets its other segments
// from ranged requests; a whole-object body cut where they begin has sent,
// by then, everything that the sockets between the origin and the mirror
// hold besides (megabytes on a fast link, the more the busier the mirror's
// CPUs), for nothing. An object no larger than a segment comes whole, in
// one 206, and is fetched as it would be from a 200.
//
// The request is sent again without Range when the answer is no use as
// the object's first part: a 206 of another range, or without the total
// length; a 416 (an empty object has no first byte); a part of a larger
// object without a validator (a strong ETag or Last-Modified), whose rest
// could not be proved to belong to the same version. An origin that
// ignores Range answers 200 with the whole object, which is fetched over
// one connection: its body must not be cut either.
func (f *Fill) first(ctx context.Context) (*http.Response, int64, error) {
	h := f.validators.Clone()
	if h == nil {
		h = http.Header{}
	}
	if f.g.opts.Connections < 2 {
		resp, err := f.src.Get(ctx, h)
		return resp, -1, err
	}
	seg := f.g.opts.segmentSize()
	h.Set("Range", "bytes=0-"+strconv.FormatInt(seg-1, 10))
	resp, err := f.src.Get(ctx, h)
	if err != nil {
		return nil, -1, err
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if whole, end, ok := firstPart(resp, seg); ok {
			return whole, end, nil
		}
		resp.Body.Close()
	case http.StatusRequestedRangeNotSatisfiable:
		drain(resp.Body)
	default:
		return resp, -1, nil
	}
	h.Del("Range")
	resp, err = f.src.Get(ctx, h)
	return resp, -1, err
}

// firstPart turns resp, a 206 answering the request for the first seg
// bytes of an object, into the object's response (see first). ok is false
// when resp is not exactly that part of an object of known length, or
// when it is a part of a larger object without a validator.
func firstPart(resp *http.Response, seg int64) (whole *http.Response, end int64, ok bool) {
	start, last, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok || start != 0 || total <= 0 || last+1 != min(seg, total) ||
		(resp.ContentLength >= 0 && resp.ContentLength != last+1) {
		return nil, -1, false
	}
	w := *resp
	w.Header = resp.Header.Clone()
	w.Header.Del("Content-Range")
	w.Header.Set("Content-Length", strconv.FormatInt(total, 10))
	w.ContentLength = total
	if last+1 == total {
		w.StatusCode, w.Status = http.StatusOK, "200 OK"
		return &w, -1, true
	}
	if !hasValidator(resp.Header) {
		return nil, -1, false
	}
	// A part stays a 206: digests sent with it (Content-Digest, say)
	// cover the part only (see Options.Digests).
	return &w, last + 1, true
}

// hasValidator reports whether h carries a validator that If-Range can
// send (see policy.IfRange).
func hasValidator(h http.Header) bool {
	if policy.StrongETag(h.Get("ETag")) {
		return true
	}
	_, err := http.ParseTime(h.Get("Last-Modified"))
	return err == nil
}

// wholeHeadTimeout bounds the HEAD of wholeDigests: the fill's verdict,
// and so its readers' last byte, waits for it.
var wholeHeadTimeout = 10 * time.Second

// wholeDigests asks the origin, with a HEAD, for the digests that describe
// one whole response of the object (Content-Digest, Content-MD5, the S3
// and GCS checksums; see Options.Digests), which a segmented fill's parts
// do not bring, and sends them on the channel it returns, once: those of
// a 200 for the same object (the same size, validator and content coding
// as the first part's, info and part), or none when the HEAD fails, times out or describes
// another object, or the origin publishes none. The digests the parts do
// bring (the URL's, Repr-Digest, the Hub's) are checked either way.
func (f *Fill) wholeDigests(ctx context.Context, part *http.Response, info storage.Info, log *slog.Logger) <-chan []policy.Expected {
	ch := make(chan []policy.Expected, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, wholeHeadTimeout)
		defer cancel()
		resp, err := f.src.Head(ctx)
		if err != nil {
			log.Debug("HEAD for the object's digests failed", "err", err)
			ch <- nil
			return
		}
		resp.Body.Close()
		head := f.g.opts.Info(resp)
		if resp.StatusCode != http.StatusOK || head.Size != info.Size ||
			policy.IfRange(head) != policy.IfRange(info) ||
			resp.Header.Get("Content-Encoding") != part.Header.Get("Content-Encoding") {
			log.Debug("HEAD for the object's digests answered no copy of it", "status", resp.StatusCode, "size", head.Size)
			ch <- nil
			return
		}
		ch <- f.g.opts.Digests(f.key, resp)
	}()
	return ch
}

// errFirstPart: the first body brought the object's first part, as asked
// (see first); the rest follows.
var errFirstPart = errors.New("fill: the object's first part arrived")
