package fill

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestIntervals(t *testing.T) {
	var s intervals
	s.add(10, 20)
	s.add(30, 40)
	s.add(20, 25) // adjacent: merged
	if want := (intervals{{10, 25}, {30, 40}}); !reflect.DeepEqual(s, want) {
		t.Fatalf("after adds: %v; want %v", s, want)
	}
	s.add(0, 5)
	s.add(24, 31) // bridges two spans
	if want := (intervals{{0, 5}, {10, 40}}); !reflect.DeepEqual(s, want) {
		t.Fatalf("after bridging: %v; want %v", s, want)
	}
	if got := s.runFrom(12); got != 40 {
		t.Errorf("runFrom(12) = %d; want 40", got)
	}
	if got := s.runFrom(7); got != 7 {
		t.Errorf("runFrom(7) = %d; want 7 (not in the set)", got)
	}
	s.remove(15, 20)
	if want := (intervals{{0, 5}, {10, 15}, {20, 40}}); !reflect.DeepEqual(s, want) {
		t.Fatalf("after remove: %v; want %v", s, want)
	}
	if s.covers(40) || s.size() != 30 {
		t.Errorf("covers(40) %v, size %d; want false, 30", s.covers(40), s.size())
	}
	s.add(0, 40)
	if !s.covers(40) || s.covers(41) {
		t.Errorf("covers after filling: %v %v", s.covers(40), s.covers(41))
	}
}

// The set agrees with a bitmap under random adds and removes.
func TestIntervalsRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 200
	for round := range 200 {
		var s intervals
		var bits [n]bool
		for range 30 {
			a, b := r.Int64N(n), r.Int64N(n)
			if a > b {
				a, b = b, a
			}
			add := r.IntN(3) > 0
			if add {
				s.add(a, b)
			} else {
				s.remove(a, b)
			}
			for i := a; i < b; i++ {
				bits[i] = add
			}
		}
		for i := range int64(n) {
			if s.contains(i) != bits[i] {
				t.Fatalf("round %d: contains(%d) = %v; want %v (set %v)", round, i, s.contains(i), bits[i], s)
			}
		}
		for i := 1; i < len(s); i++ {
			if s[i-1].end >= s[i].start {
				t.Fatalf("round %d: spans not sorted and apart: %v", round, s)
			}
		}
	}
}
