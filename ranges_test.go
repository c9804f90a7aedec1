package httpmirror_test

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
)

// rangeCase is a Range request and the answer expected from an object of
// n bytes (n >= 1000): the whole body (200), the listed parts (206, one
// part or multipart/byteranges) or 416.
type rangeCase struct {
	name   string
	header []string // the Range field lines
	status int
	parts  [][2]int // 206: first and last byte of each part, in order
}

func rangeCases(n int) []rangeCase {
	return []rangeCase{
		{"16000 ranges, 100 of them distinct", []string{manyRanges(16000, 100)}, 200, nil},
		{"16000 copies of one range", []string{manyRanges(16000, 1)}, 206, [][2]int{{0, 0}}},
		{"overlapping", []string{"bytes=0-99,50-149,150-199"}, 206, [][2]int{{0, 199}}},
		{"adjacent, out of order", []string{"bytes=300-399,100-199,200-299"}, 206, [][2]int{{100, 399}}},
		{"disjoint", []string{"bytes=0-9,500-509"}, 206, [][2]int{{0, 9}, {500, 509}}},
		{"suffix of zero bytes", []string{"bytes=-0"}, 416, nil},
		{"last position past the end", []string{"bytes=0-999999999"}, 206, [][2]int{{0, n - 1}}},
		{"last position past int64", []string{"bytes=10-99999999999999999999"}, 206, [][2]int{{10, n - 1}}},
		{"first position past the end", []string{fmt.Sprintf("bytes=%d-", n+4000)}, 416, nil},
		{"garbage", []string{"bytes=abc"}, 200, nil},
		{"unknown unit", []string{"pages=1-2"}, 200, nil},
		{"last before first", []string{"bytes=5-1"}, 200, nil},
		{"two Range fields", []string{"bytes=0-9", "bytes=20-29"}, 200, nil},
	}
}

// manyRanges returns a Range header of count one-byte ranges of which
// distinct are different and not adjacent (0-0, 2-2, 4-4 …); the rest
// repeat 0-0. 16000 of them fit in the mirror's 64 KiB header limit.
func manyRanges(count, distinct int) string {
	var b strings.Builder
	b.WriteString("bytes=")
	for i := range count {
		if i > 0 {
			b.WriteByte(',')
		}
		p := 2 * i
		if i >= distinct {
			p = 0
		}
		fmt.Fprintf(&b, "%d-%d", p, p)
	}
	return b.String()
}

// checkRange checks resp, whose body is body, against c for the object data.
func checkRange(t *testing.T, c rangeCase, resp *http.Response, body, data []byte) {
	t.Helper()
	n := len(data)
	if resp.StatusCode != c.status {
		t.Errorf("%s: status %d (%d body bytes, Content-Range %q); want %d",
			c.name, resp.StatusCode, len(body), resp.Header.Get("Content-Range"), c.status)
		return
	}
	switch {
	case c.status == 200:
		// The whole body, and nothing more: no multipart overhead.
		if resp.ContentLength != int64(n) || sha(body) != sha(data) {
			t.Errorf("%s: Content-Length %d, %d bytes, sha256 %s; want the object's %d bytes, sha256 %s",
				c.name, resp.ContentLength, len(body), sha(body), n, sha(data))
		}
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			t.Errorf("%s: Content-Range %q on a 200", c.name, cr)
		}
	case c.status == 416:
		if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", n) {
			t.Errorf("%s: Content-Range %q; want bytes */%d", c.name, cr, n)
		}
	case len(c.parts) == 1:
		p := c.parts[0]
		if cr := resp.Header.Get("Content-Range"); cr != contentRange(p, n) {
			t.Errorf("%s: Content-Range %q; want %q", c.name, cr, contentRange(p, n))
		}
		if resp.ContentLength != int64(p[1]-p[0]+1) || !bytes.Equal(body, data[p[0]:p[1]+1]) {
			t.Errorf("%s: Content-Length %d, %d bytes; want bytes %d-%d", c.name, resp.ContentLength, len(body), p[0], p[1])
		}
	default:
		parts := byteRangeParts(t, resp.Header, body)
		if len(parts) != len(c.parts) {
			t.Errorf("%s: %d parts; want %d", c.name, len(parts), len(c.parts))
			return
		}
		for i, p := range c.parts {
			if parts[i].contentRange != contentRange(p, n) || !bytes.Equal(parts[i].body, data[p[0]:p[1]+1]) {
				t.Errorf("%s: part %d is %q with %d bytes; want bytes %d-%d", c.name, i, parts[i].contentRange, len(parts[i].body), p[0], p[1])
			}
		}
		if resp.ContentLength != int64(len(body)) {
			t.Errorf("%s: Content-Length %d for a %d-byte multipart body", c.name, resp.ContentLength, len(body))
		}
	}
}

func contentRange(p [2]int, n int) string { return fmt.Sprintf("bytes %d-%d/%d", p[0], p[1], n) }

type bodyPart struct {
	contentRange string
	body         []byte
}

// byteRangeParts splits a multipart/byteranges body.
func byteRangeParts(t *testing.T, h http.Header, body []byte) []bodyPart {
	t.Helper()
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q: %v", h.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var parts []bodyPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return parts
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, bodyPart{p.Header.Get("Content-Range"), b})
	}
}

// TestRangeRulesWarm sends every range case to stored objects: a small one
// (held in memory) and a larger one read from its file.
func TestRangeRulesWarm(t *testing.T) {
	o := newOrigin(t)
	m := newMirror(t, o)
	for _, n := range []int{1000, 100000} {
		data := payload(90, n)
		path := fmt.Sprintf("/ranges-%d.bin", n)
		o.Put(path, data)
		u := m.url(o, path)
		if r := get(t, u); r.StatusCode != 200 || !bytes.Equal(r.body, data) {
			t.Fatalf("warm-up: status %d", r.StatusCode)
		}
		waitFills(t, m)
		for _, c := range rangeCases(n) {
			r := do(t, "GET", u, http.Header{"Range": c.header})
			c.name = fmt.Sprintf("%d bytes, %s", n, c.name)
			checkRange(t, c, r.Response, r.body, data)
		}
	}
	if got := o.Gets.Load(); got != 2 {
		t.Errorf("origin saw %d GETs; want 2", got)
	}
}

// TestRangeRulesWhileFilling sends every range case to an object whose
// download is held halfway: the answers come from the fill in progress.
func TestRangeRulesWhileFilling(t *testing.T) {
	o := newOrigin(t)
	const n = 1 << 20
	data := payload(91, n)
	o.Put("/filling.bin", data)
	paused := make(chan struct{})
	resume := newGate(t)
	o.SetHook(stallingHook(n/2, func() { close(paused) }, resume))
	m := newMirror(t, o)
	u := m.url(o, "/filling.bin")

	first, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	<-paused

	// Every answer starts while the origin is paused; the whole-body ones
	// are read to the end once it resumes.
	cases := rangeCases(n)
	resps := make([]*http.Response, len(cases))
	for i, c := range cases {
		req, err := http.NewRequest("GET", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header["Range"] = c.header
		resps[i], err = noRedirectClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		defer resps[i].Body.Close()
	}
	if resume.IsOpen() {
		t.Fatal("origin resumed early")
	}
	resume.Open()
	for i, c := range cases {
		body, err := io.ReadAll(resps[i].Body)
		if err != nil {
			t.Fatalf("%s: reading the body: %v", c.name, err)
		}
		checkRange(t, c, resps[i], body, data)
	}
	io.Copy(io.Discard, first.Body)
	if got := o.Gets.Load(); got != 1 {
		t.Errorf("origin saw %d GETs; want 1", got)
	}
}

// The range rules come after the conditions, as in RFC 9110 section 13.2.2:
// a matching If-None-Match is 304 and a stale If-Range the whole body,
// whatever the Range header; HEAD answers a normalised range too.
func TestRangeRulesAfterConditions(t *testing.T) {
	o := newOrigin(t)
	const n = 5000
	data := payload(92, n)
	f := o.Put("/cond.bin", data)
	m := newMirror(t, o)
	u := m.url(o, "/cond.bin")
	if r := get(t, u); r.StatusCode != 200 {
		t.Fatalf("warm-up: status %d", r.StatusCode)
	}
	waitFills(t, m)

	if r := do(t, "GET", u, http.Header{"Range": {"bytes=-0"}, "If-None-Match": {f.ETag}}); r.StatusCode != 304 {
		t.Errorf("If-None-Match with bytes=-0: status %d; want 304", r.StatusCode)
	}
	for _, rng := range []string{"bytes=-0", "bytes=0-9,5-19", manyRanges(16000, 100)} {
		r := do(t, "GET", u, http.Header{"Range": {rng}, "If-Range": {`"stale"`}})
		checkRange(t, rangeCase{name: "stale If-Range, " + rng[:min(len(rng), 20)], status: 200}, r.Response, r.body, data)
	}
	r := do(t, "GET", u, http.Header{"Range": {"bytes=0-9,5-19"}, "If-Range": {f.ETag}})
	checkRange(t, rangeCase{name: "matching If-Range", status: 206, parts: [][2]int{{0, 19}}}, r.Response, r.body, data)

	h := do(t, "HEAD", u, http.Header{"Range": {"bytes=0-99,50-149,150-199"}})
	if h.StatusCode != 206 || h.ContentLength != 200 || h.Header.Get("Content-Range") != contentRange([2]int{0, 199}, n) || len(h.body) != 0 {
		t.Errorf("HEAD of overlapping ranges: status %d, Content-Length %d, Content-Range %q, %d body bytes; want 206, 200, bytes 0-199/%d, none",
			h.StatusCode, h.ContentLength, h.Header.Get("Content-Range"), len(h.body), n)
	}
	h = do(t, "HEAD", u, http.Header{"Range": {manyRanges(16000, 100)}})
	if h.StatusCode != 200 || h.ContentLength != n {
		t.Errorf("HEAD of 16000 ranges: status %d, Content-Length %d; want 200, %d", h.StatusCode, h.ContentLength, n)
	}
}
