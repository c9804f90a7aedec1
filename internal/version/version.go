// Package version says which build of httpmirror is running: the module
// version and the VCS revision the Go toolchain recorded in the binary.
package version

import (
	"runtime/debug"
	"sync"
	"time"
)

// Info describes the running build.
type Info struct {
	// Version is the module version ("v1.2.3", or "(devel)" for a build
	// from a checkout).
	Version string `json:"version"`
	// Revision is the VCS revision the binary was built from, "" when
	// the build recorded none; Modified says the work tree had changes.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// Time is the commit time of Revision, zero when unknown.
	Time time.Time `json:"time,omitzero"`
	// Go is the toolchain that built the binary.
	Go string `json:"go"`
}

// String formats the build on one line: "httpmirror v1.2.3 (rev 0123abcd, modified) go1.26".
func (i Info) String() string {
	s := "httpmirror " + i.Version
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " (rev " + rev
		if i.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + " " + i.Go
}

var get = sync.OnceValue(func() Info {
	info := Info{Version: "(unknown)"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.Go = bi.GoVersion
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "vcs.time":
			info.Time, _ = time.Parse(time.RFC3339, s.Value)
		}
	}
	return info
})

// Get returns the running build's Info, read once.
func Get() Info { return get() }
