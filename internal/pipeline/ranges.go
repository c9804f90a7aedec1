package pipeline

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// DefaultMaxRanges is how many ranges one request may ask for, after
// overlapping and adjacent ones are merged, unless configured otherwise. zsync, the heaviest multi-range client a file mirror meets (AppImage
// updates, Ubuntu images), asks for up to 20 ranges per request and gives
// up on any answer but 206; Apache httpd allows 200. Each part of a
// multipart answer costs a seek and about a hundred bytes of part header,
// so 64 parts cost a few KiB at most, while answering thousands of tiny
// ranges is what makes a Range header a denial-of-service tool.
const DefaultMaxRanges = 64

// byteRange is the bytes first to last, both included, of an object.
type byteRange struct{ first, last int64 }

// rangeAnswer is how a request's Range header is answered.
type rangeAnswer uint8

const (
	// rangeWhole ignores the header: 200 with the whole body. The header
	// is invalid, asks for more ranges than allowed, or the object is
	// empty (it has no byte to give a range of; net/http answers 200 too).
	rangeWhole rangeAnswer = iota
	// rangeParts answers the ranges returned with 206.
	rangeParts
	// rangeUnsatisfiable answers 416 with Content-Range "bytes */size": no
	// range of the set has a byte in the object.
	rangeUnsatisfiable
)

// parseRange parses the value of a Range header (RFC 9110 section 14.1.1)
// against an object of size bytes and decides the answer (section 14.2).
//
// The unit is "bytes" (compared case-insensitively); another unit, a range
// that is not first-last, first- or -suffix with decimal positions, a last
// position before its first, or a set without ranges makes the header
// invalid. Ranges that start at or past the end, and suffixes of zero bytes,
// are unsatisfiable and left out; a last position past the end (however
// large) is clamped to the last byte, and a suffix longer than the object
// is the whole object. When some ranges remain, they are sorted and merged
// where they overlap or touch (section 15.3.7.2 allows coalescing whatever
// the order they came in); when more than limit remain, the header is
// ignored. The ranges returned are then within [0, size), ascending,
// neither overlapping nor adjacent, and at most limit. Multipart answers
// thus list their parts in ascending order even when the request did not
// (section 15.3.7.2 would keep the request's order of ranges that were not
// coalesced; each part carries its Content-Range either way).
//
// buf is where the ranges are kept while it has room, so that the common
// single range allocates nothing.
func parseRange(s string, size int64, limit int, buf []byteRange) ([]byteRange, rangeAnswer) {
	unit, set, ok := strings.Cut(s, "=")
	if !ok || !strings.EqualFold(unit, "bytes") || size <= 0 {
		return nil, rangeWhole
	}
	ranges := buf[:0]
	specs := 0
	for set != "" {
		var spec string
		spec, set, _ = strings.Cut(set, ",")
		if spec = trimOWS(spec); spec == "" {
			continue // an empty list element (RFC 9110 section 5.6.1)
		}
		specs++
		first, last, ok := strings.Cut(spec, "-")
		if !ok {
			return nil, rangeWhole
		}
		if first == "" {
			n, ok := parsePos(last)
			if !ok {
				return nil, rangeWhole
			}
			if n > 0 {
				ranges = appendRange(ranges, byteRange{size - min(n, size), size - 1})
			}
			continue
		}
		f, ok := parsePos(first)
		if !ok {
			return nil, rangeWhole
		}
		l := int64(math.MaxInt64)
		if last != "" {
			if l, ok = parsePos(last); !ok || l < f {
				return nil, rangeWhole
			}
		}
		if f < size {
			ranges = appendRange(ranges, byteRange{f, min(l, size-1)})
		}
	}
	switch {
	case specs == 0:
		return nil, rangeWhole
	case len(ranges) == 0:
		return nil, rangeUnsatisfiable
	}
	ranges = mergeRanges(ranges)
	if len(ranges) > limit {
		return nil, rangeWhole
	}
	return ranges, rangeParts
}

// appendRange appends r to rs. When rs is full it is merged first, so that
// a header repeating a few ranges thousands of times needs no more room (and
// little more time) than those few; a merge that frees less than half of rs
// doubles its room instead, so that merges stay rare.
func appendRange(rs []byteRange, r byteRange) []byteRange {
	if len(rs) == cap(rs) && len(rs) >= 64 {
		rs = mergeRanges(rs)
		if len(rs) > cap(rs)/2 {
			rs = slices.Grow(rs, cap(rs))
		}
	}
	return append(rs, r)
}

// mergeRanges sorts rs and merges the ranges that overlap or touch, in
// place.
func mergeRanges(rs []byteRange) []byteRange {
	if len(rs) < 2 {
		return rs
	}
	if !slices.IsSortedFunc(rs, cmpFirst) {
		slices.SortFunc(rs, cmpFirst)
	}
	out := rs[:1]
	for _, r := range rs[1:] {
		cur := &out[len(out)-1]
		// last < size <= MaxInt64, so last+1 does not overflow.
		if r.first <= cur.last+1 {
			cur.last = max(cur.last, r.last)
			continue
		}
		out = append(out, r)
	}
	return out
}

func cmpFirst(a, b byteRange) int {
	switch {
	case a.first < b.first:
		return -1
	case a.first > b.first:
		return 1
	}
	return 0
}

// parsePos parses a byte position or suffix length: one or more decimal
// digits. A number past int64 saturates at math.MaxInt64, past the end of
// any object.
func parsePos(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
		} else {
			n = n*10 + d
		}
	}
	return n, true
}

// trimOWS removes the optional whitespace (spaces and tabs) around a list
// element.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// appendRangeHeader appends the Range header value "bytes=…" that asks for
// exactly rs of an object of size bytes. A range that runs to the end is
// written "first-", the form resuming clients send.
func appendRangeHeader(b []byte, rs []byteRange, size int64) []byte {
	b = append(b, "bytes="...)
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, r.first, 10)
		b = append(b, '-')
		if r.last != size-1 {
			b = strconv.AppendInt(b, r.last, 10)
		}
	}
	return b
}
