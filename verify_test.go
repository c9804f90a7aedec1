package httpmirror_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/fill"
	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/file"
)

// putObject stores body under key through the backend, with the digest of
// body in its metadata when digest is set, as a fill records it.
func putObject(t *testing.T, b storage.Backend, key string, body []byte, digest bool) {
	t.Helper()
	info := storage.Info{Size: int64(len(body)), ETag: `"` + key + `"`, ContentType: "application/octet-stream", StoredAt: time.Now()}
	if digest {
		sum := sha256.Sum256(body)
		info.Header = map[string][]string{policy.DigestHeader: {policy.FormatSHA256(sum[:])}}
	}
	ctx := context.Background()
	w, err := b.Create(ctx, key, info)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// flipByte inverts the byte at offset off of the file at path in place:
// the bit rot or tampering verify is for.
func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func hexSHA(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// runVerify runs a verify job to its end (at most 30 s) and returns its
// status.
func runVerify(t *testing.T, h *httpmirror.MirrorHandler, opts httpmirror.VerifyOptions) httpmirror.VerifyStatus {
	t.Helper()
	id, err := h.Verify(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := h.WaitVerify(ctx, id)
	if err != nil || st.State == httpmirror.VerifyRunning {
		t.Fatalf("verify %s: %+v, %v; want it ended", id, st, err)
	}
	return st
}

// Objects corrupted in storage (one byte flipped in the body on disk, or
// in the bucket's file behind S3) are reported with the digest kept and
// the one of their bytes; intact ones are OK; one stored without a digest
// gets the digest of its bytes recorded. With purge the corrupted one is
// deleted and the others stay. Objects outside the prefix are not read.
func TestVerifyFindsCorruptedObjects(t *testing.T) {
	for _, backend := range []string{"file", "s3"} {
		t.Run(backend, func(t *testing.T) {
			var m *testMirror
			var location func(key string) string
			switch backend {
			case "file":
				m = newMirror(t, nil)
				location = func(key string) string {
					p, err := m.store.(storage.Locator).Location(key)
					if err != nil {
						t.Fatal(err)
					}
					return p
				}
			case "s3":
				st := newS3(t, nil, "")
				m = newMirror(t, nil, withStore(st))
				location = func(key string) string {
					okey, err := st.ObjectKey(key)
					if err != nil {
						t.Fatal(err)
					}
					return st.srv.ObjectFile(st.bucket, okey)
				}
			}
			store := m.h.RemoteCache
			const size = 100000 // over the local disk's in-memory object size
			keys := []string{"example.com/pool/a.bin", "example.com/pool/b.bin", "example.com/pool/c.bin", "other.example/pool/d.bin"}
			bodies := map[string][]byte{}
			for i, k := range keys {
				bodies[k] = payload(uint64(i+1), size)
				putObject(t, store, k, bodies[k], k != "example.com/pool/c.bin")
			}
			before, err := store.Stat(context.Background(), "example.com/pool/c.bin")
			if err != nil {
				t.Fatal(err)
			}
			// The body comes first in both files (the local file's trailer
			// follows it).
			flipByte(t, location("example.com/pool/b.bin"), 4321)
			flipByte(t, location("other.example/pool/d.bin"), 10)
			corrupted := append([]byte(nil), bodies["example.com/pool/b.bin"]...)
			corrupted[4321] ^= 0xff

			st := runVerify(t, m.h, httpmirror.VerifyOptions{Prefix: "https://example.com/pool"})
			want := []httpmirror.VerifyMismatch{{Key: "example.com/pool/b.bin", Expected: hexSHA(bodies["example.com/pool/b.bin"]), Got: hexSHA(corrupted)}}
			if st.State != httpmirror.VerifyDone || st.Prefix != "example.com/pool" || st.Checked != 3 || st.OK != 1 || st.Recorded != 1 ||
				st.Mismatched != 1 || st.Changed != 0 || st.Errors != 0 || st.Purged != 0 || st.Bytes != 3*size || st.Next != "" {
				t.Errorf("status %+v; want done, 3 checked: 1 ok, 1 recorded, 1 mismatched, %d bytes", st, 3*size)
			}
			if !slices.Equal(st.Mismatches, want) {
				t.Errorf("mismatches %+v; want %+v", st.Mismatches, want)
			}
			after, err := store.Stat(context.Background(), "example.com/pool/c.bin")
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(bodies["example.com/pool/c.bin"])
			if got, ok := policy.StoredSHA256(after); !ok || string(got) != string(sum[:]) {
				t.Errorf("c.bin header after verify %v; want the digest of its bytes recorded", after.Header)
			}
			if !after.StoredAt.Equal(before.StoredAt) || after.ETag != before.ETag || after.Size != before.Size {
				t.Errorf("c.bin after verify: %+v; want the metadata of before %+v kept", after, before)
			}

			st = runVerify(t, m.h, httpmirror.VerifyOptions{Prefix: "example.com/pool/", Purge: true})
			want[0].Purged = true
			if st.State != httpmirror.VerifyDone || st.Checked != 3 || st.OK != 2 || st.Recorded != 0 || st.Mismatched != 1 || st.Purged != 1 ||
				!slices.Equal(st.Mismatches, want) {
				t.Errorf("status with purge %+v; want 2 ok, 1 mismatched and purged %+v", st, want)
			}
			for _, k := range keys {
				_, err := store.Stat(context.Background(), k)
				if k == "example.com/pool/b.bin" {
					if !errors.Is(err, storage.ErrNotFound) {
						t.Errorf("Stat %s after the purge: %v; want not found", k, err)
					}
				} else if err != nil {
					t.Errorf("Stat %s after the purge: %v; want it kept", k, err)
				}
			}
			st = runVerify(t, m.h, httpmirror.VerifyOptions{Prefix: "example.com"})
			if st.State != httpmirror.VerifyDone || st.Checked != 2 || st.OK != 2 || st.Mismatched != 0 {
				t.Errorf("status after the purge %+v; want 2 ok", st)
			}
			// Everything: the object of the other host too.
			st = runVerify(t, m.h, httpmirror.VerifyOptions{})
			if st.Checked != 3 || st.Mismatched != 1 || st.Mismatches[0].Key != "other.example/pool/d.bin" {
				t.Errorf("status of a verify of everything %+v; want d.bin mismatched", st)
			}
		})
	}
}

// holdStore is a local-disk store whose listing pages hold two objects
// and whose Reread (how a verify job opens objects) of the key hold, the
// first time, says so on reached and then blocks until its context ends.
// It counts the rereads of every key.
type holdStore struct {
	*file.Backend
	hold    string
	reached chan struct{}

	mu    sync.Mutex
	opens map[string]int
}

func (s *holdStore) List(ctx context.Context, prefix, token string, limit int) ([]storage.Info, string, error) {
	return s.Backend.List(ctx, prefix, token, 2)
}

func (s *holdStore) Reread(ctx context.Context, key string) (storage.Object, error) {
	s.mu.Lock()
	s.opens[key]++
	n := s.opens[key]
	s.mu.Unlock()
	if key == s.hold && n == 1 {
		s.reached <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.Backend.Reread(ctx, key)
}

func newHoldStore(t *testing.T, hold string) *holdStore {
	b, err := file.New(filepath.Join(t.TempDir(), "cache"), file.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &holdStore{Backend: b, hold: hold, reached: make(chan struct{}, 1), opens: map[string]int{}}
}

// A verify job cancelled while it reads an object stops there; resumed
// from its status's next, it verifies that object and the rest, and none
// of those it had verified before, whether it stopped within a listing
// page or at the start of one.
func TestVerifyResume(t *testing.T) {
	keys := []string{"example.com/k0", "example.com/k1", "example.com/k2", "example.com/k3", "example.com/k4"}
	for _, at := range []int{1, 2} { // pages of two: k1 within the first, k2 the start of the second
		t.Run(keys[at], func(t *testing.T) {
			store := newHoldStore(t, keys[at])
			m := newMirror(t, nil, withStore(store))
			for i, k := range keys {
				putObject(t, store.Backend, k, payload(uint64(i), 1000+i), true)
			}
			id, err := m.h.Verify(httpmirror.VerifyOptions{Prefix: "example.com"})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-store.reached:
			case <-time.After(30 * time.Second):
				t.Fatal("the job did not reach the held object")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := m.h.CancelVerify(ctx, id)
			if err != nil || st.State != httpmirror.VerifyCancelled || st.Checked != int64(at) || st.OK != int64(at) || st.Next == "" {
				t.Fatalf("cancelled job: %+v, %v; want cancelled after %d objects, with next", st, err, at)
			}
			if again, err := m.h.VerifyProgress(id); err != nil || again.Next != st.Next || again.State != httpmirror.VerifyCancelled {
				t.Errorf("progress of the cancelled job %+v, %v; want as cancelled", again, err)
			}

			rest := runVerify(t, m.h, httpmirror.VerifyOptions{Prefix: "https://example.com", From: st.Next})
			if rest.State != httpmirror.VerifyDone || rest.Checked != int64(len(keys)-at) || rest.OK != rest.Checked || rest.Next != "" {
				t.Errorf("resumed job %+v; want done with the %d objects left ok", rest, len(keys)-at)
			}
			store.mu.Lock()
			defer store.mu.Unlock()
			for i, k := range keys {
				want := 1
				if i == at {
					want = 2 // held by the first job, read by the second
				}
				if store.opens[k] != want {
					t.Errorf("%s opened %d times; want %d", k, store.opens[k], want)
				}
			}
		})
	}
}

// A resume token of another prefix, or not one at all, is refused; so is
// a prefix that does not start with a host. Unknown ids are told apart.
func TestVerifyBadInput(t *testing.T) {
	m := newMirror(t, nil)
	putObject(t, m.store, "example.com/a", []byte("a"), true)
	st := runVerify(t, m.h, httpmirror.VerifyOptions{Prefix: "example.com", Rate: 1})
	if st.Checked != 1 || st.OK != 1 || st.Rate != 1 {
		t.Fatalf("status %+v", st)
	}
	for _, o := range []httpmirror.VerifyOptions{
		{Prefix: "other.example", From: "eyJwIjoiZXhhbXBsZS5jb20ifQ"}, // {"p":"example.com"}
		{Prefix: "example.com", From: "not a token"},
	} {
		if _, err := m.h.Verify(o); !errors.Is(err, httpmirror.ErrInvalidResumeToken) {
			t.Errorf("Verify(%+v): %v; want ErrInvalidResumeToken", o, err)
		}
	}
	if _, err := m.h.Verify(httpmirror.VerifyOptions{Prefix: "ftp://example.com/"}); !errors.Is(err, httpmirror.ErrInvalidRef) {
		t.Errorf("Verify of an ftp prefix: %v; want ErrInvalidRef", err)
	}
	if _, err := m.h.VerifyProgress("nope"); !errors.Is(err, httpmirror.ErrUnknownVerify) {
		t.Errorf("VerifyProgress(nope): %v; want ErrUnknownVerify", err)
	}
	if _, err := m.h.CancelVerify(context.Background(), "nope"); !errors.Is(err, httpmirror.ErrUnknownVerify) {
		t.Errorf("CancelVerify(nope): %v; want ErrUnknownVerify", err)
	}
}

// Close stops a running verify job; its status says so and where to
// resume. No job starts after Close.
func TestVerifyStopsOnClose(t *testing.T) {
	store := newHoldStore(t, "example.com/k0")
	putObject(t, store.Backend, "example.com/k0", []byte("zero"), true)
	h := &httpmirror.MirrorHandler{RemoteCache: store, HostFromFirstPath: true, Logger: testLogger(t)}
	if err := h.Validate(); err != nil {
		t.Fatal(err)
	}
	id, err := h.Verify(httpmirror.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-store.reached:
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not reach the held object")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := h.VerifyProgress(id)
	if err != nil || st.State != httpmirror.VerifyCancelled || st.Error != "stopped: the mirror is shutting down" || st.Checked != 0 || st.Next == "" {
		t.Errorf("job after Close: %+v, %v; want cancelled by the shutdown, with next", st, err)
	}
	if _, err := h.Verify(httpmirror.VerifyOptions{}); !errors.Is(err, fill.ErrShutdown) {
		t.Errorf("Verify after Close: %v; want fill.ErrShutdown", err)
	}
}

// A small object the local disk also holds in memory is verified as the
// disk holds it: bit rot under a hot copy is found, and the object's use
// order is left alone.
func TestVerifyReadsTheDiskUnderAMemoryCopy(t *testing.T) {
	m := newMirror(t, nil)
	store := m.h.RemoteCache
	const key = "example.com/pool/small.bin"
	body := payload(9, 3000) // under the in-memory object size
	putObject(t, store, key, body, true)
	obj, err := store.Open(context.Background(), key) // now held in memory
	if err != nil {
		t.Fatal(err)
	}
	obj.Close()
	p, err := m.store.(storage.Locator).Location(key)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, p, 100)
	if obj, err := store.Open(context.Background(), key); err != nil {
		t.Fatal(err)
	} else {
		got, _ := io.ReadAll(obj)
		obj.Close()
		if !bytes.Equal(got, body) {
			t.Fatalf("Open read the disk: the test needs the memory copy")
		}
	}
	corrupted := append([]byte(nil), body...)
	corrupted[100] ^= 0xff
	st := runVerify(t, m.h, httpmirror.VerifyOptions{Prefix: "example.com/pool/"})
	want := []httpmirror.VerifyMismatch{{Key: key, Expected: hexSHA(body), Got: hexSHA(corrupted)}}
	if st.Checked != 1 || st.Mismatched != 1 || !slices.Equal(st.Mismatches, want) {
		t.Errorf("status %+v; want the corrupted file found %+v", st, want)
	}
}
