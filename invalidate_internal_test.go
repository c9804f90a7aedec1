package httpmirror

import (
	"errors"
	"strings"
	"testing"
)

func TestResolveGlob(t *testing.T) {
	for _, c := range []struct {
		glob, pattern, literal string
	}{
		{"example.com/dists/*/InRelease", "example.com/dists/*/InRelease", "example.com/dists/"},
		{"https://Example.COM/pool/*.deb", "example.com/pool/*.deb", "example.com/pool/"},
		{"http://example.com./a", "example.com/a", "example.com/a"},
		{"/example.com/a/**/b***", "example.com/a/*/b*", "example.com/a/"},
		{"Exam*/Path", "exam*/Path", "exam"},
		{"*", "*", ""},
		{"**", "*", ""},
		{"*/InRelease", "*/InRelease", ""},
		{"example.com/list?page=*", "example.com/list?page=*", "example.com/list?page="},
	} {
		p, l, err := ResolveGlob(c.glob)
		if err != nil || p != c.pattern || l != c.literal {
			t.Errorf("ResolveGlob(%q) = %q, %q, %v; want %q, %q", c.glob, p, l, err, c.pattern, c.literal)
		}
		if !strings.HasPrefix(p, l) {
			t.Errorf("ResolveGlob(%q): the pattern %q does not start with its literal %q", c.glob, p, l)
		}
	}
	for _, bad := range []string{"", "/", "https://", "ftp://x/*", "[", "x/[ab]", "x/{a,b}", "x/]", "x/\x00*", "x\\y/*",
		"exa mple/*", "x/" + strings.Repeat("*a", MaxGlobLength), "x/\xff*"} {
		if _, _, err := ResolveGlob(bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("ResolveGlob(%q): %v; want ErrInvalidRef", bad, err)
		}
	}
}
