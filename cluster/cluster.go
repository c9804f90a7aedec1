// Package cluster lets replicas of httpmirror that serve from one bucket
// fetch each file from its origin once, with no process or database
// besides the bucket: it implements httpmirror.Coordinator.
//
// On a miss, a replica claims the fill by creating a small lease object
// next to the cache with a conditional write (storage.Claimer: S3's
// If-None-Match: *). The lease names the replica's advertised peer URL, when
// it started and a deadline, which the owner renews (If-Match on the version
// it wrote) every third of the lease duration while its fill makes
// progress, and removes once the fill has ended (committed or failed).
//
// A replica that finds the lease held does not ask the origin. While the
// lease is live it streams the object from the owner's peer listener
// (GET /peer/<key>, authenticated with a shared secret; the owner answers
// from its fill in progress, with the Range code clients get), and does
// not store it: the owner does. When the owner cannot be reached, it waits
// for the committed object to appear in the bucket or for the lease to
// expire. An expired lease (its owner crashed or stalled) is taken over
// with a conditional write against the version read, which exactly one
// replica wins; objects are only ever published whole.
//
// When a stream from the owner breaks, the fill resumes it (Range and
// If-Range, checked as every resume) through the same decision: from the
// committed object, from the owner if it still fills the key, from the
// replica that took it over; and once the owner's lease is dead (expired,
// or, at once, its owner refuses connections at the address that served
// the stream: its process died), this replica takes the lease over,
// aborts the uploads the dead owner left, and the origin sends only the
// rest, from the byte the fill's clients have. Their transfers go on; the
// fill stores the object. Replicas racing for the takeover stream from the
// winner, each from where it stands.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/storage"
)

// DefaultLeaseDuration is Config.LeaseDuration's default.
const DefaultLeaseDuration = 30 * time.Second

// Config configures a Node. Store, Self and Secret are required.
type Config struct {
	// Store is the store the replicas share: the handler's RemoteCache.
	// It must implement storage.Claimer (the S3 backend does), and it is
	// where leases live.
	Store storage.Backend
	// Self is the URL other replicas reach this replica's peer listener
	// at, such as http://10.1.2.3:8081 (--advertise-url).
	Self string
	// Secret authenticates peer requests: sent by this replica, required
	// from others. Every replica must have the same.
	Secret string
	// LeaseDuration is how long a lease holds without renewal: how long a
	// crashed owner's fills wait before another replica takes them over,
	// unless its death is certain sooner (it refuses connections at the
	// address that was serving a stream of them). Zero means
	// DefaultLeaseDuration.
	LeaseDuration time.Duration
	// MaxWait bounds how long a fill waits for an owner it cannot reach
	// while the owner keeps its lease alive; past it, the replica fetches
	// from the origin itself. Zero means four lease durations.
	MaxWait time.Duration
	// Client sends peer requests; it must not follow redirects (they
	// would carry the secret elsewhere). Nil means a client with short
	// connect and header timeouts.
	Client *http.Client
	// Logger receives events. Nil discards them.
	Logger *slog.Logger
	// Metrics, when set, receives the node's metrics (see NewMetrics).
	Metrics *Metrics
	// Now is the clock that lease deadlines are read and written with.
	// Nil means time.Now; tests replace it.
	Now func() time.Time
}

// Node is one replica's member of the cluster. It implements
// httpmirror.Coordinator.
type Node struct {
	store   storage.Backend
	claims  storage.Claimer
	self    string
	secret  string
	auth    [32]byte // SHA-256 of the secret
	lease   time.Duration
	maxWait time.Duration
	client  *http.Client
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	ctx    context.Context // background work: renewals, sweeps
	cancel context.CancelFunc
	wg     sync.WaitGroup // the sweep
	leases sync.WaitGroup // leases held, until released
	once   sync.Once
}

var _ httpmirror.Coordinator = (*Node)(nil)

// New returns a node for cfg. It checks the configuration only; Probe
// checks the store and Start starts the sweep of abandoned leases.
func New(cfg Config) (*Node, error) {
	claims, ok := cfg.Store.(storage.Claimer)
	if cfg.Store == nil || !ok {
		return nil, errors.New("cluster: the store keeps no leases (it is no storage.Claimer); use s3:// storage")
	}
	u, err := url.Parse(cfg.Self)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("cluster: advertise URL %q: want http://HOST:PORT of the peer listener", cfg.Self)
	}
	if cfg.Secret == "" {
		return nil, errors.New("cluster: a peer secret is required")
	}
	n := &Node{
		store:   cfg.Store,
		claims:  claims,
		self:    u.Scheme + "://" + u.Host,
		secret:  cfg.Secret,
		auth:    sha256.Sum256([]byte(cfg.Secret)),
		lease:   cfg.LeaseDuration,
		maxWait: cfg.MaxWait,
		client:  cfg.Client,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		now:     cfg.Now,
	}
	if n.lease <= 0 {
		n.lease = DefaultLeaseDuration
	}
	if n.maxWait <= 0 {
		n.maxWait = 4 * n.lease
	}
	if n.client == nil {
		n.client = newPeerClient(n.lease)
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// LeaseDuration returns the lease duration in use.
func (n *Node) LeaseDuration() time.Duration { return n.lease }

// Coordinate implements httpmirror.Coordinator.
func (n *Node) Coordinate(key string, origin func(context.Context, http.Header) (*http.Response, error)) httpmirror.Coordination {
	return &share{n: n, key: key, name: leaseName(key), origin: origin}
}

// ErrNoConditionalWrites is matched by Probe's error for a store that
// accepts writes it should have refused.
var ErrNoConditionalWrites = errors.New("cluster: the store does not honour conditional writes (If-None-Match: * and If-Match on PutObject)")

// Probe checks that the store keeps leases: it creates a claim of its own,
// checks that a second create and a swap against a stale version are
// refused and that a swap against the current one works, and removes it.
// A store that ignores the conditions would let several replicas fetch
// the same file at once, unnoticed: leases must not be used on it.
func (n *Node) Probe(ctx context.Context) error {
	var nonce [16]byte
	rand.Read(nonce[:])
	name := "probe-" + hex.EncodeToString(nonce[:])
	first, err := n.claims.Claim(ctx, name, []byte("probe 1"))
	if err != nil {
		return fmt.Errorf("cluster: probing leases: %w", err)
	}
	fail := func(what string) error {
		n.claims.Release(context.WithoutCancel(ctx), name, first.Version)
		return fmt.Errorf("%w: %s", ErrNoConditionalWrites, what)
	}
	if _, err := n.claims.Claim(ctx, name, []byte("probe 2")); !errors.Is(err, storage.ErrClaimed) {
		return fail(fmt.Sprintf("a create-if-absent of an existing lease answered %v", err))
	}
	second, err := n.claims.Swap(ctx, name, []byte("probe 3"), first.Version)
	if err != nil {
		return fail(fmt.Sprintf("a swap against the current version failed: %v", err))
	}
	if _, err := n.claims.Swap(ctx, name, []byte("probe 4"), first.Version); !errors.Is(err, storage.ErrClaimChanged) {
		return fail(fmt.Sprintf("a swap against a stale version answered %v", err))
	}
	if err := n.claims.Release(ctx, name, second.Version); err != nil {
		return fmt.Errorf("cluster: probing leases: removing the probe: %w", err)
	}
	return nil
}

// Start starts the sweep of abandoned leases: at once, then every ten
// lease durations (at least every minute), leases more than one lease
// duration past their deadline are removed, each conditionally on the
// version read. Such leases are left by owners that crashed on a file
// nobody asked for again.
func (n *Node) Start() {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		every := max(10*n.lease, time.Minute)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if removed, err := n.Sweep(n.ctx); err != nil && n.ctx.Err() == nil {
				n.log.Warn("cluster: sweeping abandoned leases failed", "removed", removed, "err", err)
			} else if removed > 0 {
				n.log.Info("cluster: removed abandoned leases", "count", removed)
			}
			select {
			case <-n.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Sweep removes the leases that expired more than one lease duration ago,
// and aborts the incomplete uploads of their keys (the crashed owner's,
// see storage.UploadAborter), and returns how many leases it removed.
// Claims that are no leases are left alone.
func (n *Node) Sweep(ctx context.Context) (int, error) {
	names, err := n.claims.Claims(ctx)
	if err != nil {
		return 0, err
	}
	removed := 0
	for _, name := range names {
		cl, err := n.claims.ReadClaim(ctx, name)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				continue
			}
			return removed, err
		}
		l, ok := decodeLease(cl.Data)
		if !ok || l.live(n.now().Add(-n.lease)) {
			continue
		}
		switch err := n.claims.Release(ctx, name, cl.Version); {
		case err == nil:
			removed++
			n.metrics.swept()
			n.abortUploads(ctx, l.Key)
		case !errors.Is(err, storage.ErrClaimChanged):
			return removed, err
		}
	}
	return removed, nil
}

// abortUploads aborts the incomplete uploads of key, which a crashed owner
// left (see storage.UploadAborter): they cost bucket space, not
// correctness, so a failure is logged and the uploads are left to the
// store's own sweep. A key cut short in its lease names no object.
func (n *Node) abortUploads(ctx context.Context, key string) {
	a, ok := n.store.(storage.UploadAborter)
	if !ok || key == "" || len(key) >= maxLeaseKey {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortUploadsTimeout)
	defer cancel()
	switch k, err := a.AbortUploads(ctx, key); {
	case err != nil && !errors.Is(err, storage.ErrNotSupported):
		n.log.Warn("cluster: aborting the uploads of a dead owner's fill failed", "key", key, "err", err)
	case k > 0:
		n.log.Info("cluster: aborted the uploads of a dead owner's fill", "key", key, "count", k)
	}
}

// Wait blocks until this node holds no lease (every fill it owned has
// ended and its lease is released), or ctx is done.
func (n *Node) Wait(ctx context.Context) error {
	return wait(ctx, &n.leases)
}

// Close stops the sweep and waits, until ctx is done, for the leases this
// node holds to be released (their fills end first: close the handler
// before).
func (n *Node) Close(ctx context.Context) error {
	n.once.Do(n.cancel)
	if err := wait(ctx, &n.wg); err != nil {
		return err
	}
	return wait(ctx, &n.leases)
}

func wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
