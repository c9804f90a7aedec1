package httpmirror

import (
	"strings"
	"testing"
)

// FuzzCleanPath checks that the allocation-free fast path of cleanPath
// agrees with the general segment-by-segment cleaning.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a//b/", "/a/./b", "/a/../b", "/..;/x", "/a%2Fb", "/a\\b", "/a/b/.", "/a/..", "//", "/./", "/a/b/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !strings.HasPrefix(p, "/") {
			return
		}
		fast, ferr := cleanPath(p)
		slow, serr := cleanSegments(p)
		if (ferr == nil) != (serr == nil) || fast != slow {
			t.Fatalf("cleanPath(%q) = %q, %v; segment cleaning gives %q, %v", p, fast, ferr, slow, serr)
		}
	})
}

// Hosts already in canonical form, names and dotted-decimal addresses
// alike, are checked without allocating.
func TestCanonicalHostDoesNotAllocate(t *testing.T) {
	for _, h := range []string{"huggingface.co", "objects.githubusercontent.com:443", "93.184.216.34", "127.0.0.1:8080"} {
		if got, err := canonicalHost(h); err != nil || got != h {
			t.Fatalf("canonicalHost(%q) = %q, %v; want it unchanged", h, got, err)
		}
		if n := testing.AllocsPerRun(100, func() { canonicalHost(h) }); n != 0 {
			t.Errorf("canonicalHost(%q) allocates %v times", h, n)
		}
	}
}
