package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

const clusterSecret = "cluster-test-secret"

// replicaProc is an httpmirror process of a cluster.
type replicaProc struct {
	*process
	peer string // http://host:port of its peer listener
}

// freeLoopback returns a loopback address no one listens on now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startReplicas runs n httpmirror processes on bucket of srv, sharing
// fills through peer listeners on loopback, with extra flags.
func startReplicas(t *testing.T, n int, srv *s3test.Server, bucket string, o *testutil.Origin, extra ...string) []*replicaProc {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "peer-secret")
	if err := os.WriteFile(secretFile, []byte(clusterSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := o.WriteCA(t, t.TempDir())
	var rs []*replicaProc
	for range n {
		peer := freeLoopback(t)
		args := append([]string{
			"--storage-url", s3URL(srv, bucket),
			"--host-from-first-path", "--allow-private-upstreams", "--upstream-ca-file", ca,
			"--peer-address", peer, "--advertise-url", "http://" + peer, "--peer-secret-file", secretFile,
			"--log-level", "debug",
		}, extra...)
		p := start(t, args...)
		p.waitLog(t, "peer listening")
		rs = append(rs, &replicaProc{process: p, peer: "http://" + peer})
	}
	return rs
}

// leaseObjects lists the lease objects in bucket.
func leaseObjects(t *testing.T, srv *s3test.Server, bucket string) []string {
	t.Helper()
	prefix := "cache/~~lease/"
	out, err := srv.Client().ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	return keys
}

// waitNoLease polls (bounded) until bucket holds no lease object: owners
// release theirs right after their fills end.
func waitNoLease(t *testing.T, srv *s3test.Server, bucket string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leases := leaseObjects(t, srv, bucket)
		if len(leases) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("leases left after the fills ended: %q", leases)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stream is a client's GET: it reports its first byte on first, then
// reads the rest, hashing as it goes.
type stream struct {
	status int
	sum    string
	n      int64
	err    error // transport or body error: an aborted transfer
}

func getStream(u string, first func()) stream {
	var once sync.Once
	defer once.Do(first)
	resp, err := http.Get(u)
	if err != nil {
		return stream{err: err}
	}
	defer resp.Body.Close()
	h := sha256.New()
	s := stream{status: resp.StatusCode}
	buf := make([]byte, 256<<10)
	for {
		m, err := resp.Body.Read(buf)
		if m > 0 {
			once.Do(first)
			h.Write(buf[:m])
			s.n += int64(m)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s.err = err
			break
		}
	}
	s.sum = hex.EncodeToString(h.Sum(nil))
	return s
}

// holdAfter makes o's first GET send `at` bytes, then trickle a little
// more every 50ms until gate opens, before the rest; reached is closed once
// the `at` bytes are out. The trickle is progress, for which the owner
// renews its lease: a hold that sent nothing would let a short lease lapse
// while the other replicas' clients, slow on a loaded machine, are still on
// their way to it. Later requests are served normally.
func holdAfter(t *testing.T, o *testutil.Origin, at int, gate *testutil.Gate) (reached chan struct{}) {
	reached = make(chan struct{})
	var once sync.Once
	o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
		first := false
		once.Do(func() { first = true })
		if !first || f == nil || r.Method != http.MethodGet {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(f.Data)))
		w.Header().Set("ETag", f.ETag)
		w.Write(f.Data[:at])
		w.(http.Flusher).Flush()
		close(reached)
		const chunk = 1 << 10
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		off := at
		for {
			select {
			case <-gate.Chan():
				w.Write(f.Data[off:])
				return true
			case <-r.Context().Done():
				return true
			case <-tick.C:
			}
			if off+chunk >= len(f.Data) {
				continue // nothing left to trickle: wait for the gate
			}
			if _, err := w.Write(f.Data[off : off+chunk]); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			off += chunk
		}
	})
	return reached
}

// waitGroup waits (at most two minutes) for wg, failing with msg.
func waitGroup(t *testing.T, wg *sync.WaitGroup, msg string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal(msg)
	}
}

// Acceptance 1: 30 clients spread over 3 replicas ask for one cold 64 MiB
// file. The origin holds the body until every client has its first bytes,
// so clients of the replicas that do not fetch it get bytes before the
// fill ends; the origin sends the file once, every client gets it whole,
// and afterwards the bucket holds the object and no lease.
func TestClusterFetchesOnce(t *testing.T) {
	srv := s3test.Shared(t)
	bucket := srv.Bucket(t)
	o := testutil.NewOrigin(t)
	data := testutil.Payload(90, 64<<20)
	o.Put("/models/big.bin", data)
	gate := testutil.NewGate(t)
	holdAfter(t, o, 8<<20, gate)
	rs := startReplicas(t, 3, srv, bucket, o)

	const clients = 30
	var firstBytes sync.WaitGroup
	firstBytes.Add(clients)
	results := make([]stream, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { results[i] = getStream(rs[i%3].url(o, "/models/big.bin"), firstBytes.Done) })
	}
	waitGroup(t, &firstBytes, "not every client got bytes while the origin held the body")
	if leases := leaseObjects(t, srv, bucket); len(leases) != 1 {
		t.Errorf("lease objects during the fill: %q; want one", leases)
	}
	gate.Open()
	wg.Wait()
	want := testutil.SHA256(data)
	for i, r := range results {
		if r.err != nil || r.status != 200 || r.sum != want {
			t.Errorf("client %d (replica %d): status %d, %d bytes, err %v; want the whole file", i, i%3, r.status, r.n, r.err)
		}
	}
	// The owner fetches the file in parallel segments: one whole-file GET
	// and ranged GETs, each byte once, and no other replica asks at all.
	o.CheckFetchedOnce(t, "/models/big.bin", int64(len(data)))
	waitNoLease(t, srv, bucket)
	out, err := srv.Client().ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Contents) != 1 || !strings.HasSuffix(aws.ToString(out.Contents[0].Key), "/models/big.bin") {
		t.Errorf("bucket holds %d objects; want only the file", len(out.Contents))
	}
}

// Acceptance 3: the peer listener refuses requests without the secret or
// with another one, and the public port does not serve the peer path.
func TestClusterPeerAuthentication(t *testing.T) {
	srv := s3test.Shared(t)
	o := testutil.NewOrigin(t)
	o.Put("/f.bin", []byte("content"))
	rs := startReplicas(t, 1, srv, srv.Bucket(t), o)
	key := o.HostPort() + "/f.bin"
	if code, _ := httpGet(t, rs[0].url(o, "/f.bin")); code != 200 {
		t.Fatalf("public GET: %d; want 200", code)
	}
	for _, tc := range []struct {
		name, url, auth string
		want            int
	}{
		{"no secret", rs[0].peer + "/peer/" + key, "", http.StatusUnauthorized},
		{"wrong secret", rs[0].peer + "/peer/" + key, "Bearer not-" + clusterSecret, http.StatusForbidden},
		{"secret", rs[0].peer + "/peer/" + key, "Bearer " + clusterSecret, http.StatusOK},
		{"public port", "http://" + rs[0].addr + "/peer/" + key, "Bearer " + clusterSecret, http.StatusNotFound},
		{"other path on the peer port", rs[0].peer + "/" + key, "Bearer " + clusterSecret, http.StatusNotFound},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d; want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want != 200 && strings.Contains(string(body), "content") {
			t.Errorf("%s: the refusal carries the file", tc.name)
		}
	}
}

// Cluster flags that cannot work stop the start with one line and
// status 2.
func TestClusterBadConfigurationExits2(t *testing.T) {
	srv := s3test.Shared(t)
	s3 := s3URL(srv, srv.Bucket(t))
	peer := []string{"--peer-address", "127.0.0.1:0", "--advertise-url", "http://127.0.0.1:1", "--peer-secret", "x"}
	for name, args := range map[string][]string{
		"local disk":      append([]string{"--storage-url", "file://" + t.TempDir()}, peer...),
		"no advertise":    {"--storage-url", s3, "--peer-address", "127.0.0.1:0", "--peer-secret", "x"},
		"no secret":       {"--storage-url", s3, "--peer-address", "127.0.0.1:0", "--advertise-url", "http://127.0.0.1:1"},
		"bad advertise":   {"--storage-url", s3, "--peer-address", "127.0.0.1:0", "--advertise-url", "127.0.0.1:1", "--peer-secret", "x"},
		"missing file":    {"--storage-url", s3, "--peer-address", "127.0.0.1:0", "--advertise-url", "http://127.0.0.1:1", "--peer-secret-file", "/nonexistent"},
		"with cidn":       append([]string{"--storage-url", s3, "--master", "http://127.0.0.1:1"}, peer...),
		"secret alone":    {"--storage-url", s3, "--peer-secret", "x"},
		"tiny lease":      append([]string{"--storage-url", s3, "--lease-duration", "1ms"}, peer...),
		"unusable listen": append([]string{"--storage-url", s3, "--peer-address", "256.0.0.1:1"}, peer[2:]...),
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(binary, append([]string{"--address", "127.0.0.1:0"}, args...)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v; want status 2 (stderr %q)", err, stderr.String())
			}
			if msg := strings.TrimSpace(stderr.String()); msg == "" || strings.Contains(msg, "listening") {
				t.Errorf("stderr %q; want the error and no listener", msg)
			}
		})
	}
}
