package s3

import (
	"context"
	"testing"

	"github.com/httpmirror/httpmirror/storage"
)

// A known size beyond 10000 parts raises that object's part size, to a
// whole number of MiB; S3's 5 TiB limit is refused at Create.
func TestPartSizeGrowsWithDeclaredSize(t *testing.T) {
	b := &Backend{chunkSize: DefaultChunkSize}
	ctx := context.Background()
	tests := []struct {
		size, want int64
	}{
		{-1, DefaultChunkSize},
		{100 << 20, DefaultChunkSize},
		{DefaultChunkSize * maxParts, DefaultChunkSize},
		{DefaultChunkSize*maxParts + 1, DefaultChunkSize + 1<<20},
		{200 << 30, 21 << 20},
		{maxObjectSize, 525 << 20},
	}
	for _, tc := range tests {
		w, err := b.Create(ctx, "example.com/big", storage.Info{Size: tc.size})
		if err != nil {
			t.Fatalf("Create(size %d): %v", tc.size, err)
		}
		ps := w.(*writer).partSize
		if ps != tc.want {
			t.Errorf("size %d: part size %d; want %d", tc.size, ps, tc.want)
		}
		if tc.size > 0 && (tc.size+ps-1)/ps > maxParts {
			t.Errorf("size %d: %d parts; S3 allows %d", tc.size, (tc.size+ps-1)/ps, maxParts)
		}
		if ps%(1<<20) != 0 || ps > MaxChunkSize {
			t.Errorf("size %d: part size %d is not whole MiB within S3's limit", tc.size, ps)
		}
	}
	if _, err := b.Create(ctx, "example.com/huge", storage.Info{Size: maxObjectSize + 1}); err == nil {
		t.Errorf("Create of an object over 5 TiB succeeded")
	}
}
