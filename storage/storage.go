// Package storage defines the contract between httpmirror and the places it
// keeps mirrored objects. Each backend lives in its own subpackage
// (storage/file, storage/memory, ...) and is checked by the shared
// conformance suite in storage/storagetest.
//
// The contract is small on purpose: stat, open for reading, and create with an
// explicit commit. A writer publishes nothing until Commit returns; Cancel,
// Close without Commit, or a crash leave no visible object behind.
package storage

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"
)

var (
	// ErrNotFound is returned by Stat and Open when no committed object exists
	// under the key.
	ErrNotFound = errors.New("storage: object not found")

	// ErrInvalidKey is returned for a key that fails ValidateKey.
	ErrInvalidKey = errors.New("storage: invalid key")

	// ErrSizeMismatch is returned by Writer.Commit when the number of bytes
	// written differs from the size the caller declared.
	ErrSizeMismatch = errors.New("storage: size mismatch")

	// ErrNoSpace is returned by Create or Write when an object does not fit
	// within the store's size limit (it is larger than the limit, or every
	// other object is in use). It is the store's policy at work, not a
	// failure: the object is served without being cached.
	ErrNoSpace = errors.New("storage: object does not fit in the cache size limit")

	// ErrWriterFinished is returned by InfoUpdater.UpdateInfo, and by the
	// Commit of this module's backends, called after Commit, Cancel or
	// Close, which end a writer's object for good.
	ErrWriterFinished = errors.New("storage: writer already committed or cancelled")
)

// MaxKeyLength is the longest key any backend accepts. Keys are an upstream
// host plus a cleaned URL path, and request paths are bounded well below
// this by the HTTP layer.
const MaxKeyLength = 16 << 10

// Info describes a stored object: its length and the origin's response
// headers that a later hit must answer with.
type Info struct {
	// Key is the object's key.
	Key string
	// Size is the length of the body in bytes. It is -1 only while a fill of
	// unknown length is in progress; committed objects always have Size >= 0.
	Size int64
	// ETag is the origin's entity tag, verbatim (quotes and W/ included), or
	// empty when the origin sent none.
	ETag string
	// LastModified is the origin's Last-Modified time; zero when absent.
	LastModified time.Time
	// ContentType is the origin's Content-Type; empty when absent.
	ContentType string
	// Header holds other end-to-end response headers worth replaying on a
	// hit (for example Content-Disposition or X-Repo-Commit). May be nil.
	Header http.Header
	// StoredAt is when the object was committed or last revalidated.
	StoredAt time.Time
	// LastAccess is when the object was last read (opened for a client,
	// a peer or a fill), or when it was stored if it has not been read
	// since. Only listings (Lister) report it; zero means the backend
	// does not know.
	LastAccess time.Time
	// Hits counts the reads of the object the backend has recorded since
	// it was stored (see the backend for which reads count and how long
	// the count survives). Only listings report it; zero when unknown.
	Hits int64
}

// DigestHeader is the field of Info.Header in which a fill keeps the
// SHA-256 of an object's bytes (policy.DigestHeader, which says its form).
// Backends that index their objects keep it with the key, so that a
// listing can show it without reading the object.
const DigestHeader = "X-Httpmirror-Digest"

// Object is an open, committed object.
//
// Read and Seek cover exactly the object's body: Seek(0, io.SeekEnd) returns
// Size. Backends on local files also implement syscall.Conn so that the
// HTTP server can hand the copy to the kernel (sendfile), and io.ReaderAt.
// Objects whose whole body is in memory implement InMemory.
type Object interface {
	io.ReadSeekCloser
	// Info returns the object's metadata as it was when opened.
	Info() Info
}

// InMemory is implemented by Objects whose whole body is held in memory
// (the local-disk backend keeps small, hot objects there): a hit then
// needs no system call to read it.
type InMemory interface {
	// Bytes returns the whole body, which the caller must not modify. It
	// stays valid after Close.
	Bytes() []byte
}

// Writer receives the body of a new object.
//
// Nothing written is visible to Stat or Open until Commit succeeds, and a
// successful Commit replaces any previous object under the key atomically:
// readers that opened the old object keep reading it to its end. Close must
// be called exactly once after Commit or Cancel (or instead of them, which
// cancels); it releases the writer's resources.
type Writer interface {
	io.Writer
	// Written reports how many bytes have been written so far.
	Written() int64
	// Commit publishes the object with the metadata given to Create. If
	// that Size is >= 0 and differs from Written, Commit fails with
	// ErrSizeMismatch and publishes nothing; a negative Size becomes
	// Written.
	Commit(ctx context.Context) error
	// Cancel discards everything written. It is safe to call after a failed
	// Commit.
	Cancel(ctx context.Context) error
	// Close releases the writer, cancelling it if it was not committed.
	Close() error
}

// Backend stores objects by key.
type Backend interface {
	// Stat returns the metadata of the committed object under key, or
	// ErrNotFound.
	Stat(ctx context.Context, key string) (Info, error)
	// Open opens the committed object under key for reading, or returns
	// ErrNotFound.
	Open(ctx context.Context, key string) (Object, error)
	// Create starts a new object under key with the metadata info (whose
	// Key is ignored and whose Size is -1 when the length is not known
	// yet). The object becomes visible only when the returned Writer's
	// Commit succeeds.
	Create(ctx context.Context, key string, info Info) (Writer, error)
	// Delete removes the committed object under key. Deleting a missing
	// object is not an error.
	Delete(ctx context.Context, key string) error
}

// Redirector is implemented by backends that can hand clients a short-lived
// URL to fetch an object directly from the store (for example a presigned S3
// URL). An empty URL with a nil error means "serve the bytes yourself".
type Redirector interface {
	SignedURL(ctx context.Context, key, method string, expires time.Duration) (string, error)
}

// Spooler is implemented by Writers that can read back what has been written
// so far, while writing continues. The fill engine uses it to stream a
// partially written object to waiting clients without a second copy on
// disk. ReadAt is valid until Close.
type Spooler interface {
	io.ReaderAt
}

// FileSpooler is implemented by Spoolers whose bytes go to a local file:
// readers may then open the file themselves and send from it with
// sendfile. The file stays valid until Close.
type FileSpooler interface {
	Spooler
	SpoolFile() *os.File
}

// WriterAt is implemented by Writers that accept bytes at any offset, from
// several goroutines at once: a fill that downloads an object in parallel
// segments writes each where it belongs. Written then reports the end of
// the furthest byte written; the caller must have written every byte of
// the object before Commit.
type WriterAt interface {
	WriteAt(p []byte, off int64) (int, error)
}

// InfoUpdater is implemented by Writers whose object's metadata can be
// completed after Create: a digest of the body is known only once its last
// byte is written, while Create needs the metadata before the first (the
// S3 backend sends it when it starts a multipart upload).
type InfoUpdater interface {
	// UpdateInfo replaces the metadata the object is committed with by
	// info. info.Key and info.Size are ignored: the size stays what Create
	// was given (a negative one still becomes Written at Commit). A zero
	// StoredAt means the time of the commit, as it does for Create. The
	// last call before Commit wins; after Commit, Cancel or Close,
	// UpdateInfo changes nothing and returns ErrWriterFinished. The writer
	// keeps a copy of info.Header.
	UpdateInfo(info Info) error
}

// Checker is implemented by backends that can verify they are usable (the
// directory is writable, the bucket reachable). Readiness probes call it.
type Checker interface {
	Check(ctx context.Context) error
}

// ValidateKey reports whether key is acceptable to every backend: non-empty,
// valid UTF-8, at most MaxKeyLength bytes, free of control characters and
// backslashes, and made of non-empty path segments other than "." and "..".
// A trailing slash is allowed: it marks a directory-style URL, which is a
// different object from the name without it.
func ValidateKey(key string) error {
	if key == "" || len(key) > MaxKeyLength || !utf8.ValidString(key) {
		return ErrInvalidKey
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return ErrInvalidKey
		}
	}
	body := strings.TrimSuffix(key, "/")
	if body == "" || strings.HasPrefix(body, "/") {
		return ErrInvalidKey
	}
	for seg := range strings.SplitSeq(body, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return ErrInvalidKey
		}
	}
	return nil
}

// Stats describes how much a backend holds.
type Stats struct {
	// Bytes is the space used, objects being written included.
	Bytes int64 `json:"bytes"`
	// Objects is the number of committed objects.
	Objects int64 `json:"objects"`
	// Evictions counts objects removed to respect a size limit.
	Evictions int64 `json:"evictions"`
}

// StatsReporter is implemented by backends that know their size.
type StatsReporter interface {
	Stats() Stats
}

// Refresher is implemented by backends that can replace an object's
// metadata without the caller rewriting its body: after an origin confirms
// with 304 Not Modified that a stored object is current, its StoredAt and
// freshness headers are updated this way.
type Refresher interface {
	// Refresh replaces the metadata of the object under key with info,
	// provided the stored object still has info.Size and info.ETag;
	// otherwise (it was replaced or removed meanwhile) it returns
	// ErrNotFound and changes nothing. Readers of the object are not
	// disturbed.
	Refresh(ctx context.Context, key string, info Info) error
}

// ErrSeek is returned by an Object's Seek for an invalid whence or a
// negative resulting position.
var ErrSeek = errors.New("storage: invalid seek")

// SeekOffset computes the position io.Seeker.Seek moves to, for an object
// of size bytes whose current position is cur. Backends' Objects share it.
func SeekOffset(cur, size, offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = cur + offset
	case io.SeekEnd:
		abs = size + offset
	default:
		return 0, ErrSeek
	}
	if abs < 0 {
		return 0, ErrSeek
	}
	return abs, nil
}
