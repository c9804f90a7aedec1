package httpmirror_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/cluster"
	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
	"github.com/httpmirror/httpmirror/storage/s3"
)

const peerSecret = "peer-secret"

// replica is a mirror of a cluster: its own S3 backend on the shared
// bucket, its node, and its peer listener.
type replica struct {
	*testMirror
	node  *cluster.Node
	peer  *httptest.Server
	store *s3.Backend
}

// newReplicas starts n mirrors sharing one bucket of the shared versitygw,
// each coordinated by a cluster node with its own peer listener and the
// lease duration lease (0: the default).
func newReplicas(t *testing.T, o *testOrigin, n int, lease time.Duration, configure ...func(*httpmirror.MirrorHandler)) ([]*replica, *s3test.Server, string) {
	t.Helper()
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	var rs []*replica
	for range n {
		cfg, err := s3.ParseURL(srv.StorageURL(bucket, "cache"))
		if err != nil {
			t.Fatal(err)
		}
		store, err := s3.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{store: store, peer: httptest.NewUnstartedServer(nil)}
		r.node, err = cluster.New(cluster.Config{
			Store: store, Self: "http://" + r.peer.Listener.Addr().String(), Secret: peerSecret,
			LeaseDuration: lease, Logger: testLogger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.node.Probe(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			r.peer.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := r.node.Close(ctx); err != nil {
				t.Errorf("closing node: %v", err)
			}
			store.Close()
		})
		r.testMirror = newMirror(t, o, append([]func(*httpmirror.MirrorHandler){
			withStore(store), func(h *httpmirror.MirrorHandler) { h.Coordinator = r.node },
		}, configure...)...)
		r.peer.Config.Handler = r.node.Handler(r.h.PeerHandler())
		r.peer.Start()
		rs = append(rs, r)
	}
	return rs, srv, bucket
}

// settle waits until every replica's fills have ended and its leases are
// released.
func settle(t *testing.T, rs []*replica) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range rs {
		waitFills(t, r.testMirror)
		if err := r.node.Wait(ctx); err != nil {
			t.Fatalf("leases still held: %v", err)
		}
	}
}

// bucketKeys lists the object keys in bucket.
func bucketKeys(t *testing.T, srv *s3test.Server, bucket string) []string {
	t.Helper()
	out, err := srv.Client().ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// Three replicas, nine clients, one cold file held by the origin halfway:
// every client gets its first bytes while the origin still holds the rest
// (the replicas that did not fetch stream the owner's fill), the origin
// sends the file once, every body is whole, and the bucket holds the
// object and no lease afterwards.
func TestReplicasFetchOnce(t *testing.T) {
	o := newOrigin(t)
	data := payload(160, 2<<20)
	o.Put("/models/w.bin", data)
	gate := newGate(t)
	o.SetHook(stallingHook(1<<20, nil, gate))
	rs, srv, bucket := newReplicas(t, o, 3, 0)

	const perReplica = 3
	var firstBytes sync.WaitGroup
	firstBytes.Add(3 * perReplica)
	var wg sync.WaitGroup
	errs := make(chan error, 3*perReplica)
	for i := range 3 * perReplica {
		wg.Go(func() {
			resp, err := noRedirectClient.Get(rs[i%3].url(o, "/models/w.bin"))
			if err != nil {
				firstBytes.Done()
				errs <- err
				return
			}
			defer resp.Body.Close()
			// The body is hashed as it streams in.
			h := sha256.New()
			_, err = io.CopyN(h, resp.Body, 1)
			firstBytes.Done()
			_, err2 := io.Copy(h, resp.Body)
			switch {
			case err != nil || err2 != nil || resp.StatusCode != 200:
				errs <- errors.Join(err, err2, errors.New(resp.Status))
			case hex.EncodeToString(h.Sum(nil)) != sha(data):
				errs <- errors.New("wrong body")
			}
		})
	}
	allIn := make(chan struct{})
	go func() { firstBytes.Wait(); close(allIn) }()
	select {
	case <-allIn:
	case <-time.After(30 * time.Second):
		t.Fatal("clients got no bytes while the origin held the body: the replicas that did not fetch do not stream the owner's fill")
	}
	gate.Open()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("client: %v", err)
	}
	settle(t, rs)
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}
	keys := bucketKeys(t, srv, bucket)
	if len(keys) != 1 || !strings.HasSuffix(keys[0], "/models/w.bin") {
		t.Errorf("bucket holds %q; want the object only (no lease)", keys)
	}
	for i, r := range rs {
		if f := follow(t, get(t, r.url(o, "/models/w.bin"))); sha(f.body) != sha(data) {
			t.Errorf("replica %d: stored object differs", i)
		}
	}
}

// The owner's origin breaks mid-body (no --continuation-get-retry): the
// owner's client sees an aborted transfer, never a short body presented as
// whole. The other replicas' streams break with it; the owner's lease is
// then dead (it fills the key no more), so one of them takes the fill over
// and asks the origin for the rest, from the byte its clients have, and
// the other streams from it: their clients get the whole file, the origin
// is asked twice in all, and the object is stored.
func TestReplicasOwnerFillFails(t *testing.T) {
	o := newOrigin(t)
	data := payload(161, 4<<20)
	o.Put("/a.bin", data)
	gate := newGate(t)
	var broken atomic.Bool
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		if broken.Swap(true) {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		w.Header().Set("Last-Modified", f.ModTime.UTC().Format(http.TimeFormat))
		w.Write(f.Data[:1<<20])
		w.(http.Flusher).Flush()
		gate.Wait()
		panic(http.ErrAbortHandler) // the body breaks after 1 MiB
	})
	rs, _, _ := newReplicas(t, o, 3, 0)
	var wg sync.WaitGroup
	var started sync.WaitGroup
	started.Add(3)
	var aborted, whole atomic.Int64
	for i := range 3 {
		wg.Go(func() {
			resp, err := noRedirectClient.Get(rs[i].url(o, "/a.bin"))
			if err != nil {
				started.Done()
				t.Errorf("replica %d: %v", i, err)
				return
			}
			defer resp.Body.Close()
			first := make([]byte, 1)
			io.ReadFull(resp.Body, first)
			started.Done()
			body, err := io.ReadAll(resp.Body)
			switch {
			case err != nil:
				aborted.Add(1)
			case sha(append(first, body...)) == sha(data):
				whole.Add(1)
			default:
				t.Errorf("replica %d: a clean end after %d bytes of %d; want the file or an aborted transfer", i, len(body)+1, len(data))
			}
		})
	}
	started.Wait()
	gate.Open()
	wg.Wait()
	settle(t, rs)
	if aborted.Load() != 1 || whole.Load() != 2 {
		t.Errorf("%d transfers aborted, %d whole; want the owner's aborted and the others' whole", aborted.Load(), whole.Load())
	}
	if n := o.Gets.Load(); n != 2 {
		t.Errorf("origin saw %d GETs; want 2 (the failed fill and the takeover)", n)
	}
	r := get(t, rs[1].url(o, "/a.bin"))
	if r.StatusCode != http.StatusFound {
		t.Errorf("after the failure: status %d; want 302 to the stored object", r.StatusCode)
	}
	if f := follow(t, r); sha(f.body) != sha(data) {
		t.Errorf("stored object: %d bytes; want the file", len(f.body))
	}
	if n := o.Gets.Load(); n != 2 {
		t.Errorf("origin saw %d GETs after a later request; want 2 (it is stored)", n)
	}
}

// The origin's 404 reaches the clients of every replica with one origin
// request; the peer path is not served on the public listener, and the
// peer listener wants the secret.
func TestReplicasNotFoundAndPeerPath(t *testing.T) {
	o := newOrigin(t)
	gate := newGate(t)
	asked := make(chan struct{}, 1)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		asked <- struct{}{}
		gate.Wait()
		return false
	})
	rs, _, _ := newReplicas(t, o, 2, 0)
	joined := make(chan string, 1)
	httpmirror.SetPeerJoined(func(key string) { joined <- key })
	t.Cleanup(func() { httpmirror.SetPeerJoined(nil) })
	first := make(chan response, 1)
	go func() { first <- get(t, rs[0].url(o, "/missing")) }()
	<-asked
	// The second replica finds the lease and joins the first one's fill
	// through its peer listener; then the origin answers.
	second := make(chan response, 1)
	go func() { second <- get(t, rs[1].url(o, "/missing")) }()
	select {
	case <-joined:
	case <-time.After(30 * time.Second):
		t.Fatal("the second replica did not join the first one's fill")
	}
	gate.Open()
	for i, ch := range []chan response{first, second} {
		if got := <-ch; got.StatusCode != 404 {
			t.Errorf("replica %d: status %d; want 404", i, got.StatusCode)
		}
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1", n)
	}

	key := o.HostPort() + "/missing"
	if got := get(t, rs[0].URL+httpmirror.PeerPrefix+key); got.StatusCode != 404 {
		t.Errorf("public listener answered the peer path with %d; want 404", got.StatusCode)
	}
	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer nope", 403}, {"Bearer " + peerSecret, httpmirror.StatusNotFilling}} {
		got := do(t, http.MethodGet, rs[0].peer.URL+httpmirror.PeerPrefix+o.HostPort()+"/other", http.Header{"Authorization": {tc.auth}})
		if got.StatusCode != tc.want {
			t.Errorf("peer request with %q: status %d; want %d", tc.auth, got.StatusCode, tc.want)
		}
	}
}

// An owner whose origin is slow but steady renews its lease: asked after
// several lease durations, another replica still streams from it instead
// of taking the fill over.
func TestReplicasRenewWhileProgressing(t *testing.T) {
	o := newOrigin(t)
	data := payload(162, 2<<20)
	o.Put("/slow.bin", data)
	// Renewals go to versitygw every third of a lease: two seconds leave
	// them room on a loaded machine.
	const lease = 2 * time.Second
	slowDone, gate := make(chan struct{}), newGate(t)
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		w.Header().Set("Content-Length", strconv.Itoa(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		// Steady progress, a chunk every 50ms: for 2 lease durations,
		// then on until the second replica has joined (the gate), so
		// that its request, however long it takes to reach the lease,
		// finds the lease renewed, not lapsed for want of progress.
		const chunk = 4 << 10
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		off := 0
		for i := 0; !gate.IsOpen() && off+chunk < len(f.Data); i++ {
			if i == int(2*lease/(50*time.Millisecond)) {
				close(slowDone)
			}
			w.Write(f.Data[off : off+chunk])
			w.(http.Flusher).Flush()
			off += chunk
			select {
			case <-tick.C:
			case <-gate.Chan():
			}
		}
		w.Write(f.Data[off:])
		return true
	})
	rs, _, _ := newReplicas(t, o, 2, lease)
	joined := make(chan string, 1)
	httpmirror.SetPeerJoined(func(key string) { joined <- key })
	t.Cleanup(func() { httpmirror.SetPeerJoined(nil) })
	first := make(chan response, 1)
	go func() { first <- get(t, rs[0].url(o, "/slow.bin")) }()
	<-slowDone
	second := make(chan response, 1)
	go func() { second <- get(t, rs[1].url(o, "/slow.bin")) }()
	// The second replica streams the owner's fill: let the origin finish
	// once it has joined.
	select {
	case <-joined:
	case <-time.After(30 * time.Second):
		t.Fatal("the second replica did not stream from the owner")
	}
	gate.Open()
	for i, ch := range []chan response{first, second} {
		if r := <-ch; r.StatusCode != 200 || sha(r.body) != sha(data) {
			t.Errorf("replica %d: status %d, %d bytes; want the file", i, r.StatusCode, len(r.body))
		}
	}
	if n := o.Gets.Load(); n != 1 {
		t.Errorf("origin saw %d GETs; want 1 (the owner renewed its lease)", n)
	}
}
