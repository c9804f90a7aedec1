// Package httpmirror is an HTTP caching mirror for files.
//
// A MirrorHandler answers GET and HEAD requests for files of remote origins.
// It finds the origin from the request (a fixed host, the first path segment,
// or the Host header minus a base domain), fetches each file once, keeps it
// in a storage backend, and serves later requests from there: with the
// object's bytes (Range, conditional requests and HEAD included) or, for
// backends that can sign URLs, with a redirect to a short-lived link.
//
// Concurrent requests for the same file share one upstream download and all
// receive its bytes as they arrive (see package fill).
package httpmirror

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/httpmirror/httpmirror/internal/pipeline"
	"github.com/httpmirror/httpmirror/storage"
)

// MirrorHandler is the HTTP handler that mirrors files. Its exported fields
// configure it and must not change once it serves requests; the zero value
// of each field is documented with it.
type MirrorHandler struct {
	// RemoteCache is where files are kept. Nil means no cache: every
	// request is proxied to the origin (direct mode).
	RemoteCache storage.Backend

	// LinkExpires is the lifetime of signed redirect URLs, for backends
	// that sign them. Zero means 24 hours.
	LinkExpires time.Duration

	// BaseDomain, in Host-header mode, is the suffix removed from the Host
	// header to get the origin host: with "mirror.example.net", a request
	// for Host "github.com.mirror.example.net" goes to github.com. Hosts
	// without the suffix are not served. Empty: the Host header names the
	// origin as it is.
	BaseDomain string

	// Client sends upstream requests. Nil means NewUpstreamClient with
	// ProxyDial and AllowPrivateUpstreams.
	Client *http.Client

	// ProxyDial, when set and Client is nil, makes every upstream
	// connection.
	ProxyDial func(context.Context, string, string) (net.Conn, error)

	// AllowPrivateUpstreams, when Client is nil, lets origins resolve to
	// loopback, private and link-local addresses. False (the default)
	// refuses them with 403.
	AllowPrivateUpstreams bool

	// NotFound answers requests that name no origin. Nil means
	// http.NotFound.
	NotFound http.Handler

	// AccessLog, when set, writes the access log (a line per request) in
	// place of Logger, in Logger's format (see NewAccessLog); Logger keeps
	// every other record. Nil means the lines are Logger's INFO records.
	AccessLog *AccessLog

	// Logger receives errors and events. Nil discards them. To use a
	// Println-style logger, wrap it with NewPrintlnHandler.
	Logger *slog.Logger

	// CheckSyncTimeout, when > 0, makes every hit first ask the origin
	// (HEAD, within this timeout) for the file's size; a different size
	// refetches the file, an unreachable origin serves the cache.
	CheckSyncTimeout time.Duration

	// Host, when set, is the origin host (with an optional port) of every
	// request; the whole request path is the upstream path.
	Host string

	// HostFromFirstPath takes the origin host from the first path segment:
	// /example.com/a/b is https://example.com/a/b.
	HostFromFirstPath bool

	// BlockSuffix lists path suffixes (matched case-insensitively) answered
	// with 403 Forbidden.
	BlockSuffix []string

	// AllowHosts lists the origin hosts served, as glob patterns ('*'
	// matches any run of characters, dots included, so "*.huggingface.co"
	// covers every subdomain but not huggingface.co itself), matched
	// case-insensitively against the host without its port, or against
	// host:port when the pattern contains ':'. Requests for other hosts
	// get 403 without any upstream traffic, and redirects to them are
	// refused. In Host mode, Host itself must match. Nil or empty means
	// every host: anyone who reaches the mirror can make it fetch from any
	// host and fill its storage.
	AllowHosts []string

	// NoRedirect serves cached bytes through the mirror even when the
	// backend could redirect clients to a signed URL.
	NoRedirect bool

	// TeeResponse streams a file to its clients while it is being fetched
	// and stored. False means clients wait until the file is stored, then
	// get it (or a redirect to it) as a hit.
	TeeResponse bool

	// ContinuationGetRetry is how many times a broken upstream body is
	// resumed with a Range request. Zero disables resuming.
	ContinuationGetRetry int

	// ContinuationGetInterval is the pause before each resume.
	ContinuationGetInterval time.Duration

	// UpstreamScheme is the scheme of upstream URLs. Empty means "https".
	UpstreamScheme string

	// UpstreamIdleTimeout aborts (or resumes, with retries) an upstream
	// body that sends nothing for this long. Zero means 2 minutes; negative
	// means no limit.
	UpstreamIdleTimeout time.Duration

	// UpstreamMinRate, in bytes per second, aborts (or resumes) an
	// upstream body that delivers less than UpstreamMinRate bytes per
	// second over a period of UpstreamIdleTimeout, so an origin trickling a
	// byte now and then cannot hold a download for ever. Zero means
	// DefaultUpstreamMinRate; negative means no minimum.
	UpstreamMinRate int64

	// FillConnections is how many connections one download may use at
	// most: a file larger than FillSegmentSize whose origin serves byte
	// ranges and gives a validator (a strong ETag or Last-Modified) is
	// fetched as segments, each checked against the first response, over
	// two connections at first, doubled while the download's rate grows
	// with them, up to FillConnections; a client asking for a range ahead
	// of what has arrived gets its segment next. Zero means
	// DefaultFillConnections; 1 fetches every file over one connection.
	FillConnections int

	// FillSegmentSize is the size of those segments. Zero means
	// fill.DefaultSegmentSize (8 MiB).
	FillSegmentSize int64

	// MaxObjectSize bounds the files the cache fetches and stores. A file
	// whose origin announces a larger Content-Length is proxied straight
	// to its client, neither spooled nor stored (each client of it is one
	// origin download); a body without a length is cut off (the client
	// sees an aborted transfer) once it grows past the bound. Zero means
	// no bound.
	MaxObjectSize int64

	// SpoolDir holds temporary spool files: for backends that cannot read
	// back what they are writing, for responses that are not stored, and
	// for fills whose storage writes failed (a full cache disk). Put it on
	// another file system than a local cache, so that a full cache disk
	// does not stop fills. Empty means os.TempDir().
	SpoolDir string

	// MaxPathLength is the longest request path served; longer ones get
	// 414. Zero means DefaultMaxPathLength.
	MaxPathLength int

	// MaxRanges is how many ranges a request may ask for, counted once
	// overlapping and adjacent ones are merged. A Range header asking for
	// more is ignored: the answer is the whole body (200), as RFC 9110
	// section 14.2 allows. Zero means DefaultMaxRanges, which explains the
	// number.
	MaxRanges int

	// Metrics, when set, receives request, upstream, fill and storage
	// metrics (see NewMetrics). Nil records none.
	Metrics *Metrics

	// RevalidatePatterns lists glob patterns ('*' matches any run of
	// characters, '/' included) matched against the cache key (upstream
	// host + path). Stored objects whose key matches and whose origin gave
	// no freshness headers are revalidated on every request. Nil means
	// DefaultRevalidatePatterns; an empty, non-nil list means none.
	RevalidatePatterns []string

	// NegativeTTL is how long an origin's 404 or 410 is remembered and
	// answered without asking the origin. Zero means DefaultNegativeTTL;
	// negative disables it.
	NegativeTTL time.Duration

	// CacheQuery includes the query string in the cache key and the
	// upstream request, for origins that address files by query. False
	// drops the query: mirrored files are named by their path, and a
	// query (often a cache-buster or a tracking token) would otherwise
	// store one copy per distinct query.
	CacheQuery bool

	// DigestPaths are patterns of cache keys (host + path) that name an
	// object by its digest, beyond the ones httpmirror knows (OCI blobs,
	// apt by-hash, Hugging Face blobs): Go regular expressions with the
	// named groups alg (sha256, sha512, …) and hex. Every fill checks its
	// bytes against the digests the URL and the origin's headers publish
	// (see policy.DigestRules). Nil means the built-in patterns only.
	DigestPaths []string

	// MaxVariants is how many variants of one URL (responses that vary,
	// Vary, each stored under a key of its own) are stored, the first one
	// included; a response for another variant is served but not stored.
	// Zero means DefaultMaxVariants; negative means no limit.
	MaxVariants int

	// AuthCache stores responses to requests with Authorization that do
	// not allow shared use (RFC 9111 section 3.5: no public, s-maxage or
	// must-revalidate), once, for every client the origin authorises: a
	// client is served such an object only after the origin accepted its
	// credential for the object's scope (policy.AuthScope) within
	// AuthCacheTTL, which a HEAD with the credential asks. False streams
	// such responses to their client without storing them.
	AuthCache bool

	// AuthCacheTTL is how long an origin's answer about a credential is
	// trusted. Zero means DefaultAuthCacheTTL.
	AuthCacheTTL time.Duration

	// CIDN, when set, stores missed files through a CIDN deployment
	// instead of the built-in fill engine (see package cidn): the miss
	// waits until CIDN has copied the file into RemoteCache, then is
	// served as a hit. When CIDN cannot be reached, the fill engine
	// fetches the file. Nil means the fill engine only. RemoteCache must
	// be the store CIDN writes to.
	CIDN CIDN

	// CIDNNoWait makes a miss whose CIDN transfer is still running go
	// straight to the origin (proxied, not stored) instead of waiting for
	// the transfer. False (the default) waits, so that the origin sends
	// each file once, to CIDN.
	CIDNNoWait bool

	// CIDNWaitTimeout bounds how long a request waits for a CIDN transfer
	// (when it waits at all): past it, the request is proxied to the
	// origin while CIDN goes on storing the file, so a CIDN deployment
	// without runners cannot hold clients forever. Zero means no limit.
	CIDNWaitTimeout time.Duration

	// PrefetchConcurrency is how many URLs of Prefetch jobs, all jobs
	// together, are fetched at once. Zero means
	// DefaultPrefetchConcurrency.
	PrefetchConcurrency int

	// Coordinator, when set, shares misses with the other replicas that
	// serve from the same store, so that each file leaves its origin once
	// (see package cluster): a miss another replica is already fetching
	// is streamed from that replica, whose PeerHandler answers it. Nil
	// means each replica fetches its own misses. It is not used with
	// CIDN, which stores each file once for every replica itself.
	Coordinator Coordinator

	// MaxIdle removes stored objects nobody has read for that long (an
	// object never read counts from when it was stored): a background
	// sweep runs a minute after the start (Start, or the first request)
	// and then every MaxIdle/10, at least a minute and at most an hour
	// apart (see ExpireIdle). RemoteCache must implement
	// storage.Expirer. Zero means objects stay until they are evicted or
	// purged.
	MaxIdle time.Duration

	once     sync.Once
	p        *pipeline.Pipeline // the request path, built by setup
	setupErr error
	log      *slog.Logger
	now      func() time.Time // the clock; tests replace it
	admin    adminState       // prefetch jobs, recent failures (admin.go)
	idle     idleSweep        // the MaxIdle sweep (idle.go)
}

// Close stops the prefetch and verify jobs, aborts the fills in progress
// and waits, until ctx is done, for them to clean up; nothing half-written
// stays in storage. Requests still being served from an aborted fill are cut off.
func (m *MirrorHandler) Close(ctx context.Context) error {
	if err := m.setup(); err != nil {
		return err
	}
	m.stopPrefetches()
	m.stopVerifies()
	m.stopInvalidations()
	m.stopIdleSweep()
	return m.p.Shutdown(ctx)
}

// WaitFills blocks until no upstream download is in progress, or ctx is
// done. Downloads continue after their clients leave; this waits for them
// to be committed (or to fail), and for invalidations waiting for them to
// mark what they stored (see Invalidate).
func (m *MirrorHandler) WaitFills(ctx context.Context) error {
	if err := m.setup(); err != nil {
		return err
	}
	if err := m.p.Wait(ctx); err != nil {
		return err
	}
	return m.waitInvalidations(ctx)
}

// Check reports whether the cache can serve and store: nil without a
// cache; otherwise the storage backend's own check (see storage.Checker),
// failing also while writes to it fail (a full disk, an unreachable
// bucket). Readiness probes call it.
func (m *MirrorHandler) Check(ctx context.Context) error {
	if err := m.setup(); err != nil {
		return err
	}
	return m.p.Check(ctx)
}

// FillsInProgress reports how many upstream downloads are running; 0 for
// a handler whose configuration is invalid.
func (m *MirrorHandler) FillsInProgress() int {
	if m.setup() != nil {
		return 0
	}
	return m.p.InProgress()
}
