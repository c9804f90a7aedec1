package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profile starts (on) or ends a profiling window of httpmirror, with
// -profile: a CPU profile and an execution trace of the window's first
// seconds and the
// allocations made during the window, both from httpmirror's own
// /debug/pprof on its admin listener. Windows are numbered in order.
func (b *bench) profile(px *proxy, on bool) {
	if b.cfg.profile == "" || px.name != hm {
		return
	}
	if !on {
		for _, d := range b.cpuDone {
			<-d
		}
		b.cpuDone = nil
		b.fetchProfile(px, "/debug/pprof/allocs", fmt.Sprintf("%02d.allocs", b.windows))
		return
	}
	b.windows++
	n := b.windows
	b.fetchProfile(px, "/debug/pprof/allocs", fmt.Sprintf("%02d.allocs.base", n))
	secs := b.cfg.profileSecs
	if b.scenario == "a" {
		secs = int(b.cfg.wrkDuration / time.Second)
	}
	b.cpuDone = nil
	for _, w := range []struct{ path, name string }{
		{"profile", "cpu"},
		// The execution trace shows where requests wait (system calls,
		// locks, the network), which a CPU profile does not.
		{"trace", "trace"},
	} {
		done := make(chan struct{})
		b.cpuDone = append(b.cpuDone, done)
		go func() {
			defer close(done)
			b.fetchProfile(px, fmt.Sprintf("/debug/pprof/%s?seconds=%d", w.path, secs), fmt.Sprintf("%02d.%s.%s", n, b.scenario, w.name))
		}()
	}
}

// fetchProfile saves a profile from httpmirror's admin listener.
func (b *bench) fetchProfile(px *proxy, path, name string) {
	resp, err := http.Get("http://" + px.admin + path)
	if err != nil {
		logf("profile %s: %v", path, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(b.cfg.profile, name))
	if err != nil {
		logf("profile %s: %v", path, err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}
