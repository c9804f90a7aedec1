package policy

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

func TestParseCacheControl(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    []string
		want CacheControl
	}{
		{"empty", nil, CacheControl{}},
		{"max-age", []string{"max-age=60"}, CacheControl{MaxAge: time.Minute, HasMaxAge: true}},
		{"quoted and spaced", []string{` max-age = "60" `}, CacheControl{MaxAge: time.Minute, HasMaxAge: true}},
		{"s-maxage wins", []string{"max-age=60, s-maxage=5"}, CacheControl{MaxAge: 5 * time.Second, HasMaxAge: true, SMaxAge: true}},
		{"s-maxage wins in any order", []string{"s-maxage=5", "max-age=60"}, CacheControl{MaxAge: 5 * time.Second, HasMaxAge: true, SMaxAge: true}},
		{"no-store", []string{"no-store"}, CacheControl{NoStore: true}},
		{"private is no-store for a shared cache", []string{"Private"}, CacheControl{NoStore: true}},
		{"no-cache", []string{"no-cache"}, CacheControl{NoCache: true}},
		{"qualified no-cache", []string{`no-cache="Set-Cookie"`}, CacheControl{}},
		{"must-revalidate", []string{"must-revalidate"}, CacheControl{MustRevalidate: true}},
		{"proxy-revalidate", []string{"proxy-revalidate"}, CacheControl{MustRevalidate: true}},
		{"public", []string{"public, max-age=0"}, CacheControl{Public: true, HasMaxAge: true}},
		{"negative max-age ignored", []string{"max-age=-1"}, CacheControl{}},
		{"signed max-age ignored", []string{"max-age=+5"}, CacheControl{}},
		{"garbage max-age ignored", []string{"max-age=abc"}, CacheControl{}},
		{"empty max-age ignored", []string{"max-age="}, CacheControl{}},
		{"huge max-age capped", []string{"max-age=99999999999999999999999"}, CacheControl{MaxAge: time.Duration(int64(1<<63-1) / int64(time.Second) * int64(time.Second)), HasMaxAge: true}},
		{"unknown directives", []string{"immutable, stale-while-revalidate=30"}, CacheControl{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ParseCacheControl(http.Header{"Cache-Control": tc.h})
			if got != tc.want {
				t.Errorf("ParseCacheControl(%q) = %+v; want %+v", tc.h, got, tc.want)
			}
		})
	}
}

func TestStorable(t *testing.T) {
	for cc, want := range map[string]bool{"": true, "max-age=0": true, "no-cache": true, "no-store": false, "private, max-age=60": false} {
		h := http.Header{}
		if cc != "" {
			h.Set("Cache-Control", cc)
		}
		if got := Storable(h); got != want {
			t.Errorf("Storable(%q) = %v; want %v", cc, got, want)
		}
	}
}

func TestFreshness(t *testing.T) {
	stored := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rules := Rules{RevalidatePatterns: []string{"*/@v/list"}}
	for _, tc := range []struct {
		name   string
		key    string
		header http.Header
		want   Freshness
	}{
		{"immutable by default", "example.com/a.tgz", nil, Freshness{}},
		{"pattern", "proxy.golang.org/x/@v/list", nil, Freshness{Mutable: true}},
		{"max-age", "example.com/a", http.Header{"Cache-Control": {"max-age=60"}}, Freshness{Mutable: true, Explicit: true, Lifetime: time.Minute}},
		{"max-age beats pattern", "proxy.golang.org/x/@v/list", http.Header{"Cache-Control": {"max-age=60"}}, Freshness{Mutable: true, Explicit: true, Lifetime: time.Minute}},
		{"no-cache", "example.com/a", http.Header{"Cache-Control": {"no-cache, max-age=60"}}, Freshness{Mutable: true, Explicit: true, MustRevalidate: true}},
		{"s-maxage implies proxy-revalidate", "example.com/a", http.Header{"Cache-Control": {"s-maxage=60"}}, Freshness{Mutable: true, Explicit: true, Lifetime: time.Minute, MustRevalidate: true}},
		{"max-age may be served stale", "example.com/a", http.Header{"Cache-Control": {"max-age=60"}}, Freshness{Mutable: true, Explicit: true, Lifetime: time.Minute}},
		{"must-revalidate alone", "example.com/a", http.Header{"Cache-Control": {"must-revalidate"}}, Freshness{Mutable: true, Explicit: true, MustRevalidate: true}},
		{"must-revalidate with max-age", "example.com/a", http.Header{"Cache-Control": {"max-age=5, must-revalidate"}}, Freshness{Mutable: true, Explicit: true, Lifetime: 5 * time.Second, MustRevalidate: true}},
		{"expires", "example.com/a", http.Header{"Expires": {stored.Add(time.Hour).Format(http.TimeFormat)}}, Freshness{Mutable: true, Explicit: true, Lifetime: time.Hour}},
		{"invalid expires is expired", "example.com/a", http.Header{"Expires": {"0"}}, Freshness{Mutable: true, Explicit: true}},
		{"expires in the past", "example.com/a", http.Header{"Expires": {stored.Add(-time.Hour).Format(http.TimeFormat)}}, Freshness{Mutable: true, Explicit: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rules.Freshness(tc.key, storage.Info{Header: tc.header, StoredAt: stored})
			if got != tc.want {
				t.Errorf("Freshness = %+v; want %+v", got, tc.want)
			}
		})
	}
}

func TestStale(t *testing.T) {
	stored := time.Unix(1000, 0)
	for _, tc := range []struct {
		f    Freshness
		age  time.Duration
		want bool
	}{
		{Freshness{}, time.Hour, false},
		{Freshness{Mutable: true}, 0, true},
		{Freshness{Mutable: true, Lifetime: time.Minute}, 59 * time.Second, false},
		{Freshness{Mutable: true, Lifetime: time.Minute}, time.Minute, true},
	} {
		if got := tc.f.Stale(stored, stored.Add(tc.age)); got != tc.want {
			t.Errorf("%+v.Stale(age %v) = %v; want %v", tc.f, tc.age, got, tc.want)
		}
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*/@v/list", "proxy.golang.org/github.com/a/b/@v/list", true},
		{"*/@v/list", "proxy.golang.org/github.com/a/b/@v/list.zip", false},
		{"*/simple/*", "pypi.org/simple/requests/", true},
		{"*/Packages*", "deb.debian.org/debian/dists/x/main/binary-amd64/Packages.xz", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false},
		{"", "", true},
		{"*", "", true},
		{"**", "anything/at/all", true},
		{"abc", "abd", false},
		{"*a", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", false},
	} {
		if got := Glob(tc.p, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v; want %v", tc.p, tc.s, got, tc.want)
		}
	}
}

func TestInfo(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	lm := now.Add(-time.Hour)
	redirect := &http.Response{Header: http.Header{"X-Repo-Commit": {"abc"}, "X-Linked-Size": {"42"}, "X-Other": {"no"}}}
	final := &http.Response{
		ContentLength: 42,
		Header: http.Header{
			"Etag":                {`"e"`},
			"Last-Modified":       {lm.Format(http.TimeFormat)},
			"Content-Type":        {"application/octet-stream"},
			"Content-Disposition": {"attachment"},
			"X-Linked-Size":       {"43"}, // the final response's own value wins
			"Set-Cookie":          {"never=stored"},
		},
		Request: &http.Request{URL: &url.URL{}, Response: redirect},
	}
	got := Info(final, now)
	want := storage.Info{
		Size: 42, ETag: `"e"`, LastModified: lm, ContentType: "application/octet-stream", StoredAt: now,
		Header: http.Header{"Content-Disposition": {"attachment"}, "X-Linked-Size": {"43"}, "X-Repo-Commit": {"abc"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Info = %+v; want %+v", got, want)
	}
}

func TestRefreshed(t *testing.T) {
	now := time.Unix(5000, 0)
	info := storage.Info{ETag: `"e"`, StoredAt: time.Unix(1000, 0), Header: http.Header{"Cache-Control": {"max-age=1"}, "Content-Disposition": {"x"}}}
	got := Refreshed(info, http.Header{"Cache-Control": {"max-age=60"}, "X-Repo-Commit": {"new"}, "Content-Disposition": {"ignored"}}, now)
	want := http.Header{"Cache-Control": {"max-age=60"}, "Content-Disposition": {"x"}, "X-Repo-Commit": {"new"}}
	if !got.StoredAt.Equal(now) || !reflect.DeepEqual(got.Header, want) {
		t.Errorf("Refreshed = %v %v; want %v %v", got.StoredAt, got.Header, now, want)
	}
	if info.Header.Get("Cache-Control") != "max-age=1" {
		t.Error("Refreshed modified the original header")
	}
}

func TestValidatorsAndIfRange(t *testing.T) {
	lm := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		info    storage.Info
		inm     string
		ims     string
		ifRange string
	}{
		{storage.Info{}, "", "", ""},
		{storage.Info{ETag: `"s"`}, `"s"`, "", `"s"`},
		{storage.Info{ETag: `W/"w"`}, `W/"w"`, "", ""},
		{storage.Info{ETag: `W/"w"`, LastModified: lm}, `W/"w"`, lm.Format(http.TimeFormat), lm.Format(http.TimeFormat)},
		{storage.Info{LastModified: lm}, "", lm.Format(http.TimeFormat), lm.Format(http.TimeFormat)},
	} {
		h := Validators(tc.info)
		if h.Get("If-None-Match") != tc.inm || h.Get("If-Modified-Since") != tc.ims {
			t.Errorf("Validators(%+v) = %v; want INM %q IMS %q", tc.info, h, tc.inm, tc.ims)
		}
		if got := IfRange(tc.info); got != tc.ifRange {
			t.Errorf("IfRange(%+v) = %q; want %q", tc.info, got, tc.ifRange)
		}
	}
}

func TestStoredSHA256(t *testing.T) {
	sum := make([]byte, 32)
	for i := range sum {
		sum[i] = byte(i)
	}
	info := storage.Info{Header: http.Header{DigestHeader: {FormatSHA256(sum)}}}
	if got, ok := StoredSHA256(info); !ok || string(got) != string(sum) {
		t.Errorf("StoredSHA256 of FormatSHA256: %x, %v", got, ok)
	}
	for _, v := range []string{"", "sha-512=:AAAA:", "sha-256=:not base64:", "sha-256=:AAAA:", "sha-256=AAAA"} {
		if _, ok := StoredSHA256(storage.Info{Header: http.Header{DigestHeader: {v}}}); ok {
			t.Errorf("StoredSHA256(%q) reports a digest", v)
		}
	}
	if !Internal(DigestHeader) {
		t.Errorf("%s is not internal", DigestHeader)
	}
}

// An operator's invalidation mark makes any object stale, keeps whether
// it may be served stale as its origin said, and goes with the next
// confirmation (Refreshed).
func TestInvalidated(t *testing.T) {
	stored := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := stored.Add(time.Minute)
	rules := Rules{RevalidatePatterns: []string{"*/@v/list"}}
	for _, tc := range []struct {
		name   string
		key    string
		header http.Header
		want   Freshness
	}{
		{"immutable", "example.com/a.tgz", nil, Freshness{Mutable: true}},
		{"pattern", "proxy.golang.org/x/@v/list", nil, Freshness{Mutable: true}},
		{"max-age", "example.com/a", http.Header{"Cache-Control": {"max-age=3600"}}, Freshness{Mutable: true, Explicit: true}},
		{"must-revalidate", "example.com/a", http.Header{"Cache-Control": {"max-age=3600, must-revalidate"}}, Freshness{Mutable: true, Explicit: true, MustRevalidate: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := storage.Info{Header: tc.header, StoredAt: stored}
			marked := Invalidated(info, at)
			got := rules.Freshness(tc.key, marked)
			if got != tc.want || !got.Stale(stored, stored) {
				t.Errorf("Freshness of the marked object = %+v; want %+v, stale at once", got, tc.want)
			}
			if info.Header[InvalidatedHeader] != nil {
				t.Error("Invalidated modified the original header")
			}
			if v := marked.Header.Get(InvalidatedHeader); v != "2026-01-02T03:05:05Z" {
				t.Errorf("mark %q; want the invalidation time", v)
			}
			refreshed := Refreshed(marked, http.Header{}, at.Add(time.Second))
			if refreshed.Header[InvalidatedHeader] != nil || rules.Freshness(tc.key, refreshed) != rules.Freshness(tc.key, info) {
				t.Errorf("after a 304: %v; want the mark gone and the origin's freshness back", refreshed.Header)
			}
		})
	}
	if !Internal(InvalidatedHeader) {
		t.Error("the mark is not an internal header: clients would see it")
	}
}
