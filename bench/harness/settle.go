package main

// Checks around the measured runs: warm-up, verifying what a proxy stored,
// and settling (waiting until a proxy has finished with the last object).

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// warmUp stores the warm objects in px and checks that a second request is
// a hit: served whole and right, without another origin GET.
func (b *bench) warmUp(ctx context.Context, px *proxy) error {
	small, err := newObject(b.data, "warm-small-"+px.name, 4<<10)
	if err != nil {
		return err
	}
	large, err := newObject(b.data, "warm-large-"+px.name, b.cfg.coldSize)
	if err != nil {
		return err
	}
	b.warmSmall[px.name], b.warmLarge[px.name] = small, large
	for _, o := range []*object{small, large} {
		if err := b.verify(ctx, px, o, false); err != nil {
			return err
		}
		b.settle(px)
		if err := b.verify(ctx, px, o, true); err != nil {
			return err
		}
		b.warmGets[o.path] = b.origin.gets(o.path)
	}
	logf("%s: warm objects stored and served as hits", px.name)
	return nil
}

// verify downloads o through px and compares every byte with the data
// file. With hit, it also checks that the proxy answered from its cache:
// the download cost no origin request, the proxy fetched each byte of o
// once in all (httpmirror may have fetched it in several ranged requests),
// and nginx says HIT.
func (b *bench) verify(ctx context.Context, px *proxy, o *object, hit bool) error {
	before := b.origin.gets(o.path)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c := newClient(1)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, px.base+o.path, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: status %d", o.path, resp.StatusCode)
	}
	if err := verifyFull(b.data, o, resp.Body); err != nil {
		return fmt.Errorf("GET %s: %w", o.path, err)
	}
	if !hit {
		return nil
	}
	if cs := resp.Header.Get("X-Cache-Status"); px.name == ng && cs != "HIT" {
		b.res.problem("%s: %s after it was stored: X-Cache-Status %q, want HIT", px.name, o.path, cs)
	}
	if n := b.origin.gets(o.path); n != before {
		b.res.problem("%s: a hit on %s cost %d origin GETs; want none", px.name, o.path, n-before)
	}
	if !b.origin.fetchedOnce(o.path) {
		b.res.problem("%s: %s was not fetched once (one whole GET, ranges not overlapping)", px.name, o.path)
	}
	return nil
}

// settle waits until the proxy has finished with the last cold object: the
// origin answers nothing, httpmirror has committed (its tmp/ is empty), and
// the page cache has been written back, so the next run does not pay for
// this one's disk writes.
func (b *bench) settle(px *proxy) {
	if !b.settleWithin(px, 2*time.Minute) {
		b.res.problem("%s: origin still busy 2 minutes after a run", px.name)
	}
}

// settleWithin is settle, waiting at most limit for the origin to be idle.
// It reports whether the origin became idle; the caller reports if not.
func (b *bench) settleWithin(px *proxy, limit time.Duration) bool {
	idle := b.origin.waitIdle(limit)
	if px.name == hm {
		tmp := filepath.Join(px.cacheDir, "tmp")
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if e, err := os.ReadDir(tmp); err != nil || len(e) == 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	syncFS(time.Minute)
	time.Sleep(200 * time.Millisecond)
	return idle
}

// syncFS writes back dirty pages (sync(2): syncfs has no wrapper in package
// syscall, and the caches share a file system with everything else here
// anyway), waiting at most limit.
func syncFS(limit time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		syscall.Sync()
	}()
	select {
	case <-done:
	case <-time.After(limit):
	}
}
