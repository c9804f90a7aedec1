package fill_test

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// A segmented fill's first answer is a part, whose Content-MD5 (say)
// describes the part: the object's comes from a HEAD. An origin whose HEAD
// lies about the object fails the fill; one whose HEAD is refused, never
// answers, or describes another version of the object does not keep the
// object from being stored (the digests the parts bring are checked
// either way), and such a HEAD's digest is not used.
func TestSegmentedFillChecksTheWholeObjectsDigest(t *testing.T) {
	fill.SetWholeHeadTimeout(t, 200*time.Millisecond)
	data := testutil.Payload(41, 3<<20+5)
	good := md5.Sum(data)
	wrong := md5.Sum(data[1:])
	for _, tc := range []struct {
		name string
		// head answers the HEAD (true), or leaves it to the origin.
		head     func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool
		md5      [16]byte // the Content-MD5 the origin publishes
		mismatch bool
	}{
		{"HEAD publishes the object's digest", nil, good, false},
		{"HEAD publishes a wrong digest", nil, wrong, true},
		{"HEAD refused", func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return true
		}, wrong, false},
		{"HEAD never answered", func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			<-r.Context().Done()
			return true
		}, wrong, false},
		{"HEAD of another version", func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
			w.Header().Set("ETag", `"another"`)
			w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
			w.Header().Set("Content-Md5", base64.StdEncoding.EncodeToString(wrong[:]))
			return true
		}, good, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testutil.NewOrigin(t)
			f := o.Put("/obj.bin", data)
			f.Header = http.Header{"Content-Md5": {base64.StdEncoding.EncodeToString(tc.md5[:])}}
			var heads atomic.Int64
			o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
				if r.Method != http.MethodHead {
					return false
				}
				heads.Add(1)
				return tc.head != nil && tc.head(w, r, f)
			})
			store := memory.New()
			g := fill.NewGroup(store, fill.Options{
				Connections: 4, SegmentSize: 1 << 20,
				Digests: func(key string, resp *http.Response) []policy.Expected {
					exp, _ := policy.DigestRules{}.Digests(key, resp)
					return exp
				},
			})
			fl, _ := g.Miss("example.com/obj.bin", originSource(o, "/obj.bin"))
			defer fl.Release()
			err := fl.Wait(context.Background())
			if heads.Load() != 1 {
				t.Errorf("%d HEAD requests; want 1", heads.Load())
			}
			_, serr := store.Stat(context.Background(), "example.com/obj.bin")
			if tc.mismatch {
				if !errors.Is(err, fill.ErrDigestMismatch) || fl.Stored() || serr == nil {
					t.Fatalf("fill: %v, stored %v (stat: %v); want a digest mismatch and nothing stored", err, fl.Stored(), serr)
				}
				return
			}
			if err != nil || !fl.Stored() || serr != nil {
				t.Fatalf("fill: %v, stored %v (stat: %v); want the object stored", err, fl.Stored(), serr)
			}
			if got := readAll(t, fl); testutil.SHA256(got) != testutil.SHA256(data) {
				t.Fatalf("read %d bytes; want the object", len(got))
			}
			if n := o.CheckFetchedOnce(t, "/obj.bin", int64(len(data))); n == 0 {
				t.Fatalf("no ranged request: the fill was not segmented")
			}
		})
	}
}

// slowCommit is a store whose commits wait for gate: a sync of a large
// file to a slow disk.
type slowCommit struct {
	storage.Backend
	gate <-chan struct{}
}

func (s slowCommit) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	w, err := s.Backend.Create(ctx, key, info)
	return &slowWriter{Writer: w, gate: s.gate}, err
}

type slowWriter struct {
	storage.Writer
	gate <-chan struct{}
}

func (w *slowWriter) Commit(ctx context.Context) error {
	<-w.gate
	return w.Writer.Commit(ctx)
}

// A reader of a fill whose bytes are checked against a published digest
// gets the last byte once they match it, not once the object is
// committed: its response does not wait for the store's sync. Over one
// connection and in segments (with the HEAD's digest).
func TestLastByteAfterTheVerdictNotTheCommit(t *testing.T) {
	data := testutil.Payload(42, 3<<20+9)
	sum := md5.Sum(data)
	for _, conns := range []int{1, 4} {
		t.Run(strconv.Itoa(conns), func(t *testing.T) {
			o := testutil.NewOrigin(t)
			f := o.Put("/obj.bin", data)
			f.Header = http.Header{"Content-Md5": {base64.StdEncoding.EncodeToString(sum[:])}}
			gate := make(chan struct{})
			defer close(gate)
			g := fill.NewGroup(slowCommit{noSpool{memory.New()}, gate}, fill.Options{
				Connections: conns, SegmentSize: 1 << 20, SpoolDir: t.TempDir(),
				Digests: func(key string, resp *http.Response) []policy.Expected {
					exp, _ := policy.DigestRules{}.Digests(key, resp)
					return exp
				},
			})
			fl, _ := g.Miss("example.com/obj.bin", originSource(o, "/obj.bin"))
			defer fl.Release()
			if _, err := fl.Header(context.Background()); err != nil || !fl.Checked() {
				t.Fatalf("header: %v; checked %v; want a fill that checks a digest", err, fl.Checked())
			}
			read := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(fl.NewReader(context.Background()))
				read <- b
			}()
			select {
			case b := <-read:
				if testutil.SHA256(b) != testutil.SHA256(data) {
					t.Fatalf("read %d bytes; want the object", len(b))
				}
			case <-time.After(20 * time.Second):
				t.Fatal("the last byte waits for the commit")
			}
			if fl.Stored() {
				t.Fatal("stored before the commit was let through")
			}
		})
	}
}
