package main

import (
	"fmt"
	"testing"

	"github.com/httpmirror/httpmirror/storage"
)

// diskBackend is a local disk backend as the start line sees it: its
// index complete or not, and its counts.
type diskBackend struct {
	storage.Backend
	indexed bool
	stats   storage.Stats
}

func (d *diskBackend) Indexed() bool { return d.indexed }

func (d *diskBackend) Stats() storage.Stats {
	if !d.indexed {
		panic("Stats read while the index is being built")
	}
	return d.stats
}

// While the index of a disk cache is still being built the start line
// says "indexing", without waiting or reading partial counts; once built,
// the counts. Other backends add nothing.
func TestDiskContents(t *testing.T) {
	for _, c := range []struct {
		store storage.Backend
		want  string
	}{
		{&diskBackend{indexed: false}, "[objects indexing]"},
		{&diskBackend{indexed: true, stats: storage.Stats{Objects: 3, Bytes: 12345}}, "[objects 3 bytes 12345]"},
		{nil, "[]"},
	} {
		if got := fmt.Sprint(diskContents(c.store)); got != c.want {
			t.Errorf("diskContents(%+v) = %s; want %s", c.store, got, c.want)
		}
	}
}

func TestSizeLimit(t *testing.T) {
	for n, want := range map[int64]string{0: "none", 20 << 30: "20GiB", 500e6: "500MB", 1 << 20: "1MiB", 1536 << 20: "1536MiB", 1000: "1KB", 1001: "1001B", 1 << 40: "1TiB"} {
		if got := sizeLimit(n); got != want {
			t.Errorf("sizeLimit(%d) = %q; want %q", n, got, want)
		}
	}
}
