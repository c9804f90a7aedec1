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
