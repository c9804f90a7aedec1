package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/httpmirror/httpmirror/storage"
)

// errFinished is returned by Write, UpdateInfo and Commit on a writer that
// was already committed, cancelled or closed.
var errFinished = fmt.Errorf("s3: %w", storage.ErrWriterFinished)

type writerState int

const (
	open writerState = iota
	committed
	cancelled // by Cancel, Close, or a failed Commit
)

// abortTimeout bounds the abort of a multipart upload when the writer is
// closed without a context.
const abortTimeout = 30 * time.Second

var _ storage.InfoUpdater = (*writer)(nil)

// writer streams an object to S3 with at most one part in memory. It is
// not a storage.Spooler: the fill engine spools to a temporary file.
type writer struct {
	b        *Backend
	ctx      context.Context // Create's: the uploads run on it
	key      string
	okey     string
	info     storage.Info
	partSize int64

	mu       sync.Mutex // Close may race the fill goroutine's Commit
	state    writerState
	closed   bool
	err      error  // the first upload failure; later writes fail with it
	buf      []byte // the part being filled
	n        int64
	uploadID string
	parts    []types.CompletedPart
	// started is the metadata the multipart upload was created with;
	// Commit replaces it when UpdateInfo changed it since.
	started *s3.PutObjectInput
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != open || w.closed {
		return 0, errFinished
	}
	if w.err != nil {
		return 0, w.err
	}
	written := 0
	for len(p) > 0 {
		if int64(len(w.buf)) == w.partSize {
			if err := w.flushPart(); err != nil {
				w.err = err
				return written, err
			}
		}
		w.grow(len(p))
		m := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+m]
		p = p[m:]
		w.n += int64(m)
		written += m
	}
	return written, nil
}

// grow makes room in buf for more bytes without exceeding one part. A
// body of known size smaller than a part gets a buffer of exactly its size;
// a body of unknown size starts small and doubles, so that small bodies
// stay small in memory. Part-sized buffers come from the backend's pool.
func (w *writer) grow(want int) {
	if len(w.buf) < cap(w.buf) {
		return
	}
	var c int64
	switch {
	case w.buf == nil && w.info.Size >= 0:
		c = min(max(w.info.Size, 1), w.partSize)
	default:
		// Unknown size, or more bytes than declared (Commit will refuse
		// them, but Write accepts them like any other backend).
		c = min(max(2*int64(cap(w.buf)), int64(want), 64<<10), w.partSize)
	}
	var nb []byte
	if c == w.b.chunkSize {
		if bp, ok := w.b.bufs.Get().(*[]byte); ok {
			nb = (*bp)[:len(w.buf)]
		}
	}
	if nb == nil {
		nb = make([]byte, len(w.buf), c)
	}
	copy(nb, w.buf)
	w.buf = nb
}

// release returns the part buffer to the pool.
func (w *writer) release() {
	if int64(cap(w.buf)) == w.b.chunkSize {
		b := w.buf[:0]
		w.b.bufs.Put(&b)
	}
	w.buf = nil
}

// flushPart uploads the buffer as the next part, starting the multipart
// upload first if needed.
func (w *writer) flushPart() error {
	if len(w.parts) == maxParts {
		return fmt.Errorf("s3: %s: body of unknown size exceeds %d parts of %d bytes", w.okey, maxParts, w.partSize)
	}
	if w.uploadID == "" {
		// The upload fixes the metadata; StoredAt is pinned so that Commit
		// can tell whether UpdateInfo changed it since.
		if w.info.StoredAt.IsZero() {
			w.info.StoredAt = time.Now()
		}
		p := w.b.putInput(w.okey, w.info)
		out, err := w.b.client.CreateMultipartUpload(w.ctx, &s3.CreateMultipartUploadInput{
			Bucket:               p.Bucket,
			Key:                  p.Key,
			Metadata:             p.Metadata,
			ContentType:          p.ContentType,
			ContentDisposition:   p.ContentDisposition,
			ContentEncoding:      p.ContentEncoding,
			ContentLanguage:      p.ContentLanguage,
			CacheControl:         p.CacheControl,
			StorageClass:         p.StorageClass,
			ACL:                  p.ACL,
			ServerSideEncryption: p.ServerSideEncryption,
			SSEKMSKeyId:          p.SSEKMSKeyId,
		})
		if err != nil {
			return fmt.Errorf("s3: starting upload of %s: %w", w.okey, err)
		}
		w.uploadID = aws.ToString(out.UploadId)
		w.started = p
	}
	num := int32(len(w.parts) + 1)
	out, err := w.b.client.UploadPart(w.ctx, &s3.UploadPartInput{
		Bucket:        &w.b.bucket,
		Key:           &w.okey,
		UploadId:      &w.uploadID,
		PartNumber:    aws.Int32(num),
		Body:          bytes.NewReader(w.buf),
		ContentLength: aws.Int64(int64(len(w.buf))),
	})
	if err != nil {
		return fmt.Errorf("s3: uploading part %d of %s: %w", num, w.okey, err)
	}
	w.parts = append(w.parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
	w.buf = w.buf[:0]
	return nil
}

func (w *writer) Written() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// UpdateInfo implements storage.InfoUpdater. A body that fits in one part
// is sent with the updated metadata by Commit's PutObject. A larger one is a
// multipart upload, whose metadata S3 fixes when it is created: if
// UpdateInfo changed it since, Commit replaces it after completing the
// upload (see completeMeta), at the cost of one more request.
func (w *writer) UpdateInfo(info storage.Info) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != open || w.closed {
		return errFinished
	}
	info.Key, info.Size = w.key, w.info.Size
	if info.StoredAt.IsZero() {
		// Zero means the time of the commit, which a started upload has
		// pinned already (it is in its metadata).
		info.StoredAt = w.info.StoredAt
	}
	info.Header = info.Header.Clone()
	w.info = info
	return nil
}

// Commit publishes the object: one PutObject for a body that fits in a
// part, else the last part and CompleteMultipartUpload (and, when
// UpdateInfo changed the metadata the upload was created with, a copy of
// the object onto itself that replaces it: see completeMeta). Any failure
// to publish aborts the upload, so a failed Commit leaves nothing behind.
func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != open || w.closed {
		return errFinished
	}
	err := w.commit(ctx)
	if err != nil {
		w.cancelLocked(ctx)
		return err
	}
	w.state = committed
	w.release()
	return nil
}

func (w *writer) commit(ctx context.Context) error {
	if w.err != nil {
		return w.err
	}
	if w.info.Size >= 0 && w.info.Size != w.n {
		return fmt.Errorf("%w: wrote %d bytes, expected %d", storage.ErrSizeMismatch, w.n, w.info.Size)
	}
	w.info.Size = w.n
	if w.uploadID == "" {
		in := w.b.putInput(w.okey, w.info)
		in.Body = bytes.NewReader(w.buf)
		in.ContentLength = aws.Int64(w.n)
		if _, err := w.b.client.PutObject(ctx, in); err != nil {
			return fmt.Errorf("s3: putting %s: %w", w.okey, err)
		}
		return nil
	}
	// The uploads of Write ran on Create's context; the last part runs on
	// Commit's, like the completion.
	w.ctx = ctx
	if len(w.buf) > 0 {
		if err := w.flushPart(); err != nil {
			return err
		}
	}
	out, err := w.b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &w.b.bucket,
		Key:             &w.okey,
		UploadId:        &w.uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: w.parts},
	})
	if err != nil {
		return fmt.Errorf("s3: completing upload of %s: %w", w.okey, err)
	}
	w.completeMeta(ctx, aws.ToString(out.ETag))
	return nil
}

// completeMeta gives the object that a multipart upload just published,
// whose S3 ETag is etag, the metadata of the last UpdateInfo, when that
// differs from what the upload was created with. It does not fail the
// commit: the object is published, whole and correct, and only the
// metadata given after Create (a digest of the body) would be missing, so
// a failure is logged at WARN and the object keeps the metadata it was
// created with. The replacement is conditional on etag (see replaceMeta):
// an object another writer published meanwhile is left alone, with its
// own metadata, and that is no failure. Objects over 5 GiB, which one
// CopyObject cannot copy, keep the metadata they were created with, with
// one WARN for the backend's life: a multipart copy (UploadPartCopy) could
// copy them, but its completion cannot be made conditional on the object
// still being ours on every store, so it could put this version back over
// one that another writer published meanwhile.
//
// Until the replacement is done, readers see the object with the metadata
// it was created with.
func (w *writer) completeMeta(ctx context.Context, etag string) {
	if w.started == nil || sameMeta(w.started, w.b.putInput(w.okey, w.info)) {
		return
	}
	if etag == "" {
		// Without the completed ETag, the copy could clobber another
		// writer's object.
		w.b.log.Warn("s3: completed upload returned no ETag; metadata left as the upload started", "key", w.key)
		return
	}
	err := w.b.replaceMeta(ctx, w.okey, w.info, etag)
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrNotFound):
		w.b.log.Debug("s3: object replaced before its metadata was completed", "key", w.key)
	case errors.Is(err, errCopyTooLarge):
		w.b.bigMetaWarning.Do(func() {
			w.b.log.Warn("s3: objects over 5 GiB keep the metadata their upload started with (a digest known at the end is not recorded); logged once", "key", w.key, "bytes", w.n)
		})
	default:
		w.b.log.Warn("s3: object stored, but its metadata could not be completed", "key", w.key, "err", err)
	}
}

// sameMeta reports whether a and b give an object the same metadata.
func sameMeta(a, b *s3.PutObjectInput) bool {
	return maps.Equal(a.Metadata, b.Metadata) &&
		aws.ToString(a.ContentType) == aws.ToString(b.ContentType) &&
		aws.ToString(a.ContentDisposition) == aws.ToString(b.ContentDisposition) &&
		aws.ToString(a.ContentEncoding) == aws.ToString(b.ContentEncoding) &&
		aws.ToString(a.ContentLanguage) == aws.ToString(b.ContentLanguage) &&
		aws.ToString(a.CacheControl) == aws.ToString(b.CacheControl)
}

// Cancel aborts the multipart upload, if one was started.
func (w *writer) Cancel(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cancelLocked(ctx)
}

func (w *writer) cancelLocked(ctx context.Context) error {
	if w.state != open {
		return nil
	}
	w.state = cancelled
	w.release()
	if w.uploadID == "" {
		return nil
	}
	_, err := w.b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: &w.b.bucket, Key: &w.okey, UploadId: &w.uploadID,
	})
	if err != nil && !isNoSuchUpload(err) {
		return fmt.Errorf("s3: aborting upload of %s: %w", w.okey, err)
	}
	return nil
}

// Close cancels the writer unless it was committed.
func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
	defer cancel()
	return w.cancelLocked(ctx)
}

// putInput returns the request that creates the object okey with the
// metadata info and the backend's storage options, without a body. The
// multipart upload copies its fields.
func (b *Backend) putInput(okey string, info storage.Info) *s3.PutObjectInput {
	if info.StoredAt.IsZero() {
		info.StoredAt = time.Now()
	}
	in := &s3.PutObjectInput{
		Bucket:             &b.bucket,
		Key:                &okey,
		Metadata:           map[string]string{metaKey: encodeMeta(info, b.hashedKey(okey, info.Key))},
		ContentType:        native(info.ContentType),
		ContentDisposition: nativeHeader(info.Header, "Content-Disposition"),
		ContentEncoding:    nativeHeader(info.Header, "Content-Encoding"),
		ContentLanguage:    nativeHeader(info.Header, "Content-Language"),
		CacheControl:       nativeHeader(info.Header, "Cache-Control"),
	}
	if b.cfg.StorageClass != "" {
		in.StorageClass = types.StorageClass(b.cfg.StorageClass)
	}
	if b.cfg.ObjectACL != "" {
		in.ACL = types.ObjectCannedACL(b.cfg.ObjectACL)
	}
	if b.cfg.Encrypt {
		in.ServerSideEncryption = types.ServerSideEncryptionAes256
		if b.cfg.KMSKeyID != "" {
			in.ServerSideEncryption = types.ServerSideEncryptionAwsKms
			in.SSEKMSKeyId = aws.String(b.cfg.KMSKeyID)
		}
	}
	return in
}
