package fill

// intervals is a set of byte ranges [start, end), kept sorted and merged.
// A segmented fill tracks with it which bytes of the object have arrived
// and which are still to be asked for; it holds a few entries at a time
// (one per segment in flight, at most), so a slice is the right structure.
type intervals []span

// span is the byte range [start, end).
type span struct{ start, end int64 }

// add inserts [start, end), merging it with overlapping and adjacent spans.
func (s *intervals) add(start, end int64) {
	if start >= end {
		return
	}
	v := *s
	i := 0
	for i < len(v) && v[i].end < start {
		i++
	}
	j := i
	for j < len(v) && v[j].start <= end {
		start, end = min(start, v[j].start), max(end, v[j].end)
		j++
	}
	if i == j {
		v = append(v, span{})
		copy(v[i+1:], v[i:])
		v[i] = span{start, end}
	} else {
		v[i] = span{start, end}
		v = append(v[:i+1], v[j:]...)
	}
	*s = v
}

// remove deletes [start, end) from the set.
func (s *intervals) remove(start, end int64) {
	if start >= end {
		return
	}
	var out intervals
	for _, sp := range *s {
		if sp.end <= start || sp.start >= end {
			out = append(out, sp)
			continue
		}
		if sp.start < start {
			out = append(out, span{sp.start, start})
		}
		if sp.end > end {
			out = append(out, span{end, sp.end})
		}
	}
	*s = out
}

// runFrom returns the end of the span that contains off, or off when no
// span does: the bytes [off, runFrom(off)) are all in the set.
func (s intervals) runFrom(off int64) int64 {
	for _, sp := range s {
		if sp.start <= off && off < sp.end {
			return sp.end
		}
		if sp.start > off {
			break
		}
	}
	return off
}

// contains reports whether off is in the set.
func (s intervals) contains(off int64) bool { return s.runFrom(off) > off }

// covers reports whether the set holds all of [0, size).
func (s intervals) covers(size int64) bool {
	return size == 0 || (len(s) == 1 && s[0].start == 0 && s[0].end >= size)
}

// size returns the number of bytes in the set.
func (s intervals) size() int64 {
	var n int64
	for _, sp := range s {
		n += sp.end - sp.start
	}
	return n
}
