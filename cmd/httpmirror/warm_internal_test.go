package main

import (
	"strings"
	"testing"

	"github.com/httpmirror/httpmirror"
)

// The progress line redraws itself in place, covers a longer previous line
// and is erased at the end.
func TestProgressLine(t *testing.T) {
	var b strings.Builder
	p := progressLine{w: &b, on: true}
	p.draw(httpmirror.PrefetchStatus{Total: 20, Done: 8, Cached: 2, Failed: 1, Bytes: 3 << 20, Size: 8 << 20})
	first := b.String()
	if !strings.HasPrefix(first, "\r[#############-----------] 11/20 URLs  3.0 MiB of 8.0 MiB") || !strings.HasSuffix(first, "1 failed") {
		t.Errorf("first line %q", first)
	}
	b.Reset()
	p.draw(httpmirror.PrefetchStatus{Total: 20, Done: 20, Bytes: 8 << 20, Size: 8 << 20})
	if second := b.String(); len(second) < len(first) || !strings.Contains(second, "20/20 URLs") {
		t.Errorf("second line %q does not cover the first (%d bytes)", second, len(first))
	}
	b.Reset()
	p.clear()
	if got := b.String(); strings.TrimSpace(got) != "" || !strings.HasPrefix(got, "\r") || !strings.HasSuffix(got, "\r") {
		t.Errorf("clear wrote %q", got)
	}
	var off strings.Builder
	q := progressLine{w: &off}
	q.draw(httpmirror.PrefetchStatus{Total: 1})
	q.clear()
	if off.Len() != 0 {
		t.Errorf("a progress line off a terminal wrote %q", off.String())
	}
}
