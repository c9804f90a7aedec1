package s3

import (
	"errors"
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror/storage"
)

func TestObjectKey(t *testing.T) {
	long := strings.Repeat("x", 300)
	hashed := func(got string) bool {
		return strings.HasPrefix(got, "root/~~sha256/") && len(got) == len("root/~~sha256/ab/")+64
	}
	exact := func(want string) func(string) bool { return func(got string) bool { return got == want } }
	tests := []struct {
		key string
		ok  func(string) bool
	}{
		{"example.com/a/b.tar.gz", exact("root/example.com/a/b.tar.gz")},
		{"example.com/simple/pkg/", exact("root/example.com/simple/pkg~~dir")},
		{"example.com/%7Euser/a~b", exact("root/example.com/%7Euser/a~b")},
		{"example.com/a~/", exact("root/example.com/a~~~dir")},
		{"example.com/a~~dir", hashed},
		{"example.com/~~sha256/ab/x", hashed},
		{"example.com/" + long, hashed},
		{"example.com/" + strings.Repeat("y/", 600), hashed},
		{"example.com/" + strings.Repeat("y", 255), exact("root/example.com/" + strings.Repeat("y", 255))},
		// The directory suffix counts toward the segment limit.
		{"example.com/" + strings.Repeat("y", 255) + "/", hashed},
	}
	for _, tc := range tests {
		got, err := objectKey("root/", tc.key)
		if err != nil {
			t.Errorf("objectKey(%.40q): %v", tc.key, err)
			continue
		}
		if !tc.ok(got) {
			t.Errorf("objectKey(%.40q) = %.80q", tc.key, got)
		}
		if len(got) > maxObjectKey {
			t.Errorf("objectKey(%.40q) is %d bytes; S3 allows %d", tc.key, len(got), maxObjectKey)
		}
	}
	if _, err := objectKey("", "a/../b"); !errors.Is(err, storage.ErrInvalidKey) {
		t.Errorf("objectKey of an invalid key: %v; want ErrInvalidKey", err)
	}
}

// No two valid keys share an object key.
func FuzzObjectKeyInjective(f *testing.F) {
	for _, pair := range [][2]string{
		{"a.com/b", "a.com/b/"},
		{"a.com/b~~dir", "a.com/b/"},
		{"a.com/b~/", "a.com/b~~dir"},
		{"a.com/b~", "a.com/b/"},
		{"a.com/" + strings.Repeat("z", 256), "a.com/~~sha256/00/x"},
		{"a.com/x~~", "a.com/x~/"},
	} {
		f.Add(pair[0], pair[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == b || storage.ValidateKey(a) != nil || storage.ValidateKey(b) != nil {
			return
		}
		ka, _ := objectKey("p/", a)
		kb, _ := objectKey("p/", b)
		if ka == kb {
			t.Fatalf("keys %q and %q both map to %q", a, b, ka)
		}
	})
}
