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
// -profile: a CPU profile of the window's first seconds and the
// allocations made during the window, both from httpmirror's own
// /debug/pprof on its admin listener. Windows are numbered in order.
func (b *bench) profile(px *proxy, on bool) {
	if b.cfg.profile == "" || px.name != hm {
		return
	}
	if !on {
		if b.cpuDone != nil {
			<-b.cpuDone
			b.cpuDone = nil
		}
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
	done := make(chan struct{})
	b.cpuDone = done
	go func() {
		defer close(done)
		b.fetchProfile(px, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), fmt.Sprintf("%02d.%s.cpu", n, b.scenario))
	}()
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
