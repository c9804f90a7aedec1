// Package config parses httpmirror's command line. Every flag can also be
// set by an environment variable HTTPMIRROR_<FLAG_NAME> (upper case, dashes
// as underscores); a flag given on the command line wins.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror"
	"github.com/httpmirror/httpmirror/internal/admin"
	"github.com/httpmirror/httpmirror/policy"
)

// EnvPrefix starts the name of every environment variable that sets a flag.
const EnvPrefix = "HTTPMIRROR_"

// Config is the parsed command line.
type Config struct {
	Address      string
	AdminAddress string
	// AdminTokens are the bearer tokens of the admin listener, read from
	// AdminTokenFile; empty means the admin API is open to whoever
	// reaches it, which only a loopback AdminAddress or AdminInsecure
	// allows.
	AdminTokens    []admin.Token
	AdminTokenFile string
	// AdminMetricsAuth makes /metrics need a token too.
	AdminMetricsAuth bool
	// AdminInsecure allows an admin listener off loopback without tokens.
	AdminInsecure bool

	// StorageURL is where the cache lives: "file:///dir" or another
	// backend's URL; empty means no cache (direct proxy). When the flag is
	// absent it is a file URL under the user's cache directory.
	StorageURL string
	// StorageDefault says StorageURL is that default: neither the flag
	// nor its variable was given.
	StorageDefault bool

	LinkExpires             time.Duration
	Host                    string
	HostFromFirstPath       bool
	BaseDomain              string
	CheckSyncTimeout        time.Duration
	ContinuationGetInterval time.Duration
	ContinuationGetRetry    int
	BlockSuffix             []string
	AllowHost               []string // globs of the origin hosts served; empty: every host
	NoRedirect              bool
	TeeResponse             bool

	UpstreamScheme         string
	UpstreamProxy          *url.URL
	UpstreamCAFile         string
	AllowPrivateUpstreams  bool
	UpstreamConnectTimeout time.Duration
	UpstreamHeaderTimeout  time.Duration
	UpstreamIdleTimeout    time.Duration

	CacheMaxSize int64
	// MaxIdle removes objects nobody read for that long; 0 (the flag
	// absent) keeps them until they are evicted or purged.
	MaxIdle            time.Duration
	MaxObjectSize      int64
	FillConnections    int
	FillSegmentSize    int64
	UpstreamMinRate    int64
	SpoolDir           string
	RevalidatePatterns []string
	NegativeTTL        time.Duration
	CacheQuery         bool
	AuthCache          bool
	AuthCacheTTL       time.Duration
	MaxPathLength      int
	MaxRanges          int
	MaxVariants        int
	DigestPaths        []string // extra URL patterns that name objects by digest
	ShutdownTimeout    time.Duration
	LogFormat          string
	LogLevel           slog.Level

	// PrefetchConcurrency bounds the URLs of admin prefetch jobs fetched
	// at once.
	PrefetchConcurrency int

	// Kubeconfig and Master locate the CIDN API server; CIDN is used when
	// either is set (see CIDNEnabled), and needs s3:// storage.
	Kubeconfig            string
	Master                string
	InsecureSkipTLSVerify bool
	// CIDNDestination is CIDN's name for the mirror's bucket; it defaults
	// to the storage URL's scheme ("s3"), as the original httpmirror's
	// does, so that CIDN configurations written for it work unchanged.
	CIDNDestination      string
	CIDNMaximumRunning   int64
	CIDNMinimumChunkSize int64
	// CIDNWait makes misses wait for their CIDN transfer; false proxies
	// them from the origin while it runs.
	CIDNWait bool
	// CIDNWaitTimeout bounds that wait; 0 means no limit.
	CIDNWaitTimeout time.Duration

	// PeerAddress is the peer listener's address; set, replicas on the
	// same s3:// bucket fetch each file once (see ClusterEnabled).
	PeerAddress string
	// AdvertiseURL is the URL other replicas reach the peer listener at.
	AdvertiseURL string
	// PeerSecret and PeerSecretFile give the shared peer secret; exactly
	// one is set when PeerAddress is.
	PeerSecret     string
	PeerSecretFile string
	// LeaseDuration is how long a replica's claim on a fill holds without
	// renewal.
	LeaseDuration time.Duration
}

// ClusterEnabled reports whether misses are shared with other replicas.
func (c *Config) ClusterEnabled() bool { return c.PeerAddress != "" }

// CIDNEnabled reports whether misses go to CIDN.
func (c *Config) CIDNEnabled() bool { return c.Kubeconfig != "" || c.Master != "" }

// ErrHelp is returned by Parse when the user asked for help; the usage has
// been written to the output.
var ErrHelp = flag.ErrHelp

// listFlag is a flag that may be repeated and takes comma-separated values.
type listFlag struct{ v *[]string }

// repeatFlag is a flag given once per value: its values may hold commas
// (regular expressions).
type repeatFlag struct{ v *[]string }

func (r repeatFlag) String() string {
	if r.v == nil {
		return ""
	}
	return strings.Join(*r.v, " ")
}

func (r repeatFlag) Set(s string) error {
	*r.v = append(*r.v, s)
	return nil
}

func (l listFlag) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}

func (l listFlag) Set(s string) error {
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l.v = append(*l.v, p)
		}
	}
	return nil
}

// Parse parses args (without the program name). lookupEnv looks up
// environment variables (os.LookupEnv in main). Usage goes to out when asked
// for.
func Parse(args []string, lookupEnv func(string) (string, bool), out io.Writer) (*Config, error) {
	c := &Config{}
	var text textFlags
	fs := flag.NewFlagSet("httpmirror", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defineFlags(fs, c, &text)
	showVersion := fs.Bool("version", false, "Print the version (module version, VCS revision, Go version) and exit.")
	var bad *valueError
	checkValues(fs, &bad)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, out)
			return nil, ErrHelp
		}
		return nil, commandLineError(err, bad, fs)
	}
	if *showVersion {
		return nil, ErrVersion
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set, err := applyEnv(fs, lookupEnv)
	if err != nil {
		return nil, err
	}
	if err := c.convert(text, set["storage-url"]); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// textFlags are the flags kept as text until the command line and the
// environment have both been read; convert turns them into Config fields.
type textFlags struct {
	storageURL    string
	upstreamProxy string
	revalidate    string
	logLevel      string
}

// defineFlags defines every flag on fs, each setting a field of c or of
// text. The grouping is for the reader: the usage lists the flags by
// name.
func defineFlags(fs *flag.FlagSet, c *Config, text *textFlags) {
	defineListenerFlags(fs, c)
	defineOriginFlags(fs, c)
	defineUpstreamFlags(fs, c, text)
	defineCacheFlags(fs, c, text)
	defineLogFlags(fs, c, text)
	defineCIDNFlags(fs, c)
	defineClusterFlags(fs, c)
}

// defineListenerFlags defines the flags of the public and admin listeners.
func defineListenerFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Address, "address", ":8080", "Address to listen on for mirror requests.")
	fs.StringVar(&c.AdminAddress, "admin-address", "", "Address of the admin listener: /metrics, /healthz, /readyz, the cache API (/cache/, /prefetch), the status page (/) and /debug/pprof/; empty disables it.")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", "", "File of the admin listener's bearer tokens, one per line as TOKEN [NAME] (# comments and blank lines ignored); with it every admin endpoint but /healthz, /readyz and /metrics needs \"Authorization: Bearer TOKEN\", and the audit log names the token.")
	fs.BoolVar(&c.AdminMetricsAuth, "admin-metrics-auth", false, "Require an admin token for /metrics too (needs --admin-token-file).")
	fs.BoolVar(&c.AdminInsecure, "admin-insecure", false, "Allow an --admin-address off loopback without --admin-token-file: anyone who reaches it can purge the cache and make the mirror fetch; only behind a firewall or network policy.")
	fs.IntVar(&c.MaxPathLength, "max-path-length", 8192, "Longest request path served; longer ones get 414.")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "On SIGTERM or SIGINT, how long responses in flight may take to finish.")
}

// defineOriginFlags defines the flags that say which origin a request is
// for and which origins are served.
func defineOriginFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Host, "host", "", "Fixed origin host (with optional :port) for every request.")
	fs.BoolVar(&c.HostFromFirstPath, "host-from-first-path", false, "Take the origin host from the first path segment: /example.com/a/b fetches https://example.com/a/b.")
	fs.StringVar(&c.BaseDomain, "base-domain", "", "Domain suffix removed from the Host header to get the origin host.")
	fs.Var(listFlag{&c.BlockSuffix}, "block-suffix", "Path suffix answered with 403 (repeatable, comma-separated).")
	fs.Var(listFlag{&c.AllowHost}, "allow-host", "Origin host served, a glob such as *.huggingface.co ('*' matches any run of characters; with a ':' it matches host:port), repeatable and comma-separated; other hosts and redirects to them get 403, and without the flag every host is served.")
}

// defineUpstreamFlags defines the flags of the connections to origins
// and of the downloads over them.
func defineUpstreamFlags(fs *flag.FlagSet, c *Config, text *textFlags) {
	fs.StringVar(&c.UpstreamScheme, "upstream-scheme", "https", "Scheme used to reach origins: https or http.")
	fs.StringVar(&text.upstreamProxy, "upstream-proxy", "", "Proxy for upstream connections: http://host:port, https://…, socks5://host:port; when absent HTTPS_PROXY, HTTP_PROXY and NO_PROXY apply.")
	fs.StringVar(&c.UpstreamCAFile, "upstream-ca-file", "", "PEM file of extra root certificates trusted for origins.")
	fs.BoolVar(&c.AllowPrivateUpstreams, "allow-private-upstreams", false, "Allow origins on loopback, private, link-local and other internal addresses.")
	fs.DurationVar(&c.UpstreamConnectTimeout, "upstream-connect-timeout", 10*time.Second, "Limit for connecting to an origin, TLS handshake included.")
	fs.DurationVar(&c.UpstreamHeaderTimeout, "upstream-header-timeout", 30*time.Second, "Limit for an origin's response headers to arrive.")
	fs.DurationVar(&c.UpstreamIdleTimeout, "upstream-idle-timeout", 2*time.Minute, "Limit for an origin's body to stay silent before the download is aborted or resumed.")
	c.UpstreamMinRate = 1 << 10
	fs.Var((*sizeFlag)(&c.UpstreamMinRate), "upstream-min-rate", "Slowest origin body accepted, in bytes per second over each --upstream-idle-timeout period, e.g. 1KiB; slower ones are aborted (or resumed); 0 disables.")
	fs.DurationVar(&c.ContinuationGetInterval, "continuation-get-interval", time.Second, "Pause before resuming a broken upstream download.")
	fs.IntVar(&c.ContinuationGetRetry, "continuation-get-retry", 0, "How many times a broken upstream download is resumed with a Range request; 0 disables.")
	fs.IntVar(&c.FillConnections, "fill-connections", 8, "Most connections one download may use: larger files whose origin serves ranges are fetched in parallel segments, over two connections at first, more while they add to the rate; 1 fetches over one connection.")
	c.FillSegmentSize = 8 << 20
	fs.Var((*sizeFlag)(&c.FillSegmentSize), "fill-segment-size", "Size of the segments of a parallel download, e.g. 8MiB.")
}

// defineCacheFlags defines the flags of the storage and of what is
// stored, revalidated and served from it.
func defineCacheFlags(fs *flag.FlagSet, c *Config, text *textFlags) {
	fs.StringVar(&text.storageURL, "storage-url", "", "Cache location: file:///abs/dir for local disk; empty for no cache (pure proxy); absent means a directory under the user's cache dir.")
	fs.Var((*sizeFlag)(&c.CacheMaxSize), "cache-max-size", "Size limit of the local disk cache, e.g. 20GiB or 500MB; least recently used files are evicted; 0 means no limit.")
	fs.Var((*idleFlag)(&c.MaxIdle), "max-idle", "Remove stored files nobody has read for this long, e.g. 30d or 720h (a file never read counts from when it was stored); a sweep runs every tenth of it, 1m to 1h apart; on S3, replicas sharing the bucket count each other's reads (see docs/storage.md); absent, files stay until evicted or purged.")
	fs.Var((*sizeFlag)(&c.MaxObjectSize), "max-object-size", "Largest file fetched through the cache, e.g. 50GiB; larger ones are proxied to their client without being stored; 0 means no limit.")
	fs.StringVar(&c.SpoolDir, "spool-dir", "", "Directory for temporary spool files (unstored responses, fills whose cache writes failed); best on another file system than the cache; empty means the system temporary directory.")
	fs.DurationVar(&c.LinkExpires, "link-expires", 24*time.Hour, "Lifetime of signed redirect URLs, for backends that sign them.")
	fs.BoolVar(&c.NoRedirect, "no-redirect", false, "Serve cached bytes through the mirror instead of redirecting to signed URLs.")
	fs.BoolVar(&c.TeeResponse, "tee-response", true, "Stream files to clients while they are being fetched; false makes clients wait until the file is stored.")
	fs.DurationVar(&c.CheckSyncTimeout, "check-sync-timeout", 0, "On a hit, ask the origin for the file size within this time and refetch if it changed; 0 disables.")
	fs.StringVar(&text.revalidate, "revalidate-pattern", strings.Join(httpmirror.DefaultRevalidatePatterns, ","), "Comma-separated globs ('*' spans '/') of cache keys (host/path) revalidated on every request when the origin sends no freshness headers; empty for none.")
	fs.DurationVar(&c.NegativeTTL, "negative-ttl", 30*time.Second, "How long an origin's 404 or 410 is remembered; 0 disables.")
	fs.BoolVar(&c.CacheQuery, "cache-query", false, "Include the query string in the cache key and the upstream request.")
	fs.BoolVar(&c.AuthCache, "auth-cache", false, "Store responses to requests with Authorization that the origin did not mark public, and serve them only to clients whose credential the origin accepts (checked with a HEAD, remembered for --auth-cache-ttl); without it they are streamed, not stored.")
	fs.DurationVar(&c.AuthCacheTTL, "auth-cache-ttl", httpmirror.DefaultAuthCacheTTL, "How long an origin's answer about a credential (allowed or denied) is trusted by --auth-cache.")
	fs.IntVar(&c.MaxRanges, "max-ranges", httpmirror.DefaultMaxRanges, "Most ranges one request may ask for, once overlapping and adjacent ones are merged; a request for more gets the whole file (200).")
	fs.Var(repeatFlag{&c.DigestPaths}, "digest-path", "A regular expression matched against cache keys (host/path) whose named groups alg (sha256, sha512, md5, crc32c) and hex name the object's digest, repeatable, e.g. 'releases\\.example\\.com/.*/(?P<alg>sha256)/(?P<hex>[0-9a-f]{64})$'; fills check their bytes against it (OCI blobs, apt by-hash and Hugging Face blobs are known without it).")
	fs.IntVar(&c.MaxVariants, "max-variants", httpmirror.DefaultMaxVariants, "Most variants of one URL stored when its origin negotiates (Vary), the first included; responses for more are served but not stored.")
	fs.IntVar(&c.PrefetchConcurrency, "prefetch-concurrency", 4, "How many URLs of admin prefetch jobs (POST /prefetch, httpmirror cache warm) are fetched at once, all jobs together.")
}

// defineLogFlags defines the flags of the log.
func defineLogFlags(fs *flag.FlagSet, c *Config, text *textFlags) {
	fs.StringVar(&c.LogFormat, "log-format", "text", "Log format: text or json.")
	fs.StringVar(&text.logLevel, "log-level", "info", "Log level: debug, info, warn or error.")
}

// defineCIDNFlags defines the flags of CIDN, which stores misses for the
// mirror.
func defineCIDNFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "Kubeconfig file of the CIDN API server; with it (or --master) misses are stored by CIDN, which needs s3:// storage.")
	fs.StringVar(&c.Master, "master", "", "URL of the CIDN API server; overrides the kubeconfig's server.")
	fs.BoolVar(&c.InsecureSkipTLSVerify, "insecure-skip-tls-verify", false, "Do not verify the CIDN API server's certificate.")
	fs.StringVar(&c.CIDNDestination, "cidn-destination", "", "Name of the mirror's bucket among CIDN's storage destinations; empty means the storage URL's scheme (s3).")
	fs.Int64Var(&c.CIDNMaximumRunning, "cidn-maximum-running", 10, "How many chunks of one file CIDN transfers at once (the Blob's maximumRunning); 0 leaves it to CIDN.")
	c.CIDNMinimumChunkSize = 128 << 20
	fs.Var((*sizeFlag)(&c.CIDNMinimumChunkSize), "cidn-minimum-chunk-size", "Smallest chunk CIDN splits a file into (the Blob's minimumChunkSize), e.g. 128MiB; 0 leaves it to CIDN.")
	fs.BoolVar(&c.CIDNWait, "cidn-wait", true, "Misses wait until CIDN has stored the file; false proxies them from the origin while CIDN stores it.")
	fs.DurationVar(&c.CIDNWaitTimeout, "cidn-wait-timeout", 10*time.Minute, "Longest wait for a CIDN transfer; past it the request is proxied from the origin; 0 means no limit.")
}

// defineClusterFlags defines the flags of replicas sharing fills.
func defineClusterFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.PeerAddress, "peer-address", "", "Address of the peer listener, e.g. :8081; set, replicas sharing one s3:// bucket fetch each file from its origin once, the others streaming it from the one that does; never the public --address.")
	fs.StringVar(&c.AdvertiseURL, "advertise-url", "", "URL other replicas reach this one's peer listener at, e.g. http://$(POD_IP):8081; required with --peer-address.")
	fs.StringVar(&c.PeerSecret, "peer-secret", "", "Secret shared by the replicas, required on peer requests; prefer --peer-secret-file or the environment.")
	fs.StringVar(&c.PeerSecretFile, "peer-secret-file", "", "File holding the peer secret (surrounding whitespace ignored).")
	fs.DurationVar(&c.LeaseDuration, "lease-duration", 30*time.Second, "How long a replica's claim on a fill holds without renewal: the wait before another replica takes over the fills of a crashed one.")
}

// usage writes the help: every flag in name order, with its default and
// its environment variable.
func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "Usage: httpmirror [flags]\n       httpmirror --version\n       httpmirror cache ls|info|rm|warm --admin URL ... (see httpmirror cache --help)\n\nhttpmirror is a caching mirror for files of HTTP origins.\n\nFlags (each also settable as %s<NAME>, flags win):\n", EnvPrefix)
	fs.VisitAll(func(f *flag.Flag) {
		def := ""
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			def = fmt.Sprintf(" (default %s)", f.DefValue)
		}
		if cliOnly[f.Name] {
			fmt.Fprintf(out, "  --%s\n        %s\n", f.Name, f.Usage)
			return
		}
		fmt.Fprintf(out, "  --%s\n        %s%s\n        env %s\n", f.Name, f.Usage, def, EnvName(f.Name))
	})
}

// applyEnv sets each flag that the command line did not from its
// environment variable (EnvName), and returns the names of the flags set
// either way. Its error is that of the first bad variable in flag name
// order; it names the variable.
func applyEnv(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) (map[string]bool, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil || cliOnly[f.Name] {
			return
		}
		name := EnvName(f.Name)
		v, ok := lookupEnv(name)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			// The reason, not the error: that names the flag, which
			// this variable stands in for.
			reason := err.Error()
			if ve, ok := err.(*valueError); ok {
				reason = ve.want
			}
			envErr = fmt.Errorf("invalid value %q for %s: %s", v, name, reason)
			return
		}
		set[f.Name] = true
	})
	if envErr != nil {
		return nil, envErr
	}
	return set, nil
}

// convert sets the fields that come from text flags. storageSet says
// whether --storage-url was given at all: absent, the cache goes under
// the user's cache directory, while given empty it means no cache.
func (c *Config) convert(text textFlags, storageSet bool) error {
	if storageSet {
		c.StorageURL = text.storageURL
	} else {
		dir, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("no --storage-url given and no default cache directory (%v): choose one with --storage-url file:///var/cache/httpmirror, or --storage-url= for none", err)
		}
		c.StorageURL = "file://" + filepath.ToSlash(filepath.Join(dir, "httpmirror"))
		c.StorageDefault = true
	}
	// Empty, not nil: an empty flag means no pattern, not the default
	// ones.
	c.RevalidatePatterns = []string{}
	for p := range strings.SplitSeq(text.revalidate, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.RevalidatePatterns = append(c.RevalidatePatterns, p)
		}
	}
	if text.upstreamProxy != "" {
		u, err := url.Parse(text.upstreamProxy)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5" && u.Scheme != "socks5h") {
			return fmt.Errorf("invalid value for --upstream-proxy: want http://, https:// or socks5://host:port")
		}
		c.UpstreamProxy = u
	}
	if err := c.LogLevel.UnmarshalText([]byte(text.logLevel)); err != nil {
		return fmt.Errorf("invalid value %q for --log-level: want debug, info, warn or error", text.logLevel)
	}
	if c.CIDNEnabled() && c.CIDNDestination == "" {
		// checkCIDN requires the scheme to be s3.
		scheme, _, _ := strings.Cut(c.StorageURL, "://")
		c.CIDNDestination = strings.ToLower(scheme)
	}
	return nil
}

// validate checks the configuration and returns the first error found,
// the checks taken in the order below.
func (c *Config) validate() error {
	for _, check := range []func() error{c.checkLogFormat, c.checkDurations, c.checkLimits, c.checkOrigin, c.checkAddresses, c.checkDigestPaths, c.checkCIDN, c.checkCluster, c.checkAdmin} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

// checkLogFormat checks --log-format.
func (c *Config) checkLogFormat() error {
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("invalid value %q for --log-format: want text or json", c.LogFormat)
	}
	return nil
}

// checkDurations checks that no duration flag is negative.
func (c *Config) checkDurations() error {
	for name, d := range map[string]time.Duration{
		"link-expires": c.LinkExpires, "check-sync-timeout": c.CheckSyncTimeout,
		"continuation-get-interval": c.ContinuationGetInterval, "upstream-connect-timeout": c.UpstreamConnectTimeout,
		"upstream-header-timeout": c.UpstreamHeaderTimeout, "upstream-idle-timeout": c.UpstreamIdleTimeout,
		"shutdown-timeout": c.ShutdownTimeout, "negative-ttl": c.NegativeTTL, "cidn-wait-timeout": c.CIDNWaitTimeout,
		"auth-cache-ttl": c.AuthCacheTTL,
	} {
		if d < 0 {
			return fmt.Errorf("invalid value %s for --%s: want 0 or more, such as 30s or 5m", d, name)
		}
	}
	return nil
}

// checkDigestPaths checks every --digest-path.
func (c *Config) checkDigestPaths() error {
	for _, p := range c.DigestPaths {
		if _, err := policy.ParseDigestPath(p); err != nil {
			return fmt.Errorf("--digest-path %q: %w", p, err)
		}
	}
	return nil
}

// checkLimits checks the counts and sizes that must be positive.
func (c *Config) checkLimits() error {
	// One flag per message: the one that is wrong.
	for _, l := range []struct {
		name string
		v    int
		min  int
	}{
		{"fill-connections", c.FillConnections, 1}, {"prefetch-concurrency", c.PrefetchConcurrency, 1},
		{"continuation-get-retry", c.ContinuationGetRetry, 0}, {"max-path-length", c.MaxPathLength, 1},
		{"max-ranges", c.MaxRanges, 1}, {"max-variants", c.MaxVariants, 1},
	} {
		if l.v < l.min {
			return fmt.Errorf("invalid value %d for --%s: want %d or more", l.v, l.name, l.min)
		}
	}
	if c.FillSegmentSize < 64<<10 {
		return fmt.Errorf("invalid value %d for --fill-segment-size: want 64KiB or more", c.FillSegmentSize)
	}
	if c.AuthCacheTTL == 0 {
		return errors.New("invalid value 0s for --auth-cache-ttl: want more than 0, such as 30s or 5m")
	}
	return nil
}

// checkCIDN checks the CIDN flags.
func (c *Config) checkCIDN() error {
	if c.CIDNEnabled() {
		scheme, _, _ := strings.Cut(c.StorageURL, "://")
		if !strings.EqualFold(scheme, "s3") {
			return errors.New("CIDN (--kubeconfig or --master) needs s3:// storage: CIDN writes files into the bucket the mirror serves from")
		}
	}
	if c.CIDNMaximumRunning < 0 {
		return fmt.Errorf("invalid value %d for --cidn-maximum-running: want 0 or more", c.CIDNMaximumRunning)
	}
	return nil
}

// EnvName is the environment variable that sets flag name.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// sizeFlag is a byte size with an optional unit: B, KB, MB, GB, TB (powers
// of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = sizeFlag(n)
	return nil
}

// idleFlag is the duration of --max-idle: a Go duration (720h, 90m) or a
// number of days with an optional Go duration after it (30d, 1d12h). It
// must be at least a minute: a sweep runs at most once a minute, and
// anything shorter would remove files between two requests of one
// client.
type idleFlag time.Duration

func (d *idleFlag) String() string {
	if *d == 0 {
		return "0"
	}
	return time.Duration(*d).String()
}

func (d *idleFlag) Set(v string) error {
	n, err := ParseDays(v)
	switch {
	case err != nil:
		return fmt.Errorf("want a duration such as 30d, 720h or 90m")
	case n <= 0:
		return fmt.Errorf("must be positive, such as 30d or 720h; leave the flag out to keep files until they are evicted or purged")
	case n < time.Minute:
		return fmt.Errorf("must be at least 1m, such as 30d or 720h")
	}
	*d = idleFlag(n)
	return nil
}

// ParseDays parses a Go duration (90m, 720h) that may start with a whole
// number of days (30d, 1d12h).
func ParseDays(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	days, rest, found := strings.Cut(v, "d")
	if !found {
		return time.ParseDuration(v)
	}
	neg := strings.HasPrefix(days, "-")
	n, err := strconv.ParseUint(strings.TrimPrefix(days, "-"), 10, 16)
	if err != nil || days == "" {
		return 0, fmt.Errorf("invalid duration %q", v)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest != "" {
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 || d+r < d {
			return 0, fmt.Errorf("invalid duration %q", v)
		}
		d += r
	}
	if neg {
		d = -d
	}
	return d, nil
}

// ParseSize parses a byte size such as "20GiB", "500MB" or "1048576".
func ParseSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	mult, ok := map[string]float64{
		"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}[strings.ToLower(unit)]
	f, err := strconv.ParseFloat(num, 64)
	if !ok || err != nil || f < 0 || f*mult > math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 20GiB or 500MB)", v)
	}
	return int64(f * mult), nil
}

// checkCluster checks the flags of replicas sharing fills.
func (c *Config) checkCluster() error {
	if !c.ClusterEnabled() {
		if c.AdvertiseURL != "" || c.PeerSecret != "" || c.PeerSecretFile != "" {
			return errors.New("--advertise-url and --peer-secret need --peer-address")
		}
		return nil
	}
	scheme, _, _ := strings.Cut(c.StorageURL, "://")
	switch {
	case !strings.EqualFold(scheme, "s3"):
		return errors.New("--peer-address needs s3:// storage: replicas share fills through one bucket")
	case c.CIDNEnabled():
		return errors.New("--peer-address and CIDN (--kubeconfig or --master) exclude each other: CIDN already fetches each file once for every replica")
	case c.AdvertiseURL == "":
		return errors.New("--peer-address needs --advertise-url, the URL other replicas reach it at")
	case (c.PeerSecret == "") == (c.PeerSecretFile == ""):
		return errors.New("--peer-address needs exactly one of --peer-secret and --peer-secret-file")
	case c.LeaseDuration < 100*time.Millisecond:
		return errors.New("--lease-duration must be at least 100ms")
	}
	return nil
}
