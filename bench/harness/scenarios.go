package main

import (
	"context"
	"fmt"
	"time"
)

// scenarioA measures warm 4 KiB hits with wrk.
func (b *bench) scenarioA(ctx context.Context, px *proxy, round int) error {
	url := px.base + b.warmSmall[px.name].path
	if round == 1 {
		// Open connections and fill caches before the first measurement.
		if _, err := runWrk(ctx, b.cfg.wrk, url, b.cfg.wrkThreads, b.cfg.wrkConns, 2*time.Second); err != nil {
			return err
		}
	}
	b.profile(px, true)
	w, err := runWrk(ctx, b.cfg.wrk, url, b.cfg.wrkThreads, b.cfg.wrkConns, b.cfg.wrkDuration)
	b.profile(px, false)
	if err != nil {
		return err
	}
	b.res.add("a.rps", px.name, w.rps)
	logf("(a) round %d %-10s %8.0f req/s", round, px.name, w.rps)
	if w.non2xx > 0 {
		b.res.problem("(a) round %d %s: %d responses were not 2xx/3xx", round, px.name, w.non2xx)
	}
	if w.sockErr != "" {
		b.res.problem("(a) round %d %s: wrk reported %s", round, px.name, w.sockErr)
	}
	b.checkWarm(round, "a", px, b.warmSmall[px.name])
	return nil
}

// scenarioB measures parallel downloads of a warm large object, and the
// proxy's peak RSS meanwhile.
func (b *bench) scenarioB(ctx context.Context, px *proxy, round int) error {
	o := b.warmLarge[px.name]
	if err := px.p.resetPeakRSS(); err != nil {
		return err
	}
	b.profile(px, true)
	rs, wall, err := burst(ctx, px.base, b.cfg.parallel, o, b.warmSmall[px.name], time.Minute)
	b.profile(px, false)
	if err != nil {
		return err
	}
	rss, err := px.p.peakRSS()
	if err != nil {
		return err
	}
	if err := firstErr(rs); err != nil {
		return err
	}
	mbps := float64(int64(b.cfg.parallel)*o.size) / wall.Seconds() / 1e6
	b.res.add("b.mbps", px.name, mbps)
	b.res.add("b.rss", px.name, mib(rss))
	logf("(b) round %d %-10s %8.0f MB/s, peak RSS %.1f MiB", round, px.name, mbps, mib(rss))
	b.checkWarm(round, "b", px, o)
	return nil
}

// checkWarm checks that the hits on warm object o cost no origin request.
func (b *bench) checkWarm(round int, key string, px *proxy, o *object) {
	if n := b.origin.gets(o.path) - b.warmGets[o.path]; n != 0 {
		b.res.problem("(%s) round %d %s: origin saw %d GETs for the warm object since it was stored; want none", key, round, px.name, n)
	}
}

// scenarioC measures a lone client on a cold object, then a burst of
// clients on another cold object. As a reference for the lone client, it
// first downloads a cold object straight from the origin, as a client
// without a proxy would (the same TLS cost as the proxy's upstream fetch).
func (b *bench) scenarioC(ctx context.Context, px *proxy, round int) error {
	if err := b.direct(ctx, px, round); err != nil {
		return err
	}
	lone, err := newObject(b.data, fmt.Sprintf("cold-r%d-%s-lone", round, px.name), b.cfg.coldSize)
	if err != nil {
		return err
	}
	b.profile(px, true)
	rs, _, err := burst(ctx, px.base, 1, lone, b.warmSmall[px.name], 2*time.Minute)
	if err != nil {
		b.profile(px, false)
		return err
	}
	b.settle(px)
	b.profile(px, false)
	if err := firstErr(rs); err != nil {
		return fmt.Errorf("lone client: %w", err)
	}
	b.res.add("c.lone.ttfb", px.name, ms(rs[0].ttfb))
	b.res.add("c.lone.ttlb", px.name, ms(rs[0].ttlb))
	logf("(c) round %d %-10s lone: TTFB %.1f ms, TTLB %.0f ms", round, px.name, ms(rs[0].ttfb), ms(rs[0].ttlb))
	b.checkCold(ctx, px, round, "c", lone)

	o, err := newObject(b.data, fmt.Sprintf("cold-r%d-%s-burst", round, px.name), b.cfg.coldSize)
	if err != nil {
		return err
	}
	return b.coldBurst(ctx, px, round, "c", o)
}

// direct downloads a new object straight from the origin, on an open
// connection, and records its times as the reference for px's lone run.
func (b *bench) direct(ctx context.Context, px *proxy, round int) error {
	warm, err := newObject(b.data, fmt.Sprintf("direct-r%d-%s-warm", round, px.name), 4<<10)
	if err != nil {
		return err
	}
	o, err := newObject(b.data, fmt.Sprintf("direct-r%d-%s", round, px.name), b.cfg.coldSize)
	if err != nil {
		return err
	}
	c := newOriginClient(b.origin.roots)
	defer c.CloseIdleConnections()
	if r := fetch(ctx, c, b.origin.URL, warm, 10*time.Second); r.err != nil {
		return fmt.Errorf("direct: %w", r.err)
	}
	r := fetch(ctx, c, b.origin.URL, o, 2*time.Minute)
	if r.err != nil {
		return fmt.Errorf("direct: %w", r.err)
	}
	b.res.add("c.direct.ttfb", px.name, ms(r.ttfb))
	b.res.add("c.direct.ttlb", px.name, ms(r.ttlb))
	logf("(c) round %d %-10s direct from origin: TTFB %.1f ms, TTLB %.0f ms", round, px.name, ms(r.ttfb), ms(r.ttlb))
	b.settle(px)
	return nil
}

// scenarioE is a burst on a cold big object.
func (b *bench) scenarioE(ctx context.Context, px *proxy, round int) error {
	o, err := newObject(b.data, fmt.Sprintf("big-r%d-%s-burst", round, px.name), b.cfg.bigSize)
	if err != nil {
		return err
	}
	return b.coldBurst(ctx, px, round, "e", o)
}

// coldBurst starts the burst clients at once on cold object o and records
// their times, the origin's GETs and the proxy's peak RSS under key.
func (b *bench) coldBurst(ctx context.Context, px *proxy, round int, key string, o *object) error {
	if err := px.p.resetPeakRSS(); err != nil {
		return err
	}
	b.profile(px, true)
	rs, _, err := burst(ctx, px.base, b.cfg.burst, o, b.warmSmall[px.name], 5*time.Minute)
	if err != nil {
		b.profile(px, false)
		return err
	}
	b.settle(px)
	b.profile(px, false)
	rss, rssErr := px.p.peakRSS()
	if err := firstErr(rs); err != nil {
		return err
	}
	if rssErr != nil {
		return rssErr
	}
	var ttfb []float64
	var ttfbMax, ttlbMax time.Duration
	for _, r := range rs {
		ttfb = append(ttfb, ms(r.ttfb))
		ttfbMax = max(ttfbMax, r.ttfb)
		ttlbMax = max(ttlbMax, r.ttlb)
	}
	med, _ := median(ttfb)
	gets := b.origin.gets(o.path)
	b.res.add(key+".once", px.name, yes01(b.origin.fetchedOnce(o.path)))
	b.res.add(key+".ttfb.med", px.name, med)
	b.res.add(key+".ttfb.max", px.name, ms(ttfbMax))
	b.res.add(key+".ttlb.max", px.name, ms(ttlbMax))
	b.res.add(key+".gets", px.name, float64(gets))
	b.res.add(key+".rss", px.name, mib(rss))
	logf("(%s) round %d %-10s %d clients: TTFB median %.1f ms, max %.1f ms; TTLB max %.0f ms; origin GETs %d; peak RSS %.1f MiB",
		key, round, px.name, len(rs), med, ms(ttfbMax), ms(ttlbMax), gets, mib(rss))
	b.checkCold(ctx, px, round, key, o)
	return nil
}

// checkCold fetches a cold object again, now that it should be stored, and
// checks it byte for byte and that it came from the cache.
func (b *bench) checkCold(ctx context.Context, px *proxy, round int, key string, o *object) {
	before := b.origin.gets(o.path)
	if err := b.verify(ctx, px, o, false); err != nil {
		if ctx.Err() == nil {
			b.res.problem("(%s) round %d %s: stored object wrong: %v", key, round, px.name, err)
		}
		return
	}
	if after := b.origin.gets(o.path); after != before {
		b.res.problem("(%s) round %d %s: fetching the object again cost %d more origin GETs; it was not stored", key, round, px.name, after-before)
	}
	b.settle(px)
}
