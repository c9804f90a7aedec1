package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/cluster"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

const (
	key    = "example.com/pool/file.bin"
	secret = "s3cret"
	lease  = 30 * time.Second
)

// clock is a fake clock for lease deadlines.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// replica is a node with a peer listener on loopback, whose mirror side is
// played by peer, and an origin that counts its requests.
type replica struct {
	node    *cluster.Node
	srv     *httptest.Server
	origins atomic.Int64
	body    []byte

	mu     sync.Mutex
	ranges []string // the Range of each origin request
}

// originRanges returns the Range header of each origin request so far.
func (r *replica) originRanges() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ranges...)
}

// newReplica starts a replica on store whose peer listener serves
// peerBody (the owner's copy) for any key.
func newReplica(t *testing.T, store storage.Backend, clk *clock, peerBody []byte) *replica {
	t.Helper()
	r := &replica{body: peerBody}
	r.srv = httptest.NewUnstartedServer(nil)
	node, err := cluster.New(cluster.Config{
		Store: store, Self: "http://" + r.srv.Listener.Addr().String(), Secret: secret,
		LeaseDuration: lease, MaxWait: time.Minute, Now: clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	r.node = node
	r.srv.Config.Handler = node.Handler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("ETag", `"peer"`)
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(r.body))
	}))
	r.srv.Start()
	t.Cleanup(func() {
		r.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := node.Close(ctx); err != nil {
			t.Errorf("closing node: %v", err)
		}
	})
	return r
}

// origin is the replica's origin: it counts requests and answers body.
func (r *replica) origin(ctx context.Context, h http.Header) (*http.Response, error) {
	r.origins.Add(1)
	r.mu.Lock()
	r.ranges = append(r.ranges, h.Get("Range"))
	r.mu.Unlock()
	body := []byte("from the origin")
	return &http.Response{
		StatusCode: http.StatusOK, ContentLength: int64(len(body)),
		Header: http.Header{"Etag": {`"origin"`}}, Body: io.NopCloser(bytes.NewReader(body)),
	}, nil
}

// get starts a coordinated fill of key on r and returns its first answer,
// read whole.
func get(t *testing.T, r *replica, c httpmirror.Coordination, h http.Header) (body string, fromOrigin bool, status int) {
	t.Helper()
	resp, fromOrigin, err := c.Get(context.Background(), h)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), fromOrigin, resp.StatusCode
}

// readLease returns the lease of key in store.
func readLease(t *testing.T, store storage.Claimer) (owner string, deadline time.Time, ok bool) {
	t.Helper()
	cl, err := store.ReadClaim(context.Background(), cluster.LeaseName(key))
	if errors.Is(err, storage.ErrNotFound) {
		return "", time.Time{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		Owner    string
		Deadline time.Time
	}
	if err := json.Unmarshal(cl.Data, &l); err != nil {
		t.Fatalf("lease %q: %v", cl.Data, err)
	}
	return l.Owner, l.Deadline, true
}

// The first replica to miss claims the fill and asks its origin; the
// second streams the owner's copy over the authenticated peer listener and
// never asks its origin; the lease is gone once the owner's fill is done.
func TestOwnerFetchesOthersStreamFromIt(t *testing.T) {
	store, clk := memory.New(), newClock()
	a := newReplica(t, store, clk, []byte("owner's copy"))
	b := newReplica(t, store, clk, nil)

	ca := a.node.Coordinate(key, a.origin)
	if body, fromOrigin, _ := get(t, a, ca, nil); !fromOrigin || body != "from the origin" {
		t.Fatalf("owner got %q (fromOrigin %v); want the origin's body", body, fromOrigin)
	}
	owner, deadline, ok := readLease(t, store)
	if !ok || owner != a.srv.URL || !deadline.Equal(clk.Now().Add(lease)) {
		t.Fatalf("lease owner %q deadline %v (present %v); want %s until %v", owner, deadline, ok, a.srv.URL, clk.Now().Add(lease))
	}
	cb := b.node.Coordinate(key, b.origin)
	if body, fromOrigin, _ := get(t, b, cb, nil); fromOrigin || body != "owner's copy" {
		t.Fatalf("second replica got %q (fromOrigin %v); want the owner's copy", body, fromOrigin)
	}
	cb.Done()
	if n := a.origins.Load() + b.origins.Load(); n != 1 {
		t.Errorf("origins asked %d times; want 1", n)
	}
	ca.Done()
	if _, _, ok := readLease(t, store); ok {
		t.Errorf("lease still there after the owner's fill ended")
	}
}

// A fill that fails releases its lease too.
func TestFailedFillReleasesLease(t *testing.T) {
	store, clk := memory.New(), newClock()
	a := newReplica(t, store, clk, nil)
	c := a.node.Coordinate(key, func(context.Context, http.Header) (*http.Response, error) {
		return nil, errors.New("origin down")
	})
	if _, _, err := c.Get(context.Background(), nil); err == nil {
		t.Fatal("Get succeeded; want the origin's error")
	}
	if _, _, ok := readLease(t, store); !ok {
		t.Fatal("no lease while the failed fill has not ended")
	}
	c.Done()
	if _, _, ok := readLease(t, store); ok {
		t.Errorf("lease still there after the failed fill ended")
	}
}

// An owner that stops renewing (crashed) loses its fill one lease period
// later: exactly one of the replicas that miss then takes it over and asks
// the origin; the others stream from the new owner. The old owner's
// renewal and release then leave the new lease alone.
func TestExpiredLeaseTakenOverOnce(t *testing.T) {
	store, clk := memory.New(), newClock()
	dead := newReplica(t, store, clk, nil)
	cd := dead.node.Coordinate(key, dead.origin)
	get(t, dead, cd, nil)

	clk.Advance(lease - time.Millisecond)
	b := newReplica(t, store, clk, []byte("b's copy"))
	c := newReplica(t, store, clk, []byte("c's copy"))
	if body, fromOrigin, _ := get(t, b, b.node.Coordinate(key, b.origin), nil); fromOrigin || body != "" {
		t.Fatalf("before the deadline: got %q (fromOrigin %v); want the live owner's (empty) copy", body, fromOrigin)
	}

	clk.Advance(time.Millisecond)
	cb := b.node.Coordinate(key, b.origin)
	if _, fromOrigin, _ := get(t, b, cb, nil); !fromOrigin {
		t.Fatalf("at the deadline: the replica did not take the fill over")
	}
	if owner, _, _ := readLease(t, store); owner != b.srv.URL {
		t.Fatalf("lease owner %q after the takeover; want %s", owner, b.srv.URL)
	}
	cc := c.node.Coordinate(key, c.origin)
	if body, fromOrigin, _ := get(t, c, cc, nil); fromOrigin || body != "b's copy" {
		t.Fatalf("third replica got %q (fromOrigin %v); want the new owner's copy", body, fromOrigin)
	}
	if n := b.origins.Load() + c.origins.Load(); n != 1 {
		t.Errorf("origins asked %d times after the takeover; want 1", n)
	}

	if err := cluster.Renew(cd); err == nil {
		t.Errorf("the old owner renewed a lease taken over")
	}
	cd.Done()
	if owner, _, ok := readLease(t, store); !ok || owner != b.srv.URL {
		t.Errorf("after the old owner's release: lease owner %q (present %v); want %s", owner, ok, b.srv.URL)
	}
	cb.Done()
	if _, _, ok := readLease(t, store); ok {
		t.Errorf("lease still there after the new owner's fill ended")
	}
}

// Renewals move the deadline while the fill makes progress, so a slow but
// live fill is not taken over; a body that delivers nothing between two
// ticks is not renewed.
func TestRenewalFollowsProgress(t *testing.T) {
	store, clk := memory.New(), newClock()
	a := newReplica(t, store, clk, []byte("a's copy"))
	b := newReplica(t, store, clk, nil)
	stall := make(chan struct{})
	defer close(stall)
	ca := a.node.Coordinate(key, func(context.Context, http.Header) (*http.Response, error) {
		return &http.Response{StatusCode: 200, ContentLength: -1, Header: http.Header{},
			Body: io.NopCloser(io.MultiReader(bytes.NewReader([]byte("abc")), blocking(stall)))}, nil
	})
	resp, _, err := ca.Get(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Done()
	defer resp.Body.Close()
	if cluster.Progressed(ca) {
		t.Fatal("a body open with no byte read counts as progress")
	}
	io.ReadFull(resp.Body, make([]byte, 3))
	if !cluster.Progressed(ca) {
		t.Fatal("bytes read do not count as progress")
	}
	if cluster.Progressed(ca) {
		t.Fatal("no new bytes since the last tick count as progress")
	}

	clk.Advance(lease / 2)
	if err := cluster.Renew(ca); err != nil {
		t.Fatal(err)
	}
	if _, deadline, _ := readLease(t, store); !deadline.Equal(clk.Now().Add(lease)) {
		t.Fatalf("deadline %v after renewal; want %v", deadline, clk.Now().Add(lease))
	}
	clk.Advance(lease * 3 / 4) // past the first deadline, before the renewed one
	if body, fromOrigin, _ := get(t, b, b.node.Coordinate(key, b.origin), nil); fromOrigin || body != "a's copy" {
		t.Fatalf("after the renewal: got %q (fromOrigin %v); want the owner's copy", body, fromOrigin)
	}
}

type blocking chan struct{}

func (b blocking) Read([]byte) (int, error) { <-b; return 0, io.EOF }

// An owner that cannot be reached while its lease is live makes the fill
// wait for the committed object, which it then streams without asking the
// origin.
func TestUnreachableOwnerWaitsForStoredObject(t *testing.T) {
	store, clk := memory.New(), newClock()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close()
	writeLease(t, store, deadURL, clk.Now().Add(lease))
	b := newReplica(t, store, clk, nil)

	committed := make(chan struct{})
	go func() {
		defer close(committed)
		w, err := store.Create(context.Background(), key, storage.Info{Size: 6, ETag: `"stored"`})
		if err == nil {
			w.Write([]byte("stored"))
			w.Commit(context.Background())
			w.Close()
		}
	}()
	cb := b.node.Coordinate(key, b.origin)
	defer cb.Done()
	body, fromOrigin, _ := get(t, b, cb, nil)
	<-committed
	if fromOrigin || body != "stored" || b.origins.Load() != 0 {
		t.Fatalf("got %q (fromOrigin %v, %d origin requests); want the stored object and no origin request", body, fromOrigin, b.origins.Load())
	}
}

// writeLease stores a lease of key naming owner until deadline.
func writeLease(t *testing.T, store storage.Claimer, owner string, deadline time.Time) {
	t.Helper()
	data, _ := json.Marshal(map[string]any{"owner": owner, "key": key, "started": deadline.Add(-lease), "deadline": deadline})
	if _, err := store.Claim(context.Background(), cluster.LeaseName(key), data); err != nil {
		t.Fatal(err)
	}
}

// A stream from another replica that breaks is resumed from the live
// owner with the fill's Range, or from the stored object; once the
// owner's fill ended without storing the object (its lease is gone), the
// replica takes the fill over: the origin is asked for the rest, from the
// fill's offset.
func TestResumeFromOwnerStoredOrOrigin(t *testing.T) {
	store, clk := memory.New(), newClock()
	a := newReplica(t, store, clk, []byte("0123456789"))
	b := newReplica(t, store, clk, nil)
	ca := a.node.Coordinate(key, a.origin)
	get(t, a, ca, nil)
	cb := b.node.Coordinate(key, b.origin)
	defer cb.Done()
	get(t, b, cb, nil)

	rng := http.Header{"Range": {"bytes=4-"}, "If-Range": {`"peer"`}}
	if body, fromOrigin, status := get(t, b, cb, rng); fromOrigin || status != 206 || body != "456789" {
		t.Fatalf("resume from the owner: %d %q (fromOrigin %v); want 206 \"456789\"", status, body, fromOrigin)
	}
	w, _ := store.Create(context.Background(), key, storage.Info{Size: 10, ETag: `"peer"`})
	w.Write([]byte("0123456789"))
	w.Commit(context.Background())
	w.Close()
	if body, fromOrigin, status := get(t, b, cb, rng); fromOrigin || status != 206 || body != "456789" {
		t.Fatalf("resume from storage: %d %q (fromOrigin %v); want 206 \"456789\"", status, body, fromOrigin)
	}
	if n := b.origins.Load(); n != 0 {
		t.Errorf("the streaming replica asked its origin %d times; want 0", n)
	}
	store.Delete(context.Background(), key)
	ca.Done() // the owner's fill failed: nothing stored, no lease
	if _, fromOrigin, _ := get(t, b, cb, rng); !fromOrigin {
		t.Fatalf("resume with the owner's fill gone: not from the origin")
	}
	if got := b.originRanges(); len(got) != 1 || got[0] != "bytes=4-" {
		t.Errorf("origin requests with Range %q; want one, bytes=4-", got)
	}
	if owner, _, ok := readLease(t, store); !ok || owner != b.srv.URL {
		t.Errorf("lease owner %q (present %v); want the replica that took over", owner, ok)
	}
}

// killable is a store that counts AbortUploads calls.
type killable struct {
	*memory.Backend
	aborts atomic.Int64
}

func (k *killable) AbortUploads(context.Context, string) (int, error) {
	k.aborts.Add(1)
	return 1, nil
}

// When the owner whose stream broke refuses connections (its process
// died), its lease is dead at once, long before its deadline: of the
// replicas that streamed from it, exactly one takes the fill over (it
// aborts the dead owner's uploads, and the origin is asked for the rest
// once), and the other resumes from that one, from its own offset.
func TestDeadOwnerTakenOverBeforeItsDeadline(t *testing.T) {
	store, clk := &killable{Backend: memory.New()}, newClock()
	a := newReplica(t, store, clk, []byte("0123456789"))
	b := newReplica(t, store, clk, []byte("0123456789"))
	c := newReplica(t, store, clk, []byte("0123456789"))
	ca := a.node.Coordinate(key, a.origin)
	get(t, a, ca, nil)
	defer ca.Done()
	cb, cc := b.node.Coordinate(key, b.origin), c.node.Coordinate(key, c.origin)
	defer cb.Done()
	defer cc.Done()
	get(t, b, cb, nil)
	get(t, c, cc, nil)
	a.srv.Close() // kill -9: nothing listens at the owner's address

	type answer struct {
		fromOrigin bool
		status     int
		body       string
	}
	answers := make([]answer, 2)
	var wg sync.WaitGroup
	for i, tc := range []struct {
		r *replica
		c httpmirror.Coordination
		h http.Header
	}{
		{b, cb, http.Header{"Range": {"bytes=3-"}, "If-Range": {`"peer"`}}},
		{c, cc, http.Header{"Range": {"bytes=6-"}, "If-Range": {`"peer"`}}},
	} {
		wg.Go(func() {
			resp, fromOrigin, err := tc.c.Get(context.Background(), tc.h)
			if err != nil {
				t.Errorf("resume %d: %v", i, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers[i] = answer{fromOrigin, resp.StatusCode, string(body)}
		})
	}
	wg.Wait()
	if answers[0].fromOrigin == answers[1].fromOrigin {
		t.Fatalf("answers %+v; want one from the origin, one from the replica that took over", answers)
	}
	winner, other, otherBody := b, c, "6789"
	if answers[1].fromOrigin {
		winner, other, otherBody = c, b, "3456789"
	}
	if i := map[*replica]int{b: 1, c: 0}[winner]; answers[i].status != 206 || answers[i].body != otherBody {
		t.Errorf("the other replica's resume: %d %q; want 206 %q from the new owner", answers[i].status, answers[i].body, otherBody)
	}
	if n := winner.origins.Load() + other.origins.Load(); n != 1 {
		t.Errorf("origins asked %d times; want 1", n)
	}
	if owner, deadline, _ := readLease(t, store); owner != winner.srv.URL || !deadline.Equal(clk.Now().Add(lease)) {
		t.Errorf("lease %q until %v; want the new owner's, a lease duration from now", owner, deadline)
	}
	if n := store.aborts.Load(); n != 1 {
		t.Errorf("%d aborts of the dead owner's uploads; want 1", n)
	}
	// When the new owner's fill ends, the dead owner's uploads are
	// aborted once more, before the lease goes: one the owner asked for
	// just before it died may have reached the store after the first.
	map[*replica]httpmirror.Coordination{b: cb, c: cc}[winner].Done()
	if n := store.aborts.Load(); n != 2 {
		t.Errorf("%d aborts of the dead owner's uploads after the fill ended; want 2", n)
	}
}

// counting is a store that closes reached at its at-th Claim.
type counting struct {
	*memory.Backend
	claims  atomic.Int64
	at      int64
	reached chan struct{}
}

func (c *counting) Claim(ctx context.Context, name string, data []byte) (storage.Claim, error) {
	if c.claims.Add(1) == c.at {
		close(c.reached)
	}
	return c.Backend.Claim(ctx, name, data)
}

// An owner this fill never streamed from that refuses connections may be
// alive (a wrong --advertise-url): its lease is waited out, not taken
// over, and the stored object is served when it comes.
func TestRefusingOwnerNotStreamedFromIsWaitedOut(t *testing.T) {
	store, clk := &counting{Backend: memory.New(), at: 4, reached: make(chan struct{})}, newClock()
	a := newReplica(t, store, clk, []byte("0123456789"))
	b := newReplica(t, store, clk, nil)
	ca := a.node.Coordinate(key, a.origin)
	get(t, a, ca, nil)
	defer ca.Done()
	cb := b.node.Coordinate(key, b.origin)
	defer cb.Done()
	get(t, b, cb, nil)
	a.srv.Close()
	// The lease now names another owner, one that refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := "http://" + ln.Addr().String()
	ln.Close()
	cl, _ := store.ReadClaim(context.Background(), cluster.LeaseName(key))
	data, _ := json.Marshal(map[string]any{"owner": elsewhere, "key": key, "deadline": clk.Now().Add(lease)})
	if _, err := store.Swap(context.Background(), cluster.LeaseName(key), data, cl.Version); err != nil {
		t.Fatal(err)
	}
	go func() {
		// The first two claims were the fills' first requests; the
		// resume's first round found the owner refusing, the second
		// comes after a pause.
		<-store.reached
		w, _ := store.Create(context.Background(), key, storage.Info{Size: 10, ETag: `"peer"`})
		w.Write([]byte("0123456789"))
		w.Commit(context.Background())
		w.Close()
	}()
	rng := http.Header{"Range": {"bytes=4-"}, "If-Range": {`"peer"`}}
	if body, fromOrigin, status := get(t, b, cb, rng); fromOrigin || status != 206 || body != "456789" {
		t.Fatalf("resume: %d %q (fromOrigin %v); want 206 \"456789\" from storage", status, body, fromOrigin)
	}
	if n := b.origins.Load(); n != 0 {
		t.Errorf("origin asked %d times; want 0", n)
	}
}

// A claim won just after the object was committed (its owner released
// the lease in between) is given back at once: the object is streamed
// from storage, the origin is not asked.
func TestClaimAfterCommitServesStored(t *testing.T) {
	store, clk := memory.New(), newClock()
	w, _ := store.Create(context.Background(), key, storage.Info{Size: 3})
	w.Write([]byte("old"))
	w.Commit(context.Background())
	w.Close()
	a := newReplica(t, store, clk, nil)
	c := a.node.Coordinate(key, a.origin)
	if body, fromOrigin, _ := get(t, a, c, nil); fromOrigin || body != "old" || a.origins.Load() != 0 {
		t.Fatalf("got %q (fromOrigin %v, %d origin requests); want the stored object", body, fromOrigin, a.origins.Load())
	}
	if _, _, ok := readLease(t, store); ok {
		t.Errorf("lease kept though the object was stored")
	}
	c.Done()
}

// Peer requests need the secret: none is 401, a wrong one 403, and paths
// outside /peer/ are 404 whatever the secret. The scheme's name is
// matched in any case.
func TestPeerListenerAuthenticates(t *testing.T) {
	a := newReplica(t, memory.New(), newClock(), []byte("x"))
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/peer/" + key, "", http.StatusUnauthorized},
		{"/peer/" + key, "Bearer wrong", http.StatusForbidden},
		{"/peer/" + key, "Basic " + secret, http.StatusUnauthorized},
		{"/peer/" + key, "Bearer " + secret, http.StatusOK},
		// The scheme is case-insensitive (RFC 9110 section 11.1).
		{"/peer/" + key, "bearer " + secret, http.StatusOK},
		{"/peer/" + key, "BEARER " + secret, http.StatusOK},
		{"/peer/" + key, "Bearer  " + secret, http.StatusOK},
		{"/peer/" + key, "bearer wrong", http.StatusForbidden},
		{"/peer/" + key, "Bearer", http.StatusUnauthorized},
		{"/peer/" + key, "Bearerx " + secret, http.StatusUnauthorized},
		{"/metrics", "Bearer " + secret, http.StatusNotFound},
	} {
		req, _ := http.NewRequest(http.MethodGet, a.srv.URL+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s with %q: status %d; want %d", tc.path, tc.auth, resp.StatusCode, tc.want)
		}
	}
}
