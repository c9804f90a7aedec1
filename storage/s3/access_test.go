package s3_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/s3"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

func openClose(t *testing.T, b storage.Backend, key string) {
	t.Helper()
	o, err := b.Open(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
}

func listedInfo(t *testing.T, b *s3.Backend) map[string]storage.Info {
	t.Helper()
	objs, _, err := b.List(context.Background(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]storage.Info{}
	for _, o := range objs {
		out[o.Key] = o
	}
	return out
}

// Reads are counted in memory and written in one request per flush,
// whatever their number; the listing shows them at once, and other
// replicas on the bucket see them once flushed (at the latest at Close).
func TestAccessBatched(t *testing.T) {
	var ops opCounter
	b, srv, bucket := newBackend(t, counted(&ops), func(c *s3.Config) { c.AccessFlushInterval = time.Hour })
	clk := &fakeClock{t: time.Now()}
	s3.SetAccessClock(b, clk.Now)
	put(t, b, "example.com/a", []byte("aaaa"), info(4))
	put(t, b, "example.com/b", []byte("bb"), info(2))
	ops.reset()
	last := clk.add(time.Hour)
	for i := range 40 {
		openClose(t, b, "example.com/a")
		if i%4 == 0 {
			openClose(t, b, "example.com/b")
		}
	}
	// A verify's read and a Stat are not hits.
	if o, err := b.Reread(context.Background(), "example.com/a"); err == nil {
		o.Close()
	}
	b.Stat(context.Background(), "example.com/a")
	if n := ops.count("PutObject") + ops.count("CopyObject"); n != 0 {
		t.Errorf("%d writes for 50 reads before a flush; want 0", n)
	}
	got := listedInfo(t, b)
	if a := got["example.com/a"]; a.Hits != 40 || !a.LastAccess.Equal(last) {
		t.Errorf("a: hits %d, last access %v; want 40, %v", a.Hits, a.LastAccess, last)
	}
	if got["example.com/b"].Hits != 10 {
		t.Errorf("b: hits %d; want 10", got["example.com/b"].Hits)
	}
	ctx := context.Background()
	for range 3 {
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := ops.count("PutObject"); n != 1 {
		t.Errorf("%d PutObject for three flushes of one batch; want 1", n)
	}

	// Another replica on the bucket adds its reads to what it sees.
	b2, err := s3.New(ctx, s3.Config{Bucket: bucket, Region: "us-east-1", Endpoint: srv.Endpoint, ForcePathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	openClose(t, b2, "example.com/b")
	if got := listedInfo(t, b2)["example.com/b"]; got.Hits != 11 {
		t.Errorf("replica 2 sees %d hits of b; want 11 (10 + its own)", got.Hits)
	}
	if err := b2.Close(); err != nil { // writes its record
		t.Fatal(err)
	}
	if n, err := s3.AccessRecords(ctx, b); err != nil || n != 2 {
		t.Errorf("%d access records, %v; want 2", n, err)
	}
	// The objects listed are the objects: the records are not among them.
	if got := listedInfo(t, b); len(got) != 2 {
		t.Errorf("listed %d objects; want 2", len(got))
	}
}

// A sweep removes the objects nobody read since the cutoff, counting the
// reads another replica flushed, and leaves alone objects open here.
func TestExpireAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	r1, srv, bucket := newBackend(t, func(c *s3.Config) { c.AccessFlushInterval = time.Hour })
	r2, err := s3.New(ctx, s3.Config{Bucket: bucket, Region: "us-east-1", Endpoint: srv.Endpoint, ForcePathStyle: true,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, AccessFlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	clk := &fakeClock{t: time.Now()}
	s3.SetAccessClock(r1, clk.Now)
	s3.SetAccessClock(r2, clk.Now)
	keys := []string{"h/idle", "h/other", "h/self", "h/open", "h/kept"}
	for _, k := range keys {
		put(t, r1, k, []byte(k), info(int64(len(k))))
	}
	open, err := r1.Open(ctx, "h/open") // on day 0, still open
	if err != nil {
		t.Fatal(err)
	}
	clk.add(10 * 24 * time.Hour)
	openClose(t, r2, "h/other")
	if err := r2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	openClose(t, r1, "h/self")
	now := clk.add(25 * 24 * time.Hour)
	cutoff := now.Add(-30 * 24 * time.Hour)
	n, err := r1.Expire(ctx, cutoff, func(k string) bool { return k == "h/kept" })
	if err != nil || n != 1 {
		t.Fatalf("Expire = %d, %v; want 1 (h/idle)", n, err)
	}
	left := listedInfo(t, r1)
	for _, k := range keys {
		if _, ok := left[k]; ok == (k == "h/idle") {
			t.Errorf("%s stored after the sweep: %v", k, ok)
		}
	}
	open.Close()
	if n, err := r1.Expire(ctx, cutoff, nil); err != nil || n != 2 {
		t.Errorf("second sweep = %d, %v; want 2 (h/open, h/kept)", n, err)
	}
	// Much later, nothing was read since: every object goes, and the
	// records that tell nothing any more go with them.
	clk.add(60 * 24 * time.Hour)
	if n, err := r1.Expire(ctx, clk.Now().Add(-30*24*time.Hour), nil); err != nil || n != 2 {
		t.Errorf("late sweep = %d, %v; want 2", n, err)
	}
	if n, err := s3.AccessRecords(ctx, r1); err != nil || n != 1 {
		t.Errorf("%d access records left, %v; want 1 (the sweeper's own)", n, err)
	}
}

// The record of a process that stopped is adopted by a running one: the
// bucket keeps one record, and no hit is lost or counted twice; a record
// under an adoption claim held by a live process is left to it.
func TestAccessRecordsAdopted(t *testing.T) {
	ctx := context.Background()
	r1, srv, bucket := newBackend(t, func(c *s3.Config) { c.AccessFlushInterval = time.Hour })
	replica := func() *s3.Backend {
		b, err := s3.New(ctx, s3.Config{Bucket: bucket, Region: "us-east-1", Endpoint: srv.Endpoint, ForcePathStyle: true,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, AccessFlushInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	put(t, r1, "example.com/a", []byte("a"), info(1))
	for range 2 {
		openClose(t, r1, "example.com/a")
	}
	if err := r1.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, reads := range []int{3, 4} {
		r := replica()
		for range reads {
			openClose(t, r, "example.com/a")
		}
		if err := r.Close(); err != nil { // a stopped process's record
			t.Fatal(err)
		}
	}
	if n, err := s3.AccessRecords(ctx, r1); err != nil || n != 3 {
		t.Fatalf("%d access records, %v; want 3", n, err)
	}
	// Not stale yet: nothing adopted.
	if n, err := s3.AdoptAccessRecords(ctx, r1, time.Hour); err != nil || n != 0 {
		t.Errorf("adopted %d fresh records, %v; want 0", n, err)
	}
	if n, err := s3.AdoptAccessRecords(ctx, r1, 0); err != nil || n != 2 {
		t.Fatalf("adopted %d records, %v; want 2", n, err)
	}
	if n, err := s3.AccessRecords(ctx, r1); err != nil || n != 1 {
		t.Errorf("%d access records after the adoption, %v; want 1", n, err)
	}
	r3 := replica()
	defer r3.Close()
	if got := listedInfo(t, r3)["example.com/a"]; got.Hits != 9 {
		t.Errorf("a new replica sees %d hits; want 9 (2 + 3 + 4)", got.Hits)
	}
	if got := listedInfo(t, r1)["example.com/a"]; got.Hits != 9 {
		t.Errorf("the adopter sees %d hits; want 9", got.Hits)
	}
	// The adopter's own record is not adopted by the other live one while
	// another holds the adoption claim.
	r4 := replica()
	openClose(t, r4, "example.com/a")
	if err := r4.Close(); err != nil {
		t.Fatal(err)
	}
	ids, err := s3.AccessRecordIDs(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := r1.Claim(ctx, "access-"+id, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s3.AdoptAccessRecords(ctx, r3, 0); err != nil || n != 0 {
		t.Errorf("adopted %d records under live claims, %v; want 0", n, err)
	}
}
