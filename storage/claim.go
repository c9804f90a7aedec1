package storage

import (
	"context"
	"errors"
)

var (
	// ErrClaimed is returned by Claimer.Claim when a claim of that name
	// exists already.
	ErrClaimed = errors.New("storage: claim held")

	// ErrClaimChanged is returned by Claimer.Swap and Claimer.Release when
	// the claim no longer has the version the caller named: another writer
	// replaced it, or it was removed.
	ErrClaimChanged = errors.New("storage: claim changed")
)

// MaxClaimSize bounds the data of one claim. Claims are leases and
// markers, not objects.
const MaxClaimSize = 4 << 10

// Claim is a small object kept by a Claimer, read back with its version.
type Claim struct {
	// Data is what the last successful Claim or Swap wrote.
	Data []byte
	// Version names that write. Every successful Claim and Swap gives the
	// claim a version never seen before under its name (S3 backends make
	// the content unique so that ETags differ even for equal data), so a
	// Swap or Release against a version cannot act on a later write that
	// happens to carry the same data.
	Version string
}

// Claimer is implemented by backends that keep small claim objects with
// conditional writes: create-if-absent and compare-and-swap. Replicas that
// share a store use claims as leases (package cluster) to agree on which of
// them fetches a file.
//
// Claims live in a namespace of their own. Whatever its name, a claim is
// never an object: Stat and Open do not see it, it is never served, and
// inventory, purge and eviction do not count it.
//
// Claim names are short tokens (see ValidateClaimName); callers derive
// them from keys with a hash.
type Claimer interface {
	// Claim creates the claim name holding data, unless one exists. It
	// returns the new claim, or an error matching ErrClaimed together
	// with the claim that exists (a zero Claim when it vanished before it
	// could be read).
	Claim(ctx context.Context, name string, data []byte) (Claim, error)
	// Swap replaces the claim name with data if its version is still
	// version, and returns the new claim. Otherwise it changes nothing and
	// returns an error matching ErrClaimChanged, together with the
	// current claim when there is one.
	Swap(ctx context.Context, name string, data []byte, version string) (Claim, error)
	// Release removes the claim name if its version is still version;
	// otherwise it changes nothing and returns an error matching
	// ErrClaimChanged.
	Release(ctx context.Context, name, version string) error
	// ReadClaim returns the claim name, or ErrNotFound.
	ReadClaim(ctx context.Context, name string) (Claim, error)
	// Claims returns the names of the claims that exist, for sweeping the
	// ones a crashed process left behind. A backend may stop after a
	// large number (S3: 100000).
	Claims(ctx context.Context) ([]string, error)
}

// ErrInvalidClaim is returned for a claim name that fails
// ValidateClaimName, or claim data larger than MaxClaimSize.
var ErrInvalidClaim = errors.New("storage: invalid claim name or data")

// ValidateClaimName reports whether name is a claim name every backend
// accepts: 1 to 128 ASCII letters, digits, '-', '_' and '.', not starting
// with '.'. Such a name is one path segment on every file system and one
// S3 key segment, and cannot be a hidden or temporary file.
func ValidateClaimName(name string) error {
	if name == "" || len(name) > 128 || name[0] == '.' {
		return ErrInvalidClaim
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return ErrInvalidClaim
		}
	}
	return nil
}

// ValidateClaim checks a claim name and the data written to it; backends
// call it first in Claim and Swap.
func ValidateClaim(name string, data []byte) error {
	if err := ValidateClaimName(name); err != nil {
		return err
	}
	if len(data) > MaxClaimSize {
		return ErrInvalidClaim
	}
	return nil
}

// UploadAborter is implemented by backends whose writers leave incomplete
// uploads behind when their process dies (S3's multipart uploads, which
// the bucket keeps, and bills, until they are aborted). Replicas that take
// over a crashed replica's fill (package cluster) abort what it left.
type UploadAborter interface {
	// AbortUploads aborts every incomplete upload of the object of key and
	// returns how many it aborted. Writers of key still running in other
	// processes fail at their Commit; their object is not stored.
	AbortUploads(ctx context.Context, key string) (int, error)
}
