package file_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
)

// BenchmarkSmallCommits measures what storing a new 16 KiB object costs
// (create, write, commit, close) with commits made durable, by goroutines
// committing at once as a burst of misses does: the disk work of a cold
// small file, beside the network work of the miss.
func BenchmarkSmallCommits(b *testing.B) {
	for _, par := range []int{1, 24} {
		for _, nosync := range []bool{false, true} {
			b.Run(fmt.Sprintf("par%d/nosync=%v", par, nosync), func(b *testing.B) {
				be, err := file.New(b.TempDir(), file.Options{NoSync: nosync})
				if err != nil {
					b.Fatal(err)
				}
				defer be.Close()
				data := make([]byte, 16<<10)
				var n atomic.Int64
				ctx := context.Background()
				b.SetParallelism(par)
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						key := fmt.Sprintf("bench.example/small/%d", n.Add(1))
						w, err := be.Create(ctx, key, storage.Info{Size: int64(len(data))})
						if err != nil {
							b.Fatal(err)
						}
						if _, err := w.Write(data); err != nil {
							b.Fatal(err)
						}
						if err := w.Commit(ctx); err != nil {
							b.Fatal(err)
						}
						w.Close()
					}
				})
			})
		}
	}
}
