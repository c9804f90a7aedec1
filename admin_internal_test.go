package httpmirror

import (
	"errors"
	"testing"
)

func TestCachePrefix(t *testing.T) {
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
		got, err := cachePrefix(c.in)
		if err != nil || got != c.want {
			t.Errorf("cachePrefix(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"example", "ftp://example.com/", "example.com/../x", "example.com/%2e%2e/b", "ex ample.com/", "user@example.com/"} {
		if got, err := cachePrefix(bad); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("cachePrefix(%q) = %q, %v; want ErrInvalidRef", bad, got, err)
		}
	}
}

func TestUnderPrefix(t *testing.T) {
	for _, c := range []struct {
		prefix, key string
		want        bool
	}{
		{"example.com/pool", "example.com/pool", true},
		{"example.com/pool", "example.com/pool/", true},
		{"example.com/pool", "example.com/pool/a/b", true},
		{"example.com/pool", "example.com/pool?x=1", true},
		{"example.com/pool", "example.com/pool2/a", false},
		{"example.com/pool/", "example.com/pool/a", true},
		{"example.com/pool/", "example.com/pool", false},
		{"example.com", "example.com.evil.org/a", false},
		{"example.com", "example.com/a", true},
		{"", "anything.org/a", true},
	} {
		if got := underPrefix(c.prefix, c.key); got != c.want {
			t.Errorf("underPrefix(%q, %q) = %v; want %v", c.prefix, c.key, got, c.want)
		}
	}
}

// References resolve as client requests would, under the handler's
// rules: its query policy, its blocked suffixes and, with Host, its only
// origin.
func TestCacheKeyFollowsHandlerRules(t *testing.T) {
	m := &MirrorHandler{Host: "Files.Example.com", BlockSuffix: []string{".exe"}}
	key, upstream, err := m.CacheKey("https://files.example.com/a//b.tgz?token=x")
	if err != nil || key != "files.example.com/a/b.tgz" || upstream != "https://files.example.com/a/b.tgz" {
		t.Errorf("CacheKey = %q, %q, %v", key, upstream, err)
	}
	for _, ref := range []string{"https://other.example.com/a", "files.example.com/setup.EXE", "files.example.com"} {
		if _, _, err := m.CacheKey(ref); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("CacheKey(%q): %v; want ErrInvalidRef", ref, err)
		}
	}
	q := &MirrorHandler{CacheQuery: true, UpstreamScheme: "http"}
	if key, upstream, err := q.CacheKey("example.com/list?page=2"); err != nil || key != "example.com/list?page=2" || upstream != "http://example.com/list?page=2" {
		t.Errorf("CacheKey with CacheQuery = %q, %q, %v", key, upstream, err)
	}
}
