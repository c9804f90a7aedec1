package fill_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// A small object that is not stored (the origin forbids it, the store
// refuses it, or its writer cannot read back) is spooled in memory, not in
// a file made and unlinked per request: with a spool directory that
// cannot hold a file, such objects are still served whole, readers
// reading while the bytes arrive, and a body cut short still fails. A
// larger object spools in a file as before, and so does a small one once
// the spools in memory hold their budget (clients that do not read keep
// theirs).
func TestSmallUnstoredObjectsSpoolInMemory(t *testing.T) {
	noFiles := filepath.Join(t.TempDir(), "absent") // no spool file can be made there
	never := func(string, *http.Response) bool { return false }
	const small = 16 << 10

	for _, tc := range []struct {
		name       string
		size       int
		store      func() (storage.Backend, func() int)
		storable   bool
		wantStored bool
		wantErr    error
	}{
		{name: "not storable", size: small, store: memStore},
		{name: "store refuses", size: small, store: failingStore, storable: true},
		{name: "writer cannot read back", size: small, store: noSpoolStore, storable: true, wantStored: true},
		{name: "larger than the memory spool", size: 100 << 10, store: memStore, wantErr: fill.ErrSpool},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store, objects := tc.store()
			opts := fill.Options{SpoolDir: noFiles}
			if !tc.storable {
				opts.Storable = never
			}
			g := fill.NewGroup(store, opts)
			src := &memSource{data: testutil.Payload(uint64(tc.size), tc.size)}
			f, _ := g.Miss("example.com/small", src.source())
			defer f.Release()
			if _, err := f.Header(context.Background()); err != nil {
				if !errors.Is(err, tc.wantErr) || tc.wantErr == nil {
					t.Fatalf("Header: %v; want %v", err, tc.wantErr)
				}
				return
			}
			got, err := io.ReadAll(f.NewReader(context.Background()))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("read error %v; want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, src.data) {
				t.Fatalf("read %d bytes, %v; want the object", len(got), err)
			}
			<-f.Done()
			if f.Err() != nil || f.Stored() != tc.wantStored || objects() != map[bool]int{true: 1}[tc.wantStored] {
				t.Fatalf("Err %v, Stored %v, objects %d; want stored %v", f.Err(), f.Stored(), objects(), tc.wantStored)
			}
		})
	}

	t.Run("readers while the bytes arrive", func(t *testing.T) {
		g := fill.NewGroup(memory.New(), fill.Options{SpoolDir: noFiles, Storable: never})
		src := &memSource{data: testutil.Payload(7, small), feed: func(w *io.PipeWriter, data []byte) {
			for len(data) > 0 {
				n := min(1000, len(data))
				w.Write(data[:n])
				data = data[n:]
			}
			w.Close()
		}}
		f, _ := g.Miss("example.com/slow", src.source())
		defer f.Release()
		if _, err := f.Header(context.Background()); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := io.ReadAll(f.NewReader(context.Background()))
				if err != nil || !bytes.Equal(got, src.data) {
					t.Errorf("reader got %d bytes, %v; want the object", len(got), err)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("body cut short", func(t *testing.T) {
		g := fill.NewGroup(memory.New(), fill.Options{SpoolDir: noFiles, Storable: never})
		src := &memSource{data: testutil.Payload(8, small), feed: func(w *io.PipeWriter, data []byte) {
			w.Write(data[:small/2])
			w.CloseWithError(io.ErrUnexpectedEOF)
		}}
		f, _ := g.Miss("example.com/cut", src.source())
		defer f.Release()
		f.Header(context.Background())
		got, err := io.ReadAll(f.NewReader(context.Background()))
		if !errors.Is(err, fill.ErrShortBody) || len(got) > small/2 {
			t.Fatalf("read %d bytes, %v; want at most half and ErrShortBody", len(got), err)
		}
	})

	t.Run("budget", func(t *testing.T) {
		g := fill.NewGroup(memory.New(), fill.Options{SpoolDir: noFiles, Storable: never})
		data := testutil.Payload(9, 64<<10)
		miss := func(i int) (*fill.Fill, error) {
			src := &memSource{data: data}
			f, _ := g.Miss(fmt.Sprintf("example.com/held/%d", i), src.source())
			_, err := f.Header(context.Background())
			return f, err
		}
		// Fills whose readers never let go: 64 MiB of them fit.
		var held []*fill.Fill
		for i := range 1024 {
			f, err := miss(i)
			held = append(held, f)
			if err != nil {
				t.Fatalf("fill %d within the budget: %v", i, err)
			}
		}
		f, err := miss(1024)
		f.Release()
		if !errors.Is(err, fill.ErrSpool) {
			t.Fatalf("fill beyond the budget: %v; want a spool file (which cannot be made here)", err)
		}
		for _, f := range held {
			<-f.Done()
			f.Release()
		}
		f, err = miss(1025)
		defer f.Release()
		if err != nil {
			t.Fatalf("fill after the held ones let go: %v; want the memory back", err)
		}
	})
}

func memStore() (storage.Backend, func() int) {
	s := memory.New()
	return s, s.Len
}

func failingStore() (storage.Backend, func() int) {
	return failing{memory.New()}, func() int { return 0 }
}

func noSpoolStore() (storage.Backend, func() int) {
	s := memory.New()
	return noSpool{s}, s.Len
}
