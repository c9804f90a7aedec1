package httpmirror

import (
	"errors"
	"testing"
)

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
