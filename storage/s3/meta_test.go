package s3

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

func TestMetaRoundTrip(t *testing.T) {
	in := storage.Info{
		ETag:         `W/"caf\u00e9 100%"`,
		LastModified: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		ContentType:  "text/plain; charset=utf-8",
		StoredAt:     time.Unix(0, 1700000000123456789),
		Header: http.Header{
			"Content-Disposition": {"attachment; filename*=UTF-8''na%C3%AFve.txt", " padded "},
			"X-Repo-Commit":       {"0123abc"},
			"Link":                {"<https://example.com/a>; rel=\"next\"\r\n"},
		},
	}
	enc := encodeMeta(in, "")
	for i := 0; i < len(enc); i++ {
		if enc[i] <= ' ' || enc[i] >= 0x7f {
			t.Fatalf("encoded metadata has byte %#x at %d; want printable ASCII without spaces", enc[i], i)
		}
	}
	var out storage.Info
	if !decodeMeta(enc, &out) {
		t.Fatalf("decodeMeta(%q) failed", enc)
	}
	if out.ETag != in.ETag || !out.LastModified.Equal(in.LastModified) || out.ContentType != in.ContentType ||
		!out.StoredAt.Equal(in.StoredAt) || !reflect.DeepEqual(out.Header, in.Header) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestMetaDropsHeadersOverBudget(t *testing.T) {
	in := storage.Info{
		ETag: `"e"`,
		Header: http.Header{
			"Link":          {strings.Repeat("l", 3000)},
			"X-Repo-Commit": {"keep"},
		},
	}
	enc := encodeMeta(in, "")
	if len(enc) > metaBudget {
		t.Fatalf("encoded metadata is %d bytes; budget %d", len(enc), metaBudget)
	}
	var out storage.Info
	decodeMeta(enc, &out)
	if out.ETag != `"e"` || out.Header.Get("X-Repo-Commit") != "keep" || out.Header.Get("Link") != "" {
		t.Errorf("got %+v; want the ETag and X-Repo-Commit kept, Link dropped", out)
	}
}

func TestDecodeMetaForeign(t *testing.T) {
	var info storage.Info
	for _, s := range []string{"", "not json", "%zz", "{\"etag\":1}"} {
		if decodeMeta(s, &info) {
			t.Errorf("decodeMeta(%q) = true; want false", s)
		}
	}
}

func TestNative(t *testing.T) {
	h := http.Header{"Cache-Control": {"max-age=60", "public"}, "Content-Disposition": {"inline; filename=\"caf\u00e9\""}}
	if got := nativeHeader(h, "Cache-Control"); got == nil || *got != "max-age=60, public" {
		t.Errorf("Cache-Control = %v; want joined values", got)
	}
	if got := nativeHeader(h, "Content-Disposition"); got != nil {
		t.Errorf("non-ASCII Content-Disposition = %q; want it left to the metadata entry", *got)
	}
	if got := native(""); got != nil {
		t.Errorf("empty value = %q; want nil", *got)
	}
}

// The key of a hashed object is recorded when it fits in what the rest
// leaves of the budget; headers, which serving needs, come first.
func TestMetaKey(t *testing.T) {
	in := storage.Info{ETag: `"e"`, Header: http.Header{"X-Repo-Commit": {strings.Repeat("c", 1000)}}}
	if got := metaStorageKey(encodeMeta(in, "example.com/a~~b")); got != "example.com/a~~b" {
		t.Errorf("short key recorded as %q", got)
	}
	long := "example.com/" + strings.Repeat("k", 1200)
	enc := encodeMeta(in, long)
	var out storage.Info
	if !decodeMeta(enc, &out) || metaStorageKey(enc) != "" || out.Header.Get("X-Repo-Commit") == "" || len(enc) > metaBudget {
		t.Errorf("key over the budget: key %q, header kept %v, %d bytes; want the header kept and no key", metaStorageKey(enc), out.Header.Get("X-Repo-Commit") != "", len(enc))
	}
}
