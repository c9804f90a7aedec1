package main

// Scenario (f): an origin that sends each connection at most -cap MB/s.
// httpmirror fetches a large cold object over several ranged connections
// (two at first, more while they add to the rate, up to
// --fill-connections, 8 by default) and fetches first the segment a
// client's Range request is waiting for; nginx proxy_cache fetches the
// whole object over one connection and has the bytes a Range request asks
// for only once all bytes before them have arrived. As a reference, a
// download accelerator, aria2c -x8 -s8, fetches the same size straight
// from the origin.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// rangeLen is how much of the end of the object (f) asks for.
const rangeLen = 1 << 20

// fRows are the summary rows of (f).
func fRows(cfg *config) []row {
	capName := fmt.Sprintf("capped at %g MB/s per connection", cfg.capMBps)
	whole, rng := sizeName(cfg.fSize), sizeName(cfg.fRangeSize)
	return []row{
		{fmt.Sprintf("(f) reference: straight from the origin, one connection, cold %s %s (once per round, for both)", whole, capName), "TTLB ms", "f.direct.ttlb", "%.0f", nil, true},
		{fmt.Sprintf("(f) lone client, cold %s, origin %s", whole, capName), "TTFB ms", "f.whole.ttfb", "%.1f", nil, false},
		{"", "TTLB ms", "f.whole.ttlb", "%.0f", fasterTarget("f.whole.ttlb", 3.5), false},
		{"", "TTLB / direct TTLB", "f.whole.vsdirect", "%.2f", nil, true},
		{fmt.Sprintf("(f) reference: aria2c -x8 -s8 straight from the origin, cold %s %s (once per round, for both)", whole, capName), "TTLB ms", "f.aria2.ttlb", "%.0f", nil, true},
		{"", "aria2c TTLB / TTLB", "f.whole.vsaria2", "%.2f", atLeastTarget("f.whole.vsaria2", 1.0, "aria2c TTLB / TTLB"), true},
		{"", "origin bytes beyond the object", "f.whole.over", "%.0f", notAboveTarget("f.whole.over", 64<<10, "bytes"), true},
		{"", "origin requests for the object", "f.whole.gets", "%.0f", nil, true},
		{"", "fetched once (1: yes)", "f.whole.once", "%.0f", exactTarget("f.whole.once", 1), true},
		{"(f) reference: the origin's own answer to the same Range request, warm connection, just before each proxy's run", "TTFB ms", "f.ref.ttfb", "%.1f", nil, true},
		{"", "TTLB ms (1 MiB)", "f.ref.ttlb", "%.0f", nil, true},
		{fmt.Sprintf("(f) Range: bytes=<size−1 MiB>- of a cold %s, origin %s", rng, capName), "TTFB ms", "f.range.ttfb", "%.1f", relTarget("f.range.ttfb", "f.ref.ttfb", 2, "origin TTFB"), false},
		{"", "TTFB / origin TTFB", "f.range.vsref", "%.1f", nil, true},
		{"", "TTLB ms (1 MiB)", "f.range.ttlb", "%.0f", nil, false},
		{"", "origin requests for the object", "f.range.gets", "%.0f", nil, true},
		{"", "fetched once (1: yes)", "f.range.once", "%.0f", exactTarget("f.range.once", 1), true},
	}
}

// capRate is the origin's rate for capped objects, in bytes per second.
func (b *bench) capRate() float64 { return b.cfg.capMBps * 1e6 }

// capTime is how long size bytes take at the capped rate on one
// connection.
func (b *bench) capTime(size int64) time.Duration {
	return time.Duration(float64(size) / b.capRate() * float64(time.Second))
}

// cappedObject describes a new capped object.
func (b *bench) cappedObject(name string, size int64) (*object, error) {
	o, err := newObject(b.data, name, size)
	if err != nil {
		return nil, err
	}
	o.path = cappedPath(name, size)
	return o, nil
}

// scenarioF runs (f) for px: a lone cold download of a capped object, then
// a Range request for the last MiB of another one. The first proxy of a
// round first measures the same download straight from the origin.
func (b *bench) scenarioF(ctx context.Context, px *proxy, round int) error {
	b.res.note("(f) \"origin requests\" counts every GET the origin answered for the object: httpmirror asks for its first %s, then for %s ranges on up to 8 connections (its defaults: --fill-connections 8, --fill-segment-size 8MiB), and for the range a client waits for first; nginx makes one request. The cap applies to each request alike.", sizeName(8<<20), sizeName(8<<20))
	if _, ok := b.fDirect[round]; !ok {
		if err := b.fDirectRun(ctx, round); err != nil {
			return err
		}
		if err := b.fAria2(ctx, round); err != nil {
			b.res.problem("(f) round %d: aria2c: %v", round, err)
		}
	}
	if err := b.fWhole(ctx, px, round); err != nil {
		return err
	}
	return b.fRange(ctx, px, round)
}

// fDirectRun downloads a new capped object straight from the origin on one
// open connection: the reference for both proxies' whole downloads.
func (b *bench) fDirectRun(ctx context.Context, round int) error {
	o, err := b.cappedObject(fmt.Sprintf("fdirect-r%d", round), b.cfg.fSize)
	if err != nil {
		return err
	}
	c := newOriginClient(b.origin.roots)
	defer c.CloseIdleConnections()
	if err := b.warmOrigin(ctx, c, fmt.Sprintf("fdirect-r%d-warm", round)); err != nil {
		return err
	}
	r := fetch(ctx, c, b.origin.URL, o, 2*b.capTime(o.size)+time.Minute)
	if r.err != nil {
		return fmt.Errorf("direct: %w", r.err)
	}
	for _, p := range []string{hm, ng} {
		b.res.add("f.direct.ttlb", p, ms(r.ttlb))
	}
	b.fDirect[round] = ms(r.ttlb)
	logf("(f) round %d direct from origin (capped): TTFB %.1f ms, TTLB %.0f ms", round, ms(r.ttfb), ms(r.ttlb))
	if !b.origin.waitIdle(10 * time.Second) {
		b.res.problem("(f) round %d: origin still busy 10s after the direct download", round)
	}
	return nil
}

// fAria2 downloads a new capped object straight from the origin with
// aria2c -x8 -s8 (eight connections, eight pieces): the reference for
// both proxies' whole downloads, a download accelerator.
func (b *bench) fAria2(ctx context.Context, round int) error {
	bin, err := exec.LookPath(b.cfg.aria2c)
	if err != nil {
		return fmt.Errorf("%s not found (bench/install.sh installs aria2)", b.cfg.aria2c)
	}
	o, err := b.cappedObject(fmt.Sprintf("faria2-r%d", round), b.cfg.fSize)
	if err != nil {
		return err
	}
	out, err := os.MkdirTemp(b.dir, "aria2-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(out)
	ctx, cancel := context.WithTimeout(ctx, 2*b.capTime(o.size)+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-x8", "-s8", "-k1M", "--ca-certificate="+b.origin.CAFile,
		"--dir="+out, "--out=obj", "--file-allocation=none", "--allow-overwrite=true",
		"--console-log-level=warn", "--summary-interval=0", "--download-result=hide",
		b.origin.URL+o.path)
	start := time.Now()
	msg, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return fmt.Errorf("%v: %s", err, bytes.TrimSpace(msg))
	}
	got, err := os.Open(filepath.Join(out, "obj"))
	if err != nil {
		return err
	}
	defer got.Close()
	if err := verifyFull(b.data, o, got); err != nil {
		return fmt.Errorf("aria2c's file: %w", err)
	}
	for _, p := range []string{hm, ng} {
		b.res.add("f.aria2.ttlb", p, ms(d))
	}
	b.fAria[round] = ms(d)
	logf("(f) round %d aria2c -x8 -s8 from origin (capped): %.0f ms, origin requests %d", round, ms(d), b.origin.gets(o.path))
	if !b.origin.waitIdle(10 * time.Second) {
		b.res.problem("(f) round %d: origin still busy 10s after aria2c", round)
	}
	return nil
}

// warmOrigin opens c's connection to the origin with a small request.
func (b *bench) warmOrigin(ctx context.Context, c *http.Client, name string) error {
	warm, err := newObject(b.data, name, 4<<10)
	if err != nil {
		return err
	}
	if r := fetch(ctx, c, b.origin.URL, warm, 10*time.Second); r.err != nil {
		return fmt.Errorf("opening a connection to the origin: %w", r.err)
	}
	return nil
}

// fWhole is a lone client downloading a new cold capped object through px.
func (b *bench) fWhole(ctx context.Context, px *proxy, round int) error {
	o, err := b.cappedObject(fmt.Sprintf("fwhole-r%d-%s", round, px.name), b.cfg.fSize)
	if err != nil {
		return err
	}
	rs, _, err := burst(ctx, px.base, 1, o, b.warmSmall[px.name], 2*b.capTime(o.size)+time.Minute)
	if err != nil {
		return err
	}
	b.settle(px)
	if err := firstErr(rs); err != nil {
		return fmt.Errorf("whole download: %w", err)
	}
	gets := b.origin.gets(o.path)
	b.res.add("f.whole.ttfb", px.name, ms(rs[0].ttfb))
	b.res.add("f.whole.ttlb", px.name, ms(rs[0].ttlb))
	b.res.add("f.whole.gets", px.name, float64(gets))
	b.res.add("f.whole.once", px.name, yes01(b.origin.fetchedOnce(o.path)))
	if d := b.fDirect[round]; d > 0 {
		b.res.add("f.whole.vsdirect", px.name, ms(rs[0].ttlb)/d)
	}
	if a := b.fAria[round]; a > 0 {
		b.res.add("f.whole.vsaria2", px.name, a/ms(rs[0].ttlb))
	}
	b.res.add("f.whole.over", px.name, float64(b.origin.sent(o.path)-o.size))
	logf("(f) round %d %-10s whole: TTFB %.1f ms, TTLB %.0f ms, origin requests %d", round, px.name, ms(rs[0].ttfb), ms(rs[0].ttlb), gets)
	b.checkCold(ctx, px, round, "f", o)
	return nil
}

// fRange asks px for the last MiB of a new cold capped object, after
// measuring the origin's own answer to the same request. The client goes
// away once it has its MiB; the proxy may go on filling the object, so
// the next run waits until the origin is idle.
func (b *bench) fRange(ctx context.Context, px *proxy, round int) error {
	size := b.cfg.fRangeSize
	off := size - rangeLen
	limit := b.capTime(size) + 2*time.Minute

	ref, err := b.cappedObject(fmt.Sprintf("frange-ref-r%d-%s", round, px.name), size)
	if err != nil {
		return err
	}
	oc := newOriginClient(b.origin.roots)
	if err := b.warmOrigin(ctx, oc, fmt.Sprintf("frange-ref-r%d-%s-warm", round, px.name)); err != nil {
		oc.CloseIdleConnections()
		return err
	}
	rr := fetchRange(ctx, oc, b.origin.URL, ref, off, limit)
	oc.CloseIdleConnections()
	if rr.err == nil {
		rr.err = b.checkRange(ref, off, rr)
	}
	if rr.err != nil {
		return fmt.Errorf("range from the origin: %w", rr.err)
	}
	b.res.add("f.ref.ttfb", px.name, ms(rr.ttfb))
	b.res.add("f.ref.ttlb", px.name, ms(rr.ttlb))
	if !b.origin.waitIdle(10 * time.Second) {
		b.res.problem("(f) round %d: origin still busy 10s after its own Range answer", round)
	}

	o, err := b.cappedObject(fmt.Sprintf("frange-r%d-%s", round, px.name), size)
	if err != nil {
		return err
	}
	c := newClient(1)
	if r := fetch(ctx, c, px.base, b.warmSmall[px.name], 10*time.Second); r.err != nil {
		c.CloseIdleConnections()
		return fmt.Errorf("opening a connection: %w", r.err)
	}
	pr := fetchRange(ctx, c, px.base, o, off, limit)
	c.CloseIdleConnections()
	// Whatever the proxy does now, the next run must not share the
	// origin or the disk with it: wait (bounded) until the origin has
	// nothing left to send.
	wait := b.capTime(size) + time.Minute
	idle := b.settleWithin(px, wait)
	if !idle {
		b.res.problem("(f) round %d %s: the origin was still sending %s after the Range client left; the next run shares the machine with that fill", round, px.name, wait.Round(time.Second))
	}
	if pr.err == nil {
		pr.err = b.checkRange(o, off, pr)
	}
	if pr.err != nil {
		return fmt.Errorf("range: %w", pr.err)
	}
	if pr.whole {
		b.res.note("(f) %s answered the Range request with 200 and the whole object; its TTFB is the time until the first byte of the range arrived within it", px.name)
	}
	gets := b.origin.gets(o.path)
	b.res.add("f.range.ttfb", px.name, ms(pr.ttfb))
	b.res.add("f.range.ttlb", px.name, ms(pr.ttlb))
	b.res.add("f.range.gets", px.name, float64(gets))
	b.res.add("f.range.once", px.name, yes01(b.origin.fetchedOnce(o.path)))
	if rr.ttfb > 0 {
		b.res.add("f.range.vsref", px.name, float64(pr.ttfb)/float64(rr.ttfb))
	}
	logf("(f) round %d %-10s range of the last MiB: TTFB %.1f ms (origin's own %.1f ms), TTLB %.0f ms; origin requests %d; origin idle after: %v",
		round, px.name, ms(pr.ttfb), ms(rr.ttfb), ms(pr.ttlb), gets, idle)
	return nil
}

// rangeResult is a download of the bytes from an offset to the end.
type rangeResult struct {
	result
	whole bool   // the server answered 200 with the whole object
	body  []byte // the range's bytes
}

// fetchRange asks base for o's bytes from off to the end (Range:
// bytes=off-) and times the first and last byte of that range. A 200 with
// the whole object is read through, and the range's first byte is timed
// where it arrives within it.
func fetchRange(ctx context.Context, c *http.Client, base string, o *object, off int64, limit time.Duration) rangeResult {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var r rangeResult
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+o.path, nil)
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		r.err = err
		return r
	}
	defer resp.Body.Close()
	r.status = resp.StatusCode
	r.cache = resp.Header.Get("X-Cache-Status")
	skip := int64(0) // body bytes before the range
	switch resp.StatusCode {
	case http.StatusPartialContent:
		want := fmt.Sprintf("bytes %d-%d/%d", off, o.size-1, o.size)
		if got := resp.Header.Get("Content-Range"); got != want {
			r.err = fmt.Errorf("Content-Range %q; want %q", got, want)
			return r
		}
	case http.StatusOK:
		r.whole, skip = true, off
	default:
		r.err = fmt.Errorf("status %d", resp.StatusCode)
		return r
	}
	r.body = make([]byte, 0, o.size-off)
	buf := make([]byte, 256<<10)
	var pos int64
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 && pos+int64(n) > skip {
			if len(r.body) == 0 {
				r.ttfb = time.Since(start)
			}
			if from := max(0, skip-pos); int64(len(r.body))+int64(n)-from <= o.size-off {
				r.body = append(r.body, buf[from:n]...)
			} else {
				r.err = fmt.Errorf("body longer than %d bytes", skip+o.size-off)
				break
			}
		}
		pos += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			r.err = err
			break
		}
	}
	r.ttlb = time.Since(start)
	r.bytes = int64(len(r.body))
	return r
}

// checkRange compares the range's bytes with the data file.
func (b *bench) checkRange(o *object, off int64, r rangeResult) error {
	if want := o.size - off; r.bytes != want {
		return fmt.Errorf("got %d bytes of the range; want %d", r.bytes, want)
	}
	want := make([]byte, len(r.body))
	if _, err := b.data.ReadAt(want, objectStart(o.name)+off); err != nil {
		return err
	}
	if !bytes.Equal(r.body, want) {
		return fmt.Errorf("wrong bytes in the range from %d", off)
	}
	return nil
}
