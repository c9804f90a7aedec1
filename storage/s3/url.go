package s3

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// MinChunkSize is S3's smallest multipart part (all but the last).
	MinChunkSize = 5 << 20
	// MaxChunkSize is S3's largest part.
	MaxChunkSize = 5 << 30
	// DefaultChunkSize is the part size when the URL names none: large
	// enough that most files are one PUT, small enough that a few dozen
	// concurrent fills stay within a few hundred MiB.
	DefaultChunkSize = 16 << 20
	// DefaultStaleUploadAge is how old an unfinished multipart upload must
	// be before the start-up sweep aborts it.
	DefaultStaleUploadAge = 24 * time.Hour
)

// Config configures a Backend. ParseURL fills it from a storage URL; the
// zero value of each field is documented with it.
type Config struct {
	// Bucket is the bucket name. Required.
	Bucket string
	// Region is the bucket's region. Empty means us-east-1, which
	// S3-compatible stores that ignore regions accept.
	Region string
	// RootDir is a key prefix without leading or trailing slash; every
	// object lives under RootDir + "/". Empty means the bucket's root.
	RootDir string

	// Endpoint is the URL httpmirror sends S3 requests to
	// (https://minio.internal:9000). Empty means AWS's endpoint for the
	// region.
	Endpoint string
	// SignEndpoint, when set, is the endpoint written into presigned URLs,
	// for stores that clients reach under another name than httpmirror
	// does. Empty means Endpoint.
	SignEndpoint string
	// ForcePathStyle addresses the bucket in the path
	// (endpoint/bucket/key) instead of the host name
	// (bucket.endpoint/key). Most self-hosted stores need it.
	ForcePathStyle bool
	// SkipVerify disables TLS certificate verification towards the store.
	SkipVerify bool
	// DualStack and Accelerate select AWS's dual-stack and transfer
	// acceleration endpoints.
	DualStack, Accelerate bool

	// AccessKey, SecretKey and SessionToken are static credentials. Empty
	// AccessKey means the standard AWS chain: environment, shared
	// configuration files, container and instance roles.
	AccessKey, SecretKey, SessionToken string

	// StorageClass is the storage class of new objects. Empty (or "NONE",
	// which existing storage URLs use to ask for no class) means the
	// bucket's default.
	StorageClass string
	// ObjectACL is the canned ACL of new objects. Empty means none is
	// sent, which is what buckets with ACLs disabled require.
	ObjectACL string
	// Encrypt asks for server-side encryption: SSE-KMS with KMSKeyID when
	// that is set, else SSE-S3 (AES256).
	Encrypt  bool
	KMSKeyID string
	// UserAgent is added to the SDK's User-Agent. Empty adds nothing.
	UserAgent string

	// ChunkSize is the multipart part size, between MinChunkSize and
	// MaxChunkSize. Zero means DefaultChunkSize. Each fill holds one part
	// in memory; a body smaller than one part is sent with a single PUT.
	ChunkSize int64
	// StaleUploadAge, when > 0, makes the first successful Check start a
	// background sweep that aborts the multipart uploads under RootDir
	// (the whole bucket when RootDir is empty) begun longer ago than this:
	// the leftovers of a process that died mid-upload, which S3 would
	// otherwise keep (and bill) forever. Zero disables the sweep.
	StaleUploadAge time.Duration

	// AccessFlushInterval is how often the reads this process counted
	// (each object's last access and hits, see access.go) are written to
	// the bucket, in one object of its own, and how long the other
	// replicas' counts read from the bucket are reused. Zero means
	// DefaultAccessFlushInterval.
	AccessFlushInterval time.Duration

	// HTTPClient sends the SDK's requests. Nil means the SDK's default
	// client (with SkipVerify applied).
	HTTPClient *http.Client
	// Logger receives the sweep's report and the warnings of writers whose
	// metadata could not be completed (storage.InfoUpdater). Nil discards
	// them.
	Logger *slog.Logger
}

// ErrInvalidURL is wrapped by every ParseURL error.
var ErrInvalidURL = errors.New("invalid s3 storage URL")

// urlError reports a problem with the storage URL. Its text names
// parameters, never their values, because the URL carries credentials.
func urlError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidURL, fmt.Sprintf(format, args...))
}

// params lists the query parameters ParseURL accepts. Those that have no
// effect here (loglevel) are still accepted, so that existing storage URLs
// that set them keep working instead of being refused.
var params = []string{
	"regionendpoint", "signendpoint", "forcepathstyle", "secure", "skipverify",
	"chunksize", "rootdirectory", "storageclass", "sessiontoken", "objectacl",
	"encrypt", "keyid", "useragent", "usedualstack", "accelerate", "loglevel",
}

// ParseURL reads a storage URL of the original httpmirror's form, so that
// existing configurations work unchanged:
//
//	s3://ACCESS:SECRET@BUCKET.REGION/ROOTDIR?regionendpoint=URL&forcepathstyle=true&...
//
// The bucket is the host up to its first dot and the region the rest;
// ROOTDIR (or the rootdirectory parameter) is a key prefix. Credentials
// containing '/', '@' or ':' must be percent-encoded. Errors never contain
// the URL's credentials. The sweep of stale uploads is on
// (DefaultStaleUploadAge).
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, credentials included.
		var ee url.EscapeError
		if errors.As(err, &ee) {
			return Config{}, urlError("bad percent-encoding")
		}
		return Config{}, urlError("not a URL")
	}
	if u.Scheme != "s3" {
		return Config{}, urlError("scheme must be s3")
	}
	if u.Opaque != "" {
		return Config{}, urlError("want s3://ACCESS:SECRET@BUCKET.REGION/ROOTDIR")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, urlError("bad query string")
	}
	for k := range q {
		if !slices.Contains(params, k) {
			return Config{}, urlError("unknown parameter %q (known: %s)", k, strings.Join(params, ", "))
		}
	}
	cfg := Config{StaleUploadAge: DefaultStaleUploadAge}

	if u.Port() != "" {
		return Config{}, urlError("the host is BUCKET.REGION; put the store's address in regionendpoint")
	}
	cfg.Bucket, cfg.Region, _ = strings.Cut(u.Hostname(), ".")
	if !validBucket(cfg.Bucket) {
		return Config{}, urlError("missing or invalid bucket name (want s3://ACCESS:SECRET@BUCKET.REGION/)")
	}
	if cfg.Region != "" && !validRegion(cfg.Region) {
		return Config{}, urlError("invalid region %q", cfg.Region)
	}

	if u.User != nil {
		cfg.AccessKey = u.User.Username()
		cfg.SecretKey, _ = u.User.Password()
		if cfg.AccessKey == "" || cfg.SecretKey == "" {
			return Config{}, urlError("credentials must be ACCESS:SECRET, both non-empty")
		}
	}
	cfg.SessionToken = q.Get("sessiontoken")
	if cfg.SessionToken != "" && cfg.AccessKey == "" {
		return Config{}, urlError("sessiontoken needs ACCESS:SECRET credentials")
	}

	root := u.Path
	if q.Has("rootdirectory") {
		root = q.Get("rootdirectory")
	}
	if cfg.RootDir, err = cleanRoot(root); err != nil {
		return Config{}, err
	}

	bools := map[string]*bool{
		"forcepathstyle": &cfg.ForcePathStyle,
		"skipverify":     &cfg.SkipVerify,
		"encrypt":        &cfg.Encrypt,
		"usedualstack":   &cfg.DualStack,
		"accelerate":     &cfg.Accelerate,
	}
	secure := true
	bools["secure"] = &secure
	for name, dst := range bools {
		if !q.Has(name) {
			continue
		}
		v, err := strconv.ParseBool(q.Get(name))
		if err != nil {
			return Config{}, urlError("%s must be true or false", name)
		}
		*dst = v
	}

	if cfg.Endpoint, err = endpoint(q.Get("regionendpoint"), secure, "regionendpoint"); err != nil {
		return Config{}, err
	}
	if cfg.SignEndpoint, err = endpoint(q.Get("signendpoint"), secure, "signendpoint"); err != nil {
		return Config{}, err
	}
	if cfg.Endpoint == "" && cfg.Region == "" {
		return Config{}, urlError("no region: use s3://ACCESS:SECRET@BUCKET.REGION/ or set regionendpoint")
	}

	if s := q.Get("chunksize"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return Config{}, urlError("chunksize must be a positive number of bytes")
		}
		// Existing URLs may ask for any size, but S3 refuses parts under
		// 5 MiB: a smaller one is raised rather than failing every large
		// upload.
		cfg.ChunkSize = min(max(n, MinChunkSize), MaxChunkSize)
	}
	cfg.StorageClass = q.Get("storageclass")
	if cfg.StorageClass == "NONE" {
		cfg.StorageClass = ""
	}
	cfg.ObjectACL = q.Get("objectacl")
	cfg.KMSKeyID = q.Get("keyid")
	cfg.UserAgent = q.Get("useragent")
	return cfg, nil
}

// endpoint normalizes an endpoint parameter: a bare host[:port] gets
// https, or http when secure is false.
func endpoint(s string, secure bool, name string) (string, error) {
	if s == "" {
		return "", nil
	}
	if !strings.Contains(s, "://") {
		scheme := "https://"
		if !secure {
			scheme = "http://"
		}
		s = scheme + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", urlError("%s must be an http or https URL of a host (no path, query or credentials)", name)
	}
	return u.Scheme + "://" + u.Host, nil
}

// cleanRoot turns a root directory into a key prefix without surrounding
// slashes, refusing segments that a store could resolve (".", "..") or
// that would make keys ambiguous (empty).
func cleanRoot(root string) (string, error) {
	root = strings.Trim(root, "/")
	if root == "" {
		return "", nil
	}
	for seg := range strings.SplitSeq(root, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.ContainsAny(seg, "\\\x00") || strings.Contains(seg, marker) {
			return "", urlError("invalid root directory")
		}
	}
	if len(root) > 512 {
		return "", urlError("root directory longer than 512 bytes")
	}
	return root, nil
}

// validBucket accepts S3's bucket naming rules (the URL's BUCKET.REGION
// form cannot carry the dots, a Config built in code can) and the
// underscores some stores allow.
func validBucket(s string) bool {
	if len(s) < 3 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return s[0] != '-' && s[len(s)-1] != '-'
}

func validRegion(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return len(s) <= 64
}

// validate checks a Config built by hand and fills in defaults.
func (c *Config) validate() error {
	if !validBucket(c.Bucket) {
		return fmt.Errorf("s3: invalid bucket name %q", c.Bucket)
	}
	root, err := cleanRoot(c.RootDir)
	if err != nil {
		return fmt.Errorf("s3: invalid RootDir")
	}
	c.RootDir = root
	if c.Region == "" {
		if c.Endpoint == "" {
			return errors.New("s3: no region and no endpoint")
		}
		c.Region = "us-east-1"
	}
	for _, e := range []string{c.Endpoint, c.SignEndpoint} {
		if e == "" {
			continue
		}
		if u, err := url.Parse(e); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("s3: endpoints must be http or https URLs")
		}
	}
	switch {
	case c.ChunkSize == 0:
		c.ChunkSize = DefaultChunkSize
	case c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize:
		return fmt.Errorf("s3: ChunkSize %d outside [%d, %d]", c.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return errors.New("s3: AccessKey and SecretKey go together")
	}
	return nil
}
