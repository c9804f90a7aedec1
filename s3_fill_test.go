package httpmirror_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// Acceptance 4: a 100 MiB file goes up as a multipart upload (the store's
// ETag counts 7 parts of 16 MiB) and is served intact; the test reports
// the heap growth while it streams.
func TestS3LargeObjectMultipart(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MiB object")
	}
	o := newOrigin(t)
	data := payload(35, 100<<20)
	o.Put("/models/weights.bin", data)
	st := newS3(t, nil, "")
	m := newMirror(t, o, withStore(st))
	u := m.url(o, "/models/weights.bin")

	// The client hashes the body as it arrives, so the heap figure is the
	// mirror's (fill, spool, S3 writer) and the SDK's.
	var status int
	var sum string
	peak := testutil.PeakHeap(func() {
		status, sum = getSHA(t, u)
		waitFills(t, m)
	})
	if status != 200 || sum != sha(data) {
		t.Fatalf("status %d, sha256 %s; want 200, %s", status, sum, sha(data))
	}
	t.Logf("100 MiB fill to S3 (16 MiB parts): peak heap growth %.1f MiB", float64(peak)/(1<<20))

	key := objectKeyOf(t, st, o, "/models/weights.bin")
	head, err := st.srv.Client().HeadObject(context.Background(), &awss3.HeadObjectInput{Bucket: &st.bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	if etag := aws.ToString(head.ETag); !strings.HasSuffix(etag, `-7"`) {
		t.Errorf("S3 ETag %s; want a multipart upload of 7 parts", etag)
	}
	if f := follow(t, get(t, u)); sha(f.body) != sha(data) {
		t.Errorf("stored object sha256 %s; want %s", sha(f.body), sha(data))
	}
	o.CheckFetchedOnce(t, "/models/weights.bin", int64(len(data)))
}

// getSHA GETs u without following redirects and returns the status and
// the hex SHA-256 of the body, hashed as it streams in.
func getSHA(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := noRedirectClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp.StatusCode, hex.EncodeToString(h.Sum(nil))
}

// Acceptance 5: 20 concurrent cold requests make one origin GET, and every
// client gets the file (streamed from the fill, or through the redirect
// once it is stored).
func TestS3ConcurrentColdRequests(t *testing.T) {
	o := newOrigin(t)
	data := payload(36, 8<<20)
	o.Put("/iso/disk.img", data)
	st := newS3(t, nil, "")
	m := newMirror(t, o, withStore(st))
	u := m.url(o, "/iso/disk.img")
	// The default client follows the redirect, if any.
	testutil.GetMany(t, http.DefaultClient, 20, func(int) string { return u }, sha(data))()
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
}

// Acceptance 6: when the store goes away, cached and cold files alike are
// fetched from the origin and served, never answered with an error.
func TestS3StoreDownFallsBackToOrigin(t *testing.T) {
	srv := s3test.StartT(t) // this test stops its own server
	o := newOrigin(t)
	cached, cold := payload(37, 2<<20), payload(38, 300000)
	o.Put("/cached.bin", cached)
	o.Put("/cold.bin", cold)
	st := newS3(t, srv, "")
	m := newMirror(t, o, withStore(st), noTee)
	if f := follow(t, get(t, m.url(o, "/cached.bin"))); sha(f.body) != sha(cached) {
		t.Fatalf("before the outage: wrong bytes")
	}

	srv.Stop()
	for _, tc := range []struct {
		path string
		data []byte
	}{{"/cached.bin", cached}, {"/cold.bin", cold}, {"/cached.bin", cached}} {
		r := get(t, m.url(o, tc.path))
		if r.StatusCode != 200 || sha(r.body) != sha(tc.data) {
			t.Fatalf("%s with the store down: status %d, %d bytes; want 200 with the file", tc.path, r.StatusCode, len(r.body))
		}
		r = do(t, http.MethodHead, m.url(o, tc.path), nil)
		if r.StatusCode != 200 || r.ContentLength != int64(len(tc.data)) {
			t.Fatalf("HEAD %s with the store down: status %d, length %d; want 200, %d", tc.path, r.StatusCode, r.ContentLength, len(tc.data))
		}
	}
}

// Acceptance 7: two mirrors sharing a bucket: a file one of them filled is
// a hit for the other.
func TestS3TwoMirrorsShareBucket(t *testing.T) {
	o := newOrigin(t)
	data := payload(39, 1<<20)
	o.Put("/shared/lib.so", data)
	a := newS3(t, nil, "")
	// The second replica has its own backend on the same bucket.
	b := a.srv.Backend(t, a.bucket, "")
	m1 := newMirror(t, o, withStore(a), noTee)
	m2 := newMirror(t, o, withStore(b), noTee)

	if f := follow(t, get(t, m1.url(o, "/shared/lib.so"))); sha(f.body) != sha(data) {
		t.Fatalf("first mirror: wrong bytes")
	}
	if f := follow(t, get(t, m2.url(o, "/shared/lib.so"))); sha(f.body) != sha(data) {
		t.Fatalf("second mirror: wrong bytes")
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1 (the second mirror's request is a hit)", n)
	}
}

// flakyOpen is a store whose Stat works but whose Open fails, as when the
// store breaks between the two calls.
type flakyOpen struct{ *memory.Backend }

func (f flakyOpen) Open(ctx context.Context, key string) (storage.Object, error) {
	return nil, errStoreBroken
}

// A stored object that cannot be opened is fetched from the origin again
// instead of failing the request.
func TestStoredObjectUnreadableFallsBackToOrigin(t *testing.T) {
	o := newOrigin(t)
	data := payload(40, 5000)
	o.Put("/a.bin", data)
	store := flakyOpen{memory.New()}
	for _, tee := range []bool{true, false} {
		m := newMirror(t, o, withStore(store), func(h *httpmirror.MirrorHandler) { h.TeeResponse = tee })
		for i := range 2 {
			r := get(t, m.url(o, "/a.bin"))
			if r.StatusCode != 200 || sha(r.body) != sha(data) {
				t.Fatalf("tee %v, request %d: status %d; want 200 with the file from the origin", tee, i, r.StatusCode)
			}
			waitFills(t, m)
		}
	}
}

// The S3 store goes away in the middle of a fill: the upload fails, the
// clients still get the whole file from the fill's spool, nothing is
// stored, and readiness reports the failing writes.
func TestS3WriteFailureMidFill(t *testing.T) {
	srv := s3test.StartT(t) // this test stops its own server
	o := newOrigin(t)
	data := payload(103, 12<<20)
	o.Put("/model.bin", data)
	reached := make(chan struct{})
	resume := newGate(t)
	o.SetHook(stallingHook(6<<20, func() { close(reached) }, resume))
	st := newS3(t, srv, "chunksize=5242880")
	m := newMirror(t, o, withStore(st))
	wait := testutil.GetMany(t, http.DefaultClient, 3, func(int) string { return m.url(o, "/model.bin") }, sha(data))
	<-reached
	srv.Stop() // the first part is uploaded or under way; the rest will fail
	resume.Open()
	wait()
	waitFills(t, m)
	if err := m.h.Check(context.Background()); err == nil {
		t.Fatal("Check after S3 writes failed = nil; want an error")
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
}
