package cidn_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/httpmirror/httpmirror/cidn"
)

// runner stands in for CIDN's controllers and runners: it watches Blobs,
// claims each new one (status.handlerName, phase Running), downloads its
// source and puts it into the destination bucket in one piece, reporting
// progress, then marks it Succeeded, or Failed with a condition worded
// like CIDN's runners word theirs. Its destinations are buckets of the
// test's versitygw, by destination name.
type runner struct {
	blobs  dynamic.NamespaceableResourceInterface
	s3     *awss3.Client
	client *http.Client // trusts the test origin
	stop   chan struct{}
	done   chan struct{}
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc

	mu           sync.Mutex
	destinations map[string]string    // destination name → bucket
	holds        map[string]chan bool // Blob name → gate; true continues, false abandons
	held         chan string          // receives the names of Blobs reaching their hold
	seen         map[types.UID]bool
	processed    []runnerBlob
}

// runnerBlob is a Blob the runner took.
type runnerBlob struct {
	Name   string
	UID    types.UID
	Source string
}

const runnerName = "cidntest-runner"

func startRunner(t *testing.T, e *env, s3 *awss3.Client, client *http.Client) *runner {
	t.Helper()
	r := &runner{
		blobs:        e.dyn.Resource(cidn.BlobResource),
		s3:           s3,
		client:       client,
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
		destinations: map[string]string{},
		holds:        map[string]chan bool{},
		held:         make(chan string, 16),
		seen:         map[types.UID]bool{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	factory := dynamicinformer.NewDynamicSharedInformerFactory(e.dyn, 0)
	inf := factory.ForResource(cidn.BlobResource).Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.consider(obj) },
		UpdateFunc: func(_, obj any) { r.consider(obj) },
	})
	factory.Start(r.stop)
	t.Cleanup(func() {
		r.cancel()
		// The stop channel before Shutdown, which waits for the informer.
		close(r.stop)
		factory.Shutdown()
		r.mu.Lock()
		for _, h := range r.holds {
			select {
			case h <- false:
			default:
			}
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

// addDestination makes the runner write destination name into bucket.
func (r *runner) addDestination(name, bucket string) {
	r.mu.Lock()
	r.destinations[name] = bucket
	r.mu.Unlock()
}

// hold makes the runner stop on the Blob name, once it has claimed it,
// until release. The Blob's name is sent on r.held when it gets there.
func (r *runner) hold(name string) {
	r.mu.Lock()
	r.holds[name] = make(chan bool, 1)
	r.mu.Unlock()
}

// release lets a held Blob go on.
func (r *runner) release(name string) {
	r.mu.Lock()
	h := r.holds[name]
	r.mu.Unlock()
	h <- true
}

// waitHeld waits until the runner holds the Blob name.
func (r *runner) waitHeld(t *testing.T, name string) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case got := <-r.held:
			if got == name {
				return
			}
		case <-timeout:
			t.Fatalf("the runner did not pick up Blob %s", name)
		}
	}
}

// taken returns the Blobs the runner took whose name is name.
func (r *runner) taken(name string) []runnerBlob {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []runnerBlob
	for _, b := range r.processed {
		if b.Name == name {
			out = append(out, b)
		}
	}
	return out
}

// consider takes a Blob nobody has claimed.
func (r *runner) consider(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	handler, _, _ := unstructured.NestedString(u.Object, "status", "handlerName")
	if phase != "" || handler != "" {
		return
	}
	r.mu.Lock()
	if r.seen[u.GetUID()] || r.ctx.Err() != nil {
		r.mu.Unlock()
		return
	}
	r.seen[u.GetUID()] = true
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		r.process(u.DeepCopy())
	}()
}

func (r *runner) process(u *unstructured.Unstructured) {
	name, uid := u.GetName(), u.GetUID()
	src, dest, path, skip := blobSpec(u)
	// Claim it: only the update that carries the Blob's resource version
	// wins, as with CIDN's runners.
	if err := unstructured.SetNestedMap(u.Object, map[string]any{
		"handlerName": runnerName,
		"phase":       cidn.PhaseRunning,
		"progress":    int64(0),
	}, "status"); err != nil {
		panic(err)
	}
	if _, err := r.blobs.UpdateStatus(r.ctx, u, metav1.UpdateOptions{}); err != nil {
		return
	}
	r.mu.Lock()
	r.processed = append(r.processed, runnerBlob{Name: name, UID: uid, Source: src})
	bucket := r.destinations[dest]
	hold := r.holds[name]
	r.mu.Unlock()
	if hold != nil {
		r.held <- name
		select {
		case ok := <-hold:
			if !ok {
				return
			}
		case <-r.ctx.Done():
			return
		}
	}
	if bucket == "" {
		r.fail(name, uid, "Process", fmt.Sprintf("s3 client for destination %q not found", dest))
		return
	}
	if skip {
		if _, err := r.s3.HeadObject(r.ctx, &awss3.HeadObjectInput{Bucket: &bucket, Key: &path}); err == nil {
			r.setStatus(name, uid, func(st map[string]any) { st["phase"] = cidn.PhaseSucceeded })
			return
		}
	}
	resp, err := r.client.Get(src)
	if err != nil {
		r.fail(name, uid, "Process", "network error occurred: "+err.Error())
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// CIDN's head chunk expects 200 and words a mismatch this way.
		r.fail(name, uid, "Process", fmt.Sprintf("unexpected status code: got %d, want 200", resp.StatusCode))
		return
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		r.fail(name, uid, "Process", "connection closed unexpectedly: "+err.Error())
		return
	}
	total := int64(len(body))
	// CIDN's progress is the mean of the source's and the destinations':
	// downloaded, not uploaded yet, is half.
	r.setStatus(name, uid, func(st map[string]any) {
		st["total"] = total
		st["progress"] = total / 2
	})
	_, err = r.s3.PutObject(r.ctx, &awss3.PutObjectInput{
		Bucket: &bucket, Key: &path, Body: bytes.NewReader(body), ContentLength: aws.Int64(total),
	})
	if err != nil {
		r.fail(name, uid, "Process", "destination returned error: "+err.Error())
		return
	}
	r.setStatus(name, uid, func(st map[string]any) {
		st["phase"] = cidn.PhaseSucceeded
		st["progress"] = total
	})
}

func (r *runner) fail(name string, uid types.UID, typ, msg string) {
	r.setStatus(name, uid, func(st map[string]any) {
		st["phase"] = cidn.PhaseFailed
		st["conditions"] = []any{map[string]any{
			"type":               typ,
			"status":             "True",
			"message":            msg,
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}
	})
}

// setStatus changes the status of the Blob name, if it is still the one
// with uid, through the status subresource, retrying on conflicts.
func (r *runner) setStatus(name string, uid types.UID, change func(map[string]any)) {
	for range 10 {
		cur, err := r.blobs.Get(r.ctx, name, metav1.GetOptions{})
		if err != nil || cur.GetUID() != uid {
			return // deleted (or replaced): nothing to report to
		}
		st, _, _ := unstructured.NestedMap(cur.Object, "status")
		if st == nil {
			st = map[string]any{}
		}
		change(st)
		if err := unstructured.SetNestedMap(cur.Object, st, "status"); err != nil {
			panic(err)
		}
		_, err = r.blobs.UpdateStatus(r.ctx, cur, metav1.UpdateOptions{})
		if err == nil || !apierrors.IsConflict(err) {
			return
		}
	}
}

// blobSpec returns the source URL and the first destination of a Blob.
func blobSpec(u *unstructured.Unstructured) (src, dest, path string, skip bool) {
	sources, _, _ := unstructured.NestedSlice(u.Object, "spec", "source")
	if len(sources) > 0 {
		src, _, _ = unstructured.NestedString(sources[0].(map[string]any), "url")
	}
	dests, _, _ := unstructured.NestedSlice(u.Object, "spec", "destination")
	if len(dests) > 0 {
		d := dests[0].(map[string]any)
		dest, _, _ = unstructured.NestedString(d, "name")
		path, _, _ = unstructured.NestedString(d, "path")
		skip, _, _ = unstructured.NestedBool(d, "skipIfExists")
	}
	return src, dest, path, skip
}
