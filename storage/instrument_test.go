package storage_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// fakeWriter has every writer capability; the shapes below show some.
type fakeWriter struct {
	storage.Writer // a memory writer, for the plain methods
	updated        []storage.Info
}

func (w *fakeWriter) ReadAt(p []byte, off int64) (int, error)  { return 0, nil }
func (w *fakeWriter) SpoolFile() *os.File                      { return nil }
func (w *fakeWriter) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }
func (w *fakeWriter) UpdateInfo(info storage.Info) error {
	w.updated = append(w.updated, info)
	return nil
}

// shapedBackend creates writers of one shape.
type shapedBackend struct {
	storage.Backend
	shape func(*fakeWriter) storage.Writer
	last  *fakeWriter
}

func (b *shapedBackend) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	w, err := b.Backend.Create(ctx, key, info)
	if err != nil {
		return nil, err
	}
	b.last = &fakeWriter{Writer: w}
	return b.shape(b.last), nil
}

// capabilities lists the writer capabilities w has.
func capabilities(w storage.Writer) map[string]bool {
	c := map[string]bool{}
	_, c["Spooler"] = w.(storage.Spooler)
	_, c["FileSpooler"] = w.(storage.FileSpooler)
	_, c["WriterAt"] = w.(storage.WriterAt)
	_, c["InfoUpdater"] = w.(storage.InfoUpdater)
	return c
}

// The decorator's writers have exactly the capabilities of the backend's
// (of the shapes backends have), and UpdateInfo reaches the backend's.
func TestInstrumentWriterCapabilities(t *testing.T) {
	type (
		W  = storage.Writer
		S  = storage.Spooler
		FS = storage.FileSpooler
		WA = storage.WriterAt
		IU = storage.InfoUpdater
	)
	for _, tc := range []struct {
		name  string
		shape func(*fakeWriter) storage.Writer
	}{
		{"plain", func(f *fakeWriter) W { return struct{ W }{f} }},
		{"updater (s3)", func(f *fakeWriter) W {
			return struct {
				W
				IU
			}{f, f}
		}},
		{"spooler", func(f *fakeWriter) W {
			return struct {
				W
				S
			}{f, f}
		}},
		{"spooler, updater (memory)", func(f *fakeWriter) W {
			return struct {
				W
				S
				IU
			}{f, f, f}
		}},
		{"file spooler", func(f *fakeWriter) W {
			return struct {
				W
				FS
			}{f, f}
		}},
		{"file spooler, updater", func(f *fakeWriter) W {
			return struct {
				W
				FS
				IU
			}{f, f, f}
		}},
		{"file spooler, writer at", func(f *fakeWriter) W {
			return struct {
				W
				FS
				WA
			}{f, f, f}
		}},
		{"file spooler, writer at, updater (file)", func(f *fakeWriter) W { return f }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &shapedBackend{Backend: memory.New(), shape: tc.shape}
			b := storage.Instrument(inner, func(string, time.Duration, error) {})
			ctx := context.Background()
			w, err := b.Create(ctx, "example.com/w", storage.Info{Size: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			got, want := capabilities(w), capabilities(tc.shape(inner.last))
			for c := range want {
				if got[c] != want[c] {
					t.Errorf("%s through the decorator: %v; want %v", c, got[c], want[c])
				}
			}
			if u, ok := w.(storage.InfoUpdater); ok {
				if err := u.UpdateInfo(storage.Info{ContentType: "text/plain"}); err != nil {
					t.Fatal(err)
				}
				if len(inner.last.updated) != 1 || inner.last.updated[0].ContentType != "text/plain" {
					t.Errorf("backend's writer updated with %v; want the info given", inner.last.updated)
				}
			}
		})
	}
}

// largestBackend names one largest object.
type largestBackend struct{ storage.Backend }

func (largestBackend) Largest(ctx context.Context, n int) ([]storage.Info, bool, error) {
	return []storage.Info{{Key: "big", Size: 1 << 30}}, false, nil
}

// The decorator passes Largest through, reports it as "largest", and
// answers ErrNotSupported without it.
func TestInstrumentLargest(t *testing.T) {
	var ops []string
	observe := func(op string, d time.Duration, err error) { ops = append(ops, op) }
	l := storage.Instrument(largestBackend{memory.New()}, observe).(storage.LargestLister)
	objs, complete, err := l.Largest(context.Background(), 10)
	if err != nil || complete || len(objs) != 1 || objs[0].Key != "big" {
		t.Fatalf("Largest = %v, %v, %v; want the backend's answer", objs, complete, err)
	}
	if len(ops) != 1 || ops[0] != "largest" {
		t.Errorf("observed %q; want [largest]", ops)
	}
	plain := storage.Instrument(memory.New(), nil).(storage.LargestLister)
	if _, _, err := plain.Largest(context.Background(), 10); !errors.Is(err, storage.ErrNotSupported) {
		t.Errorf("Largest without a LargestLister underneath: %v; want ErrNotSupported", err)
	}
}
