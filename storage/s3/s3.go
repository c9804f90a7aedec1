// Package s3 is the storage backend for S3-compatible object stores: AWS
// S3, MinIO, Ceph RGW, Cloudflare R2, versitygw and others.
//
// # Objects
//
// An object is stored under RootDir + "/" + key, with three exceptions that
// keep the mapping one-to-one and every key storable (see objectKey):
// directory-style keys "a/b/" become "a/b~~dir"; keys containing "~~",
// longer than S3's 1024-byte limit or with a path segment over 255 bytes
// become "~~sha256/<h[:2]>/<h>" with h the hex SHA-256 of the key.
//
// The origin's ETag, Last-Modified, Content-Type and kept headers travel
// as one user-metadata entry (x-amz-meta-httpmirror, percent-encoded
// JSON), so Stat and Open return exactly what Create was given. Content-Type,
// Content-Disposition, Content-Encoding, Content-Language and Cache-Control
// are also set as the object's own headers, which S3 returns to clients
// that follow a presigned URL.
//
// # Writing
//
// A Writer keeps at most one part (Config.ChunkSize, 16 MiB by default) in
// memory. A body that fits in one part is sent with a single PutObject at
// Commit; a larger one goes up as a multipart upload, one part whenever
// the buffer fills, completed at Commit. A known size larger than 10000
// parts raises the part size for that object, so objects up to S3's 5 TiB
// limit work; a body of unknown size is limited to 10000 parts. Both S3
// operations that publish (PutObject and CompleteMultipartUpload) are
// atomic: nothing is visible before Commit, and readers never see a torn
// object. Cancel, Close without Commit and a failed Commit abort the
// multipart upload. Uploads orphaned by a crash are aborted by a sweep
// that the first successful Check starts when Config.StaleUploadAge is set.
//
// Writers implement storage.InfoUpdater. A single PutObject carries the
// updated metadata. A multipart upload's metadata is fixed when it is
// created, so when it changed since, Commit copies the completed object
// onto itself with the new metadata (one CopyObject, conditional on the
// completed object's S3 ETag); a failure of that copy is logged and the
// object keeps its first metadata. Objects over 5 GiB always keep it.
//
// # Reading
//
// Open fetches the metadata (HEAD); the returned Object downloads lazily
// with ranged GETs, starting a new one only when a Read follows a Seek, so
// http.ServeContent answers HEAD, 304 and ranges without downloading more
// than it sends. Reads are conditional on the S3 ETag seen at Open: if the
// object is replaced, a later range fails instead of mixing two versions.
// A GET body that breaks is resumed where it stopped, up to three times.
//
// Backend implements storage.Redirector (presigned GET and HEAD URLs,
// written for Config.SignEndpoint when set), storage.Checker,
// storage.Lister (ListObjectsV2 under RootDir; the keys of objects stored
// under hashed names are recorded in their metadata entry) and
// storage.Locator.
package s3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/httpmirror/httpmirror/storage"
)

const (
	// maxParts is S3's limit on the parts of one multipart upload.
	maxParts = 10000
	// maxObjectSize is S3's limit on an object's size.
	maxObjectSize = 5 << 40
	// maxLinkLifetime is the longest validity of a SigV4 presigned URL.
	maxLinkLifetime = 7 * 24 * time.Hour
)

// Backend stores objects in an S3 bucket.
type Backend struct {
	client    *s3.Client
	presign   *s3.PresignClient
	bucket    string
	prefix    string // RootDir + "/", or empty
	chunkSize int64
	copyLimit int64 // the largest object replaceMeta copies: maxCopySize
	cfg       Config
	log       *slog.Logger
	bufs      sync.Pool // *[]byte of cap chunkSize

	bigMetaWarning sync.Once // the metadata of a large upload was not completed

	acc *accessLog // the reads counted (access.go)

	sweepMu   sync.Mutex
	sweeping  bool          // a sweep was started (by the first good Check)
	closed    bool          // Close was called: start no sweep
	stopSweep func()        // cancels the sweep
	sweepDone chan struct{} // closed when the sweep ends
}

var (
	_ storage.Backend    = (*Backend)(nil)
	_ storage.Redirector = (*Backend)(nil)
	_ storage.Checker    = (*Backend)(nil)
	_ storage.Lister     = (*Backend)(nil)
	_ storage.Locator    = (*Backend)(nil)
)

// New returns a backend for the bucket cfg names. It sends no request to
// the store; Check verifies the bucket.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(cfg.Region)}
	if cfg.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)))
	}
	if cfg.SkipVerify && cfg.HTTPClient == nil {
		opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		})))
	}
	if cfg.UserAgent != "" {
		opts = append(opts, config.WithAppID(cfg.UserAgent))
	}
	// The standard chain: environment, shared files, then container and
	// instance roles; static credentials from the URL come first.
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: loading AWS configuration: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		if cfg.HTTPClient != nil {
			// Set here, not in LoadDefaultConfig, which refuses a plain
			// *http.Client when AWS_CA_BUNDLE is set.
			o.HTTPClient = cfg.HTTPClient
		}
		o.UsePathStyle = cfg.ForcePathStyle
		o.UseAccelerate = cfg.Accelerate
		if cfg.DualStack {
			o.EndpointOptions.UseDualStackEndpoint = aws.DualStackEndpointStateEnabled
		}
		// Checksums only where S3 requires them: the trailing checksums the
		// SDK adds by default are not understood by many S3-compatible
		// stores. Bodies are protected by TLS or by the SigV4 payload hash.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	presign := s3.NewPresignClient(client, s3.WithPresignClientFromClientOptions(func(o *s3.Options) {
		if cfg.SignEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.SignEndpoint)
		}
	}))
	b := &Backend{
		client:    client,
		presign:   presign,
		bucket:    cfg.Bucket,
		chunkSize: cfg.ChunkSize,
		copyLimit: maxCopySize,
		cfg:       cfg,
		log:       cfg.Logger,
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if cfg.RootDir != "" {
		b.prefix = cfg.RootDir + "/"
	}
	b.acc = newAccessLog(b)
	return b, nil
}

// Close stops the sweep of stale uploads, if it still runs, and writes
// the reads counted since the last flush to the bucket (see access.go).
// Objects and writers stay usable.
func (b *Backend) Close() error {
	b.sweepMu.Lock()
	b.closed = true
	stop, done := b.stopSweep, b.sweepDone
	b.sweepMu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	return b.acc.close()
}

// Client returns the backend's S3 client.
func (b *Backend) Client() *s3.Client { return b.client }

// ObjectKey returns the S3 object key that holds the object under key.
func (b *Backend) ObjectKey(key string) (string, error) { return objectKey(b.prefix, key) }

// Check verifies that the bucket exists and the credentials reach it. The
// first Check that passes also starts the sweep of stale uploads
// (Config.StaleUploadAge): httpmirror checks its store at start, and a
// store that is not reachable is not worth sweeping.
func (b *Backend) Check(ctx context.Context) error {
	if _, err := b.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.bucket}); err != nil {
		return fmt.Errorf("s3: bucket %s not usable: %w", b.bucket, err)
	}
	b.startSweep()
	return nil
}

// Stat implements storage.Backend.
func (b *Backend) Stat(ctx context.Context, key string) (storage.Info, error) {
	info, _, err := b.head(ctx, key)
	return info, err
}

// head returns the metadata and the S3 ETag of the object under key.
func (b *Backend) head(ctx context.Context, key string) (storage.Info, string, error) {
	okey, err := b.ObjectKey(key)
	if err != nil {
		return storage.Info{}, "", err
	}
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &okey})
	if err != nil {
		if isNotFound(err) {
			return storage.Info{}, "", storage.ErrNotFound
		}
		return storage.Info{}, "", fmt.Errorf("s3: stat %s: %w", okey, err)
	}
	info := storage.Info{Key: key, Size: aws.ToInt64(out.ContentLength)}
	if !decodeMeta(out.Metadata[metaKey], &info) {
		// Written by another program (an older httpmirror sharing the
		// bucket, a CIDN runner, a person): serve it with what S3 knows.
		// The store's own ETag and modification time stand in for the
		// origin's validators, so that conditional and If-Range requests
		// of hits served through the mirror still work.
		info.ContentType = aws.ToString(out.ContentType)
		info.ETag = aws.ToString(out.ETag)
		if out.LastModified != nil {
			info.LastModified = out.LastModified.UTC()
		}
	}
	if info.StoredAt.IsZero() {
		info.StoredAt = aws.ToTime(out.LastModified)
	}
	return info, aws.ToString(out.ETag), nil
}

// Open implements storage.Backend. It sends a HEAD request; the object's
// bytes are fetched by its Reads.
func (b *Backend) Open(ctx context.Context, key string) (storage.Object, error) {
	info, etag, err := b.head(ctx, key)
	if err != nil {
		return nil, err
	}
	okey, _ := b.ObjectKey(key) // head validated key
	b.acc.opened(key)
	return &object{b: b, ctx: ctx, okey: okey, etag: etag, info: info, key: key}, nil
}

var _ storage.Rereader = (*Backend)(nil)

// Reread implements storage.Rereader: Open without counting a read of
// the object (see access.go), for verify jobs.
func (b *Backend) Reread(ctx context.Context, key string) (storage.Object, error) {
	info, etag, err := b.head(ctx, key)
	if err != nil {
		return nil, err
	}
	okey, _ := b.ObjectKey(key)
	return &object{b: b, ctx: ctx, okey: okey, etag: etag, info: info}, nil
}

// Delete implements storage.Backend.
func (b *Backend) Delete(ctx context.Context, key string) error {
	okey, err := b.ObjectKey(key)
	if err != nil {
		return err
	}
	if _, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.bucket, Key: &okey}); err != nil && !isNotFound(err) {
		return fmt.Errorf("s3: delete %s: %w", okey, err)
	}
	b.acc.deleted(key)
	return nil
}

// SignedURL implements storage.Redirector: a presigned GET or HEAD URL of
// the object under key, valid for expires (at most 7 days, SigV4's limit).
// It does not check that the object exists.
func (b *Backend) SignedURL(ctx context.Context, key, method string, expires time.Duration) (string, error) {
	okey, err := b.ObjectKey(key)
	if err != nil {
		return "", err
	}
	expires = min(max(expires, time.Second), maxLinkLifetime)
	opt := s3.WithPresignExpires(expires)
	switch method {
	case http.MethodGet:
		r, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &b.bucket, Key: &okey}, opt)
		if err != nil {
			return "", fmt.Errorf("s3: presigning %s: %w", okey, err)
		}
		return r.URL, nil
	case http.MethodHead:
		r, err := b.presign.PresignHeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.bucket, Key: &okey}, opt)
		if err != nil {
			return "", fmt.Errorf("s3: presigning %s: %w", okey, err)
		}
		return r.URL, nil
	}
	return "", fmt.Errorf("s3: cannot presign method %s", method)
}

// Create implements storage.Backend. It makes no request: a body that
// fits in one part is sent at Commit, a larger one starts a multipart
// upload when its first part is full. Uploads run on ctx.
func (b *Backend) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	okey, err := b.ObjectKey(key)
	if err != nil {
		return nil, err
	}
	if info.Size > maxObjectSize {
		return nil, fmt.Errorf("s3: object of %d bytes exceeds S3's 5 TiB limit", info.Size)
	}
	partSize := b.chunkSize
	if info.Size > partSize*maxParts {
		// Round up to a MiB so every part but the last has the same size
		// (some stores, R2 among them, require it).
		partSize = (info.Size + maxParts - 1) / maxParts
		partSize = (partSize + 1<<20 - 1) &^ (1<<20 - 1)
	}
	info.Key = key
	return &writer{b: b, ctx: ctx, key: key, okey: okey, info: info, partSize: partSize}, nil
}

// isNotFound reports whether err says the object does not exist. HEAD
// responses have no body, so a missing bucket looks the same; Check tells
// them apart.
func isNotFound(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return true
		case "NoSuchBucket":
			return false
		}
	}
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound && (ae == nil || ae.ErrorCode() != "NoSuchBucket")
}

// maxCopySize is the largest object a single CopyObject may copy.
const maxCopySize = 5 << 30

// errCopyTooLarge is returned by replaceMeta for an object CopyObject
// cannot copy.
var errCopyTooLarge = errors.New("s3: the metadata of objects over 5 GiB is not replaced")

// Refresh implements storage.Refresher with replaceMeta, conditional on the
// S3 ETag seen, so an object replaced meanwhile is left alone. Objects over
// 5 GiB are not refreshed (the caller revalidates them again next time).
func (b *Backend) Refresh(ctx context.Context, key string, info storage.Info) error {
	cur, etag, err := b.head(ctx, key)
	if err != nil {
		return err
	}
	if cur.Size != info.Size || cur.ETag != info.ETag {
		return storage.ErrNotFound
	}
	info.Key = key
	return b.replaceMeta(ctx, mustObjectKey(b, key), info, etag)
}

// replaceMeta replaces the metadata of the object okey, of info.Size bytes,
// by info: a server-side copy of the object onto itself with
// MetadataDirective REPLACE (S3 has no other way to change an object's
// metadata). The copy is conditional on the object's S3 ETag etag: when
// the object was replaced or removed meanwhile it changes nothing and
// returns storage.ErrNotFound. A single CopyObject copies at most 5 GiB:
// larger objects keep their metadata and errCopyTooLarge is returned.
//
// The copy is a new version of the object, with a new S3 ETag: readers
// that opened it before read on only until their next ranged GET, which
// is conditional on the old ETag and fails. On most stores the copy takes
// time in proportion to the object's size.
func (b *Backend) replaceMeta(ctx context.Context, okey string, info storage.Info, etag string) error {
	if info.Size > b.copyLimit {
		return errCopyTooLarge
	}
	put := b.putInput(okey, info)
	source := b.bucket + "/" + url.PathEscape(okey)
	_, err := b.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket:               put.Bucket,
		Key:                  put.Key,
		CopySource:           &source,
		CopySourceIfMatch:    &etag,
		MetadataDirective:    types.MetadataDirectiveReplace,
		Metadata:             put.Metadata,
		ContentType:          put.ContentType,
		ContentDisposition:   put.ContentDisposition,
		ContentEncoding:      put.ContentEncoding,
		ContentLanguage:      put.ContentLanguage,
		CacheControl:         put.CacheControl,
		StorageClass:         put.StorageClass,
		ACL:                  put.ACL,
		ServerSideEncryption: put.ServerSideEncryption,
		SSEKMSKeyId:          put.SSEKMSKeyId,
	})
	if err != nil {
		var pf interface{ ErrorCode() string }
		if errors.As(err, &pf) && pf.ErrorCode() == "PreconditionFailed" {
			return storage.ErrNotFound
		}
		return fmt.Errorf("s3: replacing the metadata of %s: %w", okey, err)
	}
	return nil
}

// mustObjectKey is ObjectKey for a key already validated.
func mustObjectKey(b *Backend, key string) string {
	k, _ := b.ObjectKey(key)
	return k
}
