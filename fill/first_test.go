package fill_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// fileSource serves file from memory as testutil.ServeFile does (ranges
// and conditional requests), marking every response relayed when relayed
// is set, and records the Range and If-Range of every request.
type fileSource struct {
	file    *testutil.File
	relayed bool
	mu      sync.Mutex
	got     []string
}

func (s *fileSource) source() fill.Source {
	return fill.Source{URL: "mem://file", Get: func(ctx context.Context, h http.Header) (*http.Response, error) {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
		for k, v := range h {
			req.Header[k] = v
		}
		s.mu.Lock()
		s.got = append(s.got, h.Get("Range")+"|"+h.Get("If-Range"))
		s.mu.Unlock()
		rec := httptest.NewRecorder()
		if s.relayed {
			rec.Header().Set(relayMark, "1")
		}
		if len(s.file.Data) == 0 && req.Header.Get("Range") != "" {
			// An empty file has no byte to send (as nginx answers).
			rec.Header().Set("Content-Range", "bytes */0")
			rec.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return rec.Result(), nil
		}
		testutil.ServeFile(rec, req, s.file)
		return rec.Result(), nil
	}}
}

func (s *fileSource) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// A fill that may use several connections asks for the object's first
// segment only; the answer stands for the whole object's when it is the
// object (no larger than a segment). Otherwise the rest is fetched with
// ranges guarded by If-Range, or, when the first part is no use, the
// object whole: without a validator (no proof that the rest belongs to
// the same version), or when the object is empty (a 416). A relayed first
// part is followed by the rest as a resume, without Retry. Every fill
// stores the object with the object's own length and no Content-Range.
func TestFirstRequest(t *testing.T) {
	const seg = 64 << 10
	first := "bytes=0-65535|"
	etag := func(data []byte) string { return `"` + testutil.SHA256(data)[:16] + `"` }
	when := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		size    int
		etag    bool
		modTime bool
		relayed bool
		want    func(f *testutil.File) []string
	}{
		{"smaller than a segment", 1000, true, true, false, func(*testutil.File) []string { return []string{first} }},
		{"one segment", seg, true, true, false, func(*testutil.File) []string { return []string{first} }},
		{"segmented", 2*seg + 10, true, false, false, func(f *testutil.File) []string {
			return []string{first, "bytes=65536-131071|" + f.ETag, "bytes=131072-131081|" + f.ETag}
		}},
		{"segmented by Last-Modified", seg + 1, false, true, false, func(f *testutil.File) []string {
			return []string{first, "bytes=65536-65536|" + when.Format(http.TimeFormat)}
		}},
		{"no validator", 3 * seg, false, false, false, func(*testutil.File) []string { return []string{first, "|"} }},
		{"empty", 0, true, true, false, func(*testutil.File) []string { return []string{first, "|"} }},
		{"relayed", 3 * seg, true, true, true, func(f *testutil.File) []string { return []string{first, "bytes=65536-|" + f.ETag} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := testutil.Payload(50, tc.size)
			f := &testutil.File{Data: data, Type: "application/x-test"}
			if tc.etag {
				f.ETag = etag(data)
			}
			if tc.modTime {
				f.ModTime = when
			}
			src := &fileSource{file: f, relayed: tc.relayed}
			store := memory.New()
			opts := fill.Options{Connections: 4, SegmentSize: seg, SpoolDir: t.TempDir()}
			if tc.relayed {
				opts.Relayed = relayOpts.Relayed
			}
			g := fill.NewGroup(store, opts)
			fl, _ := g.Miss("example.com/f", src.source())
			info, err := fl.Header(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != int64(tc.size) || info.Header.Get("Content-Range") != "" || info.Header.Get("Content-Length") != "" {
				t.Errorf("object size %d, header %v; want %d and no Content-Range nor Content-Length kept", info.Size, info.Header, tc.size)
			}
			if got := readAll(t, fl); testutil.SHA256(got) != testutil.SHA256(data) {
				t.Fatalf("read %d bytes; want the object", len(got))
			}
			if err := fl.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			fl.Release()
			if err := g.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The segments' requests come in any order, after the first.
			got, want := src.requests(), tc.want(f)
			if len(got) > 1 && len(want) > 1 {
				slices.Sort(got[1:])
				slices.Sort(want[1:])
			}
			if !slices.Equal(got, want) {
				t.Errorf("requests (Range|If-Range) %q; want %q", got, want)
			}
			stored, err := store.Stat(context.Background(), "example.com/f")
			if tc.relayed {
				if err == nil {
					t.Error("a relayed object was stored")
				}
				return
			}
			if err != nil || stored.Size != int64(tc.size) || stored.ETag != f.ETag || stored.ContentType != f.Type {
				t.Errorf("stored %+v, %v; want size %d, ETag %q, type %q", stored, err, tc.size, f.ETag, f.Type)
			}
		})
	}
}
