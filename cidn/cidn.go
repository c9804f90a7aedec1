// Package cidn hands httpmirror's cache misses to CIDN (Content
// Intelligent Distribution Network, OpenCIDN/cidn): a fleet of runners
// that copies files from HTTP origins into object storage in parallel
// chunks, driven through a Kubernetes-style API.
//
// A Client implements httpmirror.CIDN. For a missed file it creates a
// cluster-scoped Blob (task.opencidn.daocloud.io/v1alpha1) named by the MD5
// of the cache key, whose destination is the object key where the mirror's
// S3 backend looks for the file; every replica of the mirror computes the
// same name, so they all converge on one Blob, and an existing Blob
// (AlreadyExists) is simply followed. The Blob's phase is followed through
// one shared informer per Client: a watch of all Blobs, no polling.
// Succeeded means the object is in the bucket; Failed ends the transfer
// with the failure's message; a Blob deleted before it ended ends it with
// httpmirror.ErrCIDNDeleted.
//
// Within one Client, the requests for one file share one transfer (one
// create request, one set of waiters). A Blob that had failed before a
// request arrives is deleted and created again, so that a failure answers
// the requests that waited for it and the next request retries, instead of
// failing every request until CIDN releases the Blob (an hour later).
//
// The Client speaks to the API with k8s.io/client-go's dynamic client; it
// needs permission to create, get, delete, list and watch blobs.
package cidn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/httpmirror/httpmirror"
)

// ErrClosed ends the transfers still followed when the Client is closed,
// and is returned by Ensure afterwards. It matches
// httpmirror.ErrCIDNUnavailable.
var ErrClosed = fmt.Errorf("%w: client closed", httpmirror.ErrCIDNUnavailable)

// maxAttempts bounds the create, get and delete rounds of one Ensure, which
// race with other replicas and with CIDN deleting Blobs.
const maxAttempts = 3

// Config configures a Client. Destination and ObjectKey are required.
type Config struct {
	// Destination is the name under which CIDN's configuration knows the
	// bucket that the mirror's S3 backend uses. httpmirror passes the
	// storage URL's scheme, "s3", unless --cidn-destination names another.
	Destination string

	// ObjectKey maps a cache key to the object key in that bucket
	// (s3.Backend.ObjectKey), so that CIDN writes where the mirror looks.
	// CIDN's destination must therefore address the bucket itself, with
	// no root directory of its own.
	ObjectKey func(key string) (string, error)

	// MaximumRunning is spec.maximumRunning: how many chunks of one Blob
	// CIDN transfers at once. Zero leaves it to CIDN (2).
	MaximumRunning int64

	// MinimumChunkSize is spec.minimumChunkSize: the smallest chunk CIDN
	// splits a file into, in bytes. Zero leaves it to CIDN.
	MinimumChunkSize int64

	// TTL is how long CIDN keeps a finished Blob before deleting it (the
	// release.task.opencidn.daocloud.io/ttl annotation). Zero means an
	// hour.
	TTL time.Duration

	// RequestTimeout bounds each request to the API server (the watch
	// excepted). Zero means 10 seconds.
	RequestTimeout time.Duration

	// Logger receives the client's events. Nil discards them.
	Logger *slog.Logger

	// Metrics, when set, receives the client's metrics (see NewMetrics).
	Metrics *Metrics
}

// Client hands misses to CIDN; it implements httpmirror.CIDN. Create it
// with New or NewForConfig, Start it, and Close it when done.
type Client struct {
	cfg      Config
	log      *slog.Logger
	blobs    dynamic.NamespaceableResourceInterface
	informer cache.SharedIndexInformer

	ctx     context.Context // the informer and API requests; canceled by Close
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the informer has stopped

	startOnce sync.Once
	closeOnce sync.Once

	mu      sync.Mutex
	flights map[string]*flight // by Blob name: transfers being followed
	waiting int                // requests following a transfer
	closed  bool
}

var _ httpmirror.CIDN = (*Client)(nil)

// flight is one transfer of a Client: the requests following one Blob.
type flight struct {
	name  string
	ready chan struct{} // closed once the Blob exists (or could not be made)
	done  chan struct{} // closed when the transfer ended

	// Set before ready is closed.
	startErr error

	// Guarded by Client.mu.
	isReady  bool
	uid      types.UID          // the Blob followed, once ready
	gone     map[types.UID]bool // Blobs seen deleted before ready
	refs     int                // requests following
	finished bool
	err      error
}

// New returns a Client that talks to the API through client. It sends no
// request; Start starts following Blobs and Check verifies the API.
func New(client dynamic.Interface, cfg Config) (*Client, error) {
	if cfg.Destination == "" {
		return nil, errors.New("cidn: no destination")
	}
	if cfg.ObjectKey == nil {
		return nil, errors.New("cidn: no object key mapping")
	}
	if cfg.MaximumRunning < 0 || cfg.MinimumChunkSize < 0 || cfg.TTL < 0 || cfg.RequestTimeout < 0 {
		return nil, errors.New("cidn: negative maximum running, chunk size, TTL or timeout")
	}
	if cfg.TTL == 0 {
		cfg.TTL = defaultTTL
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		blobs:   client.Resource(BlobResource),
		stopped: make(chan struct{}),
		flights: map[string]*flight{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	// A shared informer of the dynamic client, as client-go's dynamic
	// informer factory builds it, without the factory: that package pulls
	// in every built-in API type. No resync: waiting reacts to changes,
	// and the relist after a broken watch delivers every change it missed.
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return c.blobs.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.blobs.Watch(ctx, o)
		},
	}
	c.informer = cache.NewSharedIndexInformerWithOptions(
		cache.ToListWatcherWithWatchListSemantics(lw, client),
		&unstructured.Unstructured{},
		cache.SharedIndexInformerOptions{ObjectDescription: BlobResource.String()},
	)
	if err := c.informer.SetTransform(trim); err != nil {
		return nil, fmt.Errorf("cidn: %w", err)
	}
	_, err := c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.onEvent(nil, obj, false) },
		UpdateFunc: func(old, obj any) { c.onEvent(old, obj, false) },
		DeleteFunc: func(obj any) { c.onEvent(nil, obj, true) },
	})
	if err != nil {
		return nil, fmt.Errorf("cidn: %w", err)
	}
	return c, nil
}

// NewForConfig returns a Client for the API server rc points at (see
// RESTConfig).
func NewForConfig(rc *rest.Config, cfg Config) (*Client, error) {
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("cidn: %w", err)
	}
	return New(client, cfg)
}

// Start starts following Blobs. It returns at once: the informer lists and
// watches in the background, and reconnects by itself when the API server
// goes away and comes back.
func (c *Client) Start() {
	c.startOnce.Do(func() {
		go func() {
			defer close(c.stopped)
			c.informer.RunWithContext(c.ctx)
		}()
	})
}

// HasSynced reports whether the informer has listed the Blobs once.
func (c *Client) HasSynced() bool { return c.informer.HasSynced() }

// Close stops following Blobs. Transfers still followed end with
// ErrClosed; the Blobs themselves go on.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		started := true
		c.startOnce.Do(func() { started = false })
		if started {
			<-c.stopped
		}
		c.mu.Lock()
		c.closed = true
		for _, f := range c.flights {
			c.finishLocked(f, ErrClosed)
		}
		c.mu.Unlock()
	})
	return nil
}

// Check verifies that the API server serves Blobs and lets this client
// list them.
func (c *Client) Check(ctx context.Context) error {
	if _, err := c.blobs.List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		return fmt.Errorf("cidn: listing blobs: %w", err)
	}
	return nil
}

// Waiting returns the number of requests following a transfer.
func (c *Client) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

// Ensure implements httpmirror.CIDN: it makes sure a Blob copies sourceURL
// to the object of key, and returns the transfer once the Blob exists. It
// fails with an error matching httpmirror.ErrCIDNUnavailable when the API
// server cannot be reached or refuses the Blob.
func (c *Client) Ensure(ctx context.Context, key, sourceURL string) (httpmirror.CIDNTransfer, error) {
	path, err := c.cfg.ObjectKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: no object key for %q: %v", httpmirror.ErrCIDNUnavailable, key, err)
	}
	name := BlobName(key)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	f := c.flights[name]
	if f == nil {
		f = &flight{name: name, ready: make(chan struct{}), done: make(chan struct{}), gone: map[types.UID]bool{}}
		c.flights[name] = f
		// The Blob is made on the Client's context, not the request's: the
		// requests that join this one must not fail because it left.
		go c.start(f, path, sourceURL)
	}
	f.refs++
	c.waiting++
	c.mu.Unlock()
	c.cfg.Metrics.addWaiting(1)

	select {
	case <-f.ready:
	case <-ctx.Done():
		c.release(f)
		return nil, context.Cause(ctx)
	}
	if f.startErr != nil {
		c.release(f)
		return nil, f.startErr
	}
	return &transfer{c: c, f: f}, nil
}

// start makes sure the Blob of f exists, then follows it.
func (c *Client) start(f *flight, path, sourceURL string) {
	blob, err := c.ensureBlob(f.name, path, sourceURL)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		f.startErr = err
		close(f.ready)
		c.finishLocked(f, err)
		return
	}
	f.uid = blob.GetUID()
	f.isReady = true
	close(f.ready)
	if f.gone[f.uid] {
		c.finishLocked(f, httpmirror.ErrCIDNDeleted)
		return
	}
	f.gone = nil
	// What the API answered, then what the informer holds: events for the
	// Blob that arrived before it was known were dropped, but the store
	// was updated before they were dispatched, so it reflects them. Both
	// may be older than the other; only a final phase acts, and final
	// phases do not change.
	c.observeLocked(f, nil, blob, false)
	if obj, ok, err := c.informer.GetStore().GetByKey(f.name); err == nil && ok {
		c.observeLocked(f, nil, obj, false)
	}
}

// ensureBlob creates the Blob name, or finds it created by another request
// or replica, and returns it. A Blob found failed is deleted and created
// again: its failure answered the requests that waited for it, and this
// request retries the file.
func (c *Client) ensureBlob(name, path, sourceURL string) (*unstructured.Unstructured, error) {
	want := c.newBlob(name, path, sourceURL)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
		created, err := c.blobs.Create(ctx, want, metav1.CreateOptions{})
		cancel()
		if err == nil {
			c.cfg.Metrics.blobCreated()
			c.log.Debug("cidn blob created", "blob", name, "source", sourceURL, "path", path)
			return created, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			c.cfg.Metrics.apiError("create")
			return nil, fmt.Errorf("%w: creating blob %s: %v", httpmirror.ErrCIDNUnavailable, name, err)
		}
		ctx, cancel = context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
		cur, err := c.blobs.Get(ctx, name, metav1.GetOptions{})
		cancel()
		if apierrors.IsNotFound(err) && attempt < maxAttempts {
			continue // deleted in between: create it again
		}
		if err != nil {
			c.cfg.Metrics.apiError("get")
			return nil, fmt.Errorf("%w: getting blob %s: %v", httpmirror.ErrCIDNUnavailable, name, err)
		}
		if statusOf(cur).Phase != PhaseFailed || attempt == maxAttempts {
			return cur, nil
		}
		uid := cur.GetUID()
		ctx, cancel = context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
		// The precondition deletes that failed Blob only, never one another
		// replica created in its place meanwhile.
		err = c.blobs.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			c.cfg.Metrics.apiError("delete")
			return nil, fmt.Errorf("%w: deleting failed blob %s: %v", httpmirror.ErrCIDNUnavailable, name, err)
		}
		c.log.Info("cidn blob had failed; creating it again", "blob", name, "source", sourceURL)
	}
}
