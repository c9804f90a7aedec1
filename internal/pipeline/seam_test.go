package pipeline

import (
	"errors"
	"testing"
)

func TestResolvePrefix(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"/", ""},
		{"Example.COM", "example.com"},
		{"example.com/", "example.com/"},
		{"https://example.com/pool/", "example.com/pool/"},
		{"http://example.com:8443/a//b/./c", "example.com:8443/a/b/c"},
		{"example.com/a b", "example.com/a%20b"},
		{"example.com/a%20b", "example.com/a%20b"},
	} {
		got, err := ResolvePrefix(c.in)
		if err != nil || got != c.want {
			t.Errorf("ResolvePrefix(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"example", "ftp://example.com/", "example.com/../x", "example.com/%2e%2e/b", "ex ample.com/", "user@example.com/"} {
		if got, err := ResolvePrefix(bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("ResolvePrefix(%q) = %q, %v; want ErrInvalidRef", bad, got, err)
		}
	}
}
