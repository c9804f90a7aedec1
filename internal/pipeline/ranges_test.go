package pipeline

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	type rs = []byteRange
	for _, c := range []struct {
		header string
		size   int64
		limit  int
		want   rangeAnswer
		ranges rs
	}{
		// One range, in each form.
		{"bytes=0-99", 1000, 4, rangeParts, rs{{0, 99}}},
		{"bytes=100-", 1000, 4, rangeParts, rs{{100, 999}}},
		{"bytes=-10", 1000, 4, rangeParts, rs{{990, 999}}},
		{"bytes=999-999", 1000, 4, rangeParts, rs{{999, 999}}},
		{"Bytes=0-9", 1000, 4, rangeParts, rs{{0, 9}}},
		{"BYTES=0-9", 1000, 4, rangeParts, rs{{0, 9}}},
		{"bytes=007-0009", 1000, 4, rangeParts, rs{{7, 9}}},
		// Clamped to the object.
		{"bytes=0-999999999", 1000, 4, rangeParts, rs{{0, 999}}},
		{"bytes=10-99999999999999999999999", 1000, 4, rangeParts, rs{{10, 999}}},
		{"bytes=-5000", 1000, 4, rangeParts, rs{{0, 999}}},
		{"bytes=-99999999999999999999999", 1000, 4, rangeParts, rs{{0, 999}}},
		// Unsatisfiable: nothing of the set is in the object.
		{"bytes=-0", 1000, 4, rangeUnsatisfiable, nil},
		{"bytes=-0,-00", 1000, 4, rangeUnsatisfiable, nil},
		{"bytes=1000-", 1000, 4, rangeUnsatisfiable, nil},
		{"bytes=5000-5999", 1000, 4, rangeUnsatisfiable, nil},
		{"bytes=99999999999999999999-", 1000, 4, rangeUnsatisfiable, nil},
		{"bytes=1000-1000,-0", 1000, 4, rangeUnsatisfiable, nil},
		// Unsatisfiable ranges beside satisfiable ones are left out.
		{"bytes=5000-,0-9", 1000, 4, rangeParts, rs{{0, 9}}},
		{"bytes=-0,0-0", 1000, 4, rangeParts, rs{{0, 0}}},
		// Sorted, overlapping and adjacent ranges merged.
		{"bytes=0-99,50-149,150-199", 1000, 4, rangeParts, rs{{0, 199}}},
		{"bytes=300-399,100-199,200-299", 1000, 4, rangeParts, rs{{100, 399}}},
		{"bytes=0-9,10-19", 1000, 4, rangeParts, rs{{0, 19}}},
		{"bytes=0-9,11-19", 1000, 4, rangeParts, rs{{0, 9}, {11, 19}}},
		{"bytes=500-509,0-9", 1000, 4, rangeParts, rs{{0, 9}, {500, 509}}},
		{"bytes=0-,-1,5-5", 1000, 4, rangeParts, rs{{0, 999}}},
		{"bytes=100-199,150-", 1000, 4, rangeParts, rs{{100, 999}}},
		// List syntax: optional whitespace and empty elements.
		{"bytes=0-9, 20-29", 1000, 4, rangeParts, rs{{0, 9}, {20, 29}}},
		{"bytes= 0-9 ,\t20-29\t", 1000, 4, rangeParts, rs{{0, 9}, {20, 29}}},
		{"bytes=,0-9,,20-29,", 1000, 4, rangeParts, rs{{0, 9}, {20, 29}}},
		// At most limit ranges once merged.
		{"bytes=0-0,2-2,4-4,6-6", 1000, 4, rangeParts, rs{{0, 0}, {2, 2}, {4, 4}, {6, 6}}},
		{"bytes=0-0,2-2,4-4,6-6,8-8", 1000, 4, rangeWhole, nil},
		{"bytes=0-0,2-2,4-4,6-6,8-8,0-9", 1000, 4, rangeParts, rs{{0, 9}}},
		{"bytes=0-0,2-2", 1000, 1, rangeWhole, nil},
		{"bytes=0-0,1-1", 1000, 1, rangeParts, rs{{0, 1}}},
		// Invalid: ignored.
		{"", 1000, 4, rangeWhole, nil},
		{"bytes", 1000, 4, rangeWhole, nil},
		{"bytes=", 1000, 4, rangeWhole, nil},
		{"bytes=, ,", 1000, 4, rangeWhole, nil},
		{"bytes=abc", 1000, 4, rangeWhole, nil},
		{"bytes=0", 1000, 4, rangeWhole, nil},
		{"bytes=-", 1000, 4, rangeWhole, nil},
		{"bytes=--1", 1000, 4, rangeWhole, nil},
		{"bytes=-1-", 1000, 4, rangeWhole, nil},
		{"bytes=1-2-3", 1000, 4, rangeWhole, nil},
		{"bytes=5-1", 1000, 4, rangeWhole, nil},
		{"bytes=5000-1", 1000, 4, rangeWhole, nil},
		{"bytes=+1-2", 1000, 4, rangeWhole, nil},
		{"bytes=1 - 2", 1000, 4, rangeWhole, nil},
		{"bytes=0x10-20", 1000, 4, rangeWhole, nil},
		{"bytes=0-9,abc", 1000, 4, rangeWhole, nil},
		{"bytes =0-9", 1000, 4, rangeWhole, nil},
		{"pages=0-9", 1000, 4, rangeWhole, nil},
		// An empty object has no byte to give a range of.
		{"bytes=0-0", 0, 4, rangeWhole, nil},
		{"bytes=-0", 0, 4, rangeWhole, nil},
	} {
		got, answer := parseRange(c.header, c.size, c.limit, nil)
		if answer != c.want || !slices.Equal(got, c.ranges) {
			t.Errorf("parseRange(%q, %d, %d) = %v, %d; want %v, %d", c.header, c.size, c.limit, got, answer, c.ranges, c.want)
		}
	}
}

// A Range header that already names its normalised set reaches
// http.ServeContent as it is: the common single range costs no
// allocation.
func TestRangeRequestKeepsNormalHeader(t *testing.T) {
	p := &Pipeline{cfg: Config{MaxRanges: DefaultMaxRanges}}
	for _, h := range []string{"bytes=100-199", "bytes=100-", "bytes=0-9,500-509"} {
		r, _ := http.NewRequest(http.MethodGet, "http://example.com/f", nil)
		r.Header.Set("Range", h)
		if got := p.rangeRequest(r, 1000); got != r {
			t.Errorf("%q: request copied", h)
		}
		if n := testing.AllocsPerRun(100, func() { p.rangeRequest(r, 1000) }); n != 0 {
			t.Errorf("%q: %v allocations", h, n)
		}
	}
	for h, want := range map[string]string{
		"bytes=-10":          "bytes=990-",
		"bytes=0-5000":       "bytes=0-",
		"bytes=10-19,0-9":    "bytes=0-19",
		"bytes=-0":           "bytes=1000-",
		"bytes=abc":          "",
		"bytes=0-0,2-2,4-4,": "bytes=0-0,2-2,4-4",
	} {
		r, _ := http.NewRequest(http.MethodGet, "http://example.com/f", nil)
		r.Header.Set("Range", h)
		r.Header.Set("If-Range", `"x"`)
		got := p.rangeRequest(r, 1000)
		if got == r || got.Header.Get("Range") != want || got.Header.Get("If-Range") != `"x"` {
			t.Errorf("%q: Range %q, If-Range %q; want a copy with %q", h, got.Header.Get("Range"), got.Header.Get("If-Range"), want)
		}
		if r.Header.Get("Range") != h {
			t.Errorf("%q: the caller's header changed to %q", h, r.Header.Get("Range"))
		}
	}
}

// FuzzRange checks that parseRange never panics and that the ranges it
// returns are within the object, ascending, neither overlapping nor
// adjacent, at most limit, and written out and parsed again, the same.
func FuzzRange(f *testing.F) {
	for _, s := range []string{
		"bytes=0-99", "bytes=-0", "bytes=-10", "bytes=5-", "bytes=0-99,50-149,150-199",
		"bytes=300-399,100-199,200-299", "bytes=0-9,500-509", "Bytes= 0-9 ,,\t-5",
		"bytes=0-99999999999999999999", "bytes=5-1", "pages=1-2", "bytes=0-0,2-2,4-4,6-6,8-8",
	} {
		f.Add(s, int64(1000), 4)
	}
	f.Add("bytes=0-0", int64(0), 1)
	f.Add("bytes=-1", int64(1), 0)
	f.Fuzz(func(t *testing.T, s string, size int64, limit int) {
		rs, answer := parseRange(s, size, limit, nil)
		switch answer {
		case rangeWhole:
			if rs != nil {
				t.Fatalf("ignored header with ranges %v", rs)
			}
			return
		case rangeUnsatisfiable:
			if rs != nil || size <= 0 {
				t.Fatalf("416 for size %d with ranges %v", size, rs)
			}
			return
		case rangeParts:
		default:
			t.Fatalf("answer %d", answer)
		}
		if len(rs) == 0 || len(rs) > limit {
			t.Fatalf("%d ranges; limit %d", len(rs), limit)
		}
		for i, r := range rs {
			if r.first < 0 || r.first > r.last || r.last >= size {
				t.Fatalf("range %v outside [0, %d)", r, size)
			}
			if i > 0 && rs[i-1].last+1 >= r.first {
				t.Fatalf("ranges %v and %v not ascending, apart and apart by a byte", rs[i-1], r)
			}
		}
		text := string(appendRangeHeader(nil, rs, size))
		again, answer := parseRange(text, size, limit, nil)
		if answer != rangeParts || !slices.Equal(again, rs) {
			t.Fatalf("%q parsed again as %v, %d; want %v", text, again, answer, rs)
		}
	})
}

// BenchmarkParseRangeAbusive parses a 64 KiB header of 16000 ranges.
func BenchmarkParseRangeAbusive(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("bytes=0-0")
	for i := 1; i < 16000; i++ {
		sb.WriteString(",1-1")
	}
	h := sb.String()
	for b.Loop() {
		parseRange(h, 1<<20, DefaultMaxRanges, nil)
	}
}
