package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/httpmirror/httpmirror/internal/s3test"
	"github.com/httpmirror/httpmirror/internal/testutil"
)

// countedWriter counts the body bytes an origin handler sends.
type countedWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countedWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (c countedWriter) Flush() { c.ResponseWriter.(http.Flusher).Flush() }

// heldWriter sends the bytes of the object before stop and holds the
// handler there until gate opens or the request ends (its client died).
// The held bytes are never sent: a dead owner fetched exactly what went
// before.
type heldWriter struct {
	countedWriter
	r         *http.Request
	off, stop int64 // off: the object offset of the next byte written
	gate      *testutil.Gate
}

func (h *heldWriter) Write(p []byte) (int, error) {
	if room := h.stop - h.off; int64(len(p)) > room {
		n := 0
		if room > 0 {
			n, _ = h.countedWriter.Write(p[:room])
			h.off += int64(n)
		}
		h.Flush()
		select {
		case <-h.gate.Chan():
		case <-h.r.Context().Done():
		}
		return n, http.ErrAbortHandler // the body breaks, as under a killed reader
	}
	n, err := h.countedWriter.Write(p)
	h.off += int64(n)
	return n, err
}

// takeoverClient is a client's GET of the file from a replica: bytes
// counted as they arrive, the body hashed, and the time from the kill to
// the first byte past stop (which no replica had before the kill: the
// origin held the dead owner's downloads there).
type takeoverClient struct {
	n       atomic.Int64
	reached sync.Once // at the kill fraction
	after   atomic.Int64
	sum     string
	status  int
	err     error
}

func (c *takeoverClient) get(u string, at, stop int64, atReached func(), killed *atomic.Int64) {
	defer c.reached.Do(atReached) // a transfer that ends early releases the wait
	resp, err := http.Get(u)
	if err != nil {
		c.err = err
		return
	}
	defer resp.Body.Close()
	c.status = resp.StatusCode
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for {
		m, err := resp.Body.Read(buf)
		if m > 0 {
			h.Write(buf[:m])
			n := c.n.Add(int64(m))
			if n >= at {
				c.reached.Do(atReached)
			}
			if k := killed.Load(); n > stop && k != 0 && c.after.Load() == 0 {
				c.after.Store(time.Now().UnixNano() - k)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			c.err = err
			break
		}
	}
	c.sum = hex.EncodeToString(h.Sum(nil))
}

// openUploads lists the incomplete multipart uploads in bucket.
func openUploads(t *testing.T, srv *s3test.Server, bucket string) int {
	t.Helper()
	out, err := srv.Client().ListMultipartUploads(context.Background(), &awss3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	return len(out.Uploads)
}

// Three replicas on one bucket, ten clients on each, one cold file; the
// owner is killed with SIGKILL when every client of the other replicas
// has 20%, 50% or 90% of it (the origin holds the owner's downloads a
// little past that point, so the kill lands there whatever the machine's
// speed). The other replicas' clients never see the crash: one replica
// takes the fill over at once (the dead owner refuses connections, long
// before its 10s lease expires) and the origin sends the rest, from the
// byte it has, once; the other streams from it. Every such client gets
// the whole file; the origin sends the file plus at most what the dead
// owner fetched and never delivered; afterwards the bucket holds the
// object, no lease and no incomplete upload (the dead owner's, begun past
// the first 16 MiB part, is aborted at the takeover). With
// --continuation-get-retry the same holds.
func TestClusterTakeoverAfterOwnerKill(t *testing.T) {
	const size = 40 << 20
	data := testutil.Payload(93, size)
	want := testutil.SHA256(data)
	for _, retry := range []bool{false, true} {
		for _, pct := range []int64{20, 50, 90} {
			name := fmt.Sprintf("%d%%", pct)
			if retry {
				name += "/continuation-get-retry"
			}
			t.Run(name, func(t *testing.T) {
				srv := s3test.Shared(t)
				bucket := srv.Bucket(t)
				o := testutil.NewOrigin(t)
				o.Put("/big/file.bin", data)
				at := size * pct / 100
				stop := at + 1<<20 // the owner's downloads hold here
				kill := testutil.NewGate(t)
				var before, after atomic.Int64 // origin body bytes, by whether the request came before the kill
				o.SetHook(func(w http.ResponseWriter, r *http.Request, f *testutil.File) bool {
					if f == nil {
						return false
					}
					if kill.IsOpen() {
						testutil.ServeFile(countedWriter{w, &after}, r, f)
						return true
					}
					var off int64
					fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &off)
					testutil.ServeFile(&heldWriter{countedWriter: countedWriter{w, &before}, r: r, off: off, stop: stop, gate: kill}, r, f)
					return true
				})
				extra := []string{"--lease-duration", "10s", "--fill-segment-size", "1MiB"}
				if retry {
					extra = append(extra, "--continuation-get-retry", "3", "--continuation-get-interval", "100ms")
				}
				rs := startReplicas(t, 3, srv, bucket, o, extra...)
				u := func(i int) string { return rs[i].url(o, "/big/file.bin") }

				var killedAt atomic.Int64
				clients := make([]*takeoverClient, 30)
				for i := range clients {
					clients[i] = &takeoverClient{}
				}
				var reached, wg sync.WaitGroup
				reached.Add(20)
				// The owner: replica 0's first client claims the lease
				// before it asks the origin.
				wg.Go(func() { clients[0].get(u(0), at, stop, func() {}, &killedAt) })
				for deadline := time.Now().Add(30 * time.Second); o.Gets.Load() == 0; {
					select {
					case <-rs[0].done:
						t.Fatal("replica 0 exited")
					case <-time.After(time.Millisecond):
					}
					if time.Now().After(deadline) {
						t.Fatal("replica 0 did not ask the origin within 30s")
					}
				}
				for i := 1; i < len(clients); i++ {
					done := func() {}
					if i%3 != 0 {
						done = reached.Done
					}
					wg.Go(func() { clients[i].get(u(i%3), at, stop, done, &killedAt) })
				}
				waitGroup(t, &reached, fmt.Sprintf("the other replicas' clients did not all reach %d%% of the file", pct))
				delivered := int64(size)
				for i, c := range clients {
					if i%3 != 0 {
						delivered = min(delivered, c.n.Load())
					}
				}
				killedAt.Store(time.Now().UnixNano())
				rs[0].cmd.Process.Signal(syscall.SIGKILL)
				<-rs[0].done
				kill.Open()
				waitGroup(t, &wg, "clients still reading two minutes after the kill")

				var firsts []time.Duration
				for i, c := range clients {
					whole := c.err == nil && c.status == 200 && c.sum == want
					if i%3 == 0 {
						if !whole && c.err == nil {
							t.Errorf("owner's client %d: a clean end after %d bytes (status %d); want an aborted transfer", i, c.n.Load(), c.status)
						}
						continue
					}
					if !whole {
						t.Errorf("client %d of replica %d: status %d, %d bytes, err %v; want the whole file", i, i%3, c.status, c.n.Load(), c.err)
					}
					if d := c.after.Load(); d > 0 {
						firsts = append(firsts, time.Duration(d))
					}
				}
				// The bound: the file, plus what the dead owner fetched
				// but never delivered to the replica that took over.
				total := before.Load() + after.Load()
				if bound := int64(size) + before.Load() - delivered; total > bound {
					t.Errorf("origin sent %d bytes (%d before the kill, %d after); want at most %d (the file plus the %d the owner fetched beyond the %d every surviving client had)",
						total, before.Load(), after.Load(), bound, before.Load()-delivered, delivered)
				}
				logs := rs[1].log() + rs[2].log()
				if n := strings.Count(logs, "took over the lease"); n != 1 {
					t.Errorf("%d takeovers logged; want 1", n)
				}
				if !strings.Contains(logs, "why=refused") {
					t.Errorf("the takeover did not follow the owner's refused connection (waited for the lease?)")
				}
				slices.Sort(firsts)
				if len(firsts) > 0 {
					t.Logf("killed at %d of %d bytes delivered to every surviving client; origin sent %.3f× the file (%d before the kill, %d after); kill to first byte after the takeover: fastest %v, median %v, slowest %v",
						delivered, size, float64(total)/size, before.Load(), after.Load(), firsts[0].Round(time.Millisecond), firsts[len(firsts)/2].Round(time.Millisecond), firsts[len(firsts)-1].Round(time.Millisecond))
				}

				waitNoLease(t, srv, bucket)
				deadline := time.Now().Add(30 * time.Second)
				for n := openUploads(t, srv, bucket); n != 0; n = openUploads(t, srv, bucket) {
					if time.Now().After(deadline) {
						t.Fatalf("%d incomplete uploads left", n)
					}
					time.Sleep(20 * time.Millisecond)
				}
				key := "cache/" + o.HostPort() + "/big/file.bin"
				obj, err := srv.Client().GetObject(context.Background(), &awss3.GetObjectInput{Bucket: &bucket, Key: &key})
				if err != nil {
					t.Fatalf("the object is not stored: %v", err)
				}
				b, err := io.ReadAll(obj.Body)
				obj.Body.Close()
				if err != nil || testutil.SHA256(b) != want {
					t.Errorf("stored object: %d bytes, err %v; want the file", len(b), err)
				}
			})
		}
	}
}
