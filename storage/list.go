package storage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"
)

// DefaultListLimit is the page size of Lister.List when the caller asks for
// none.
const DefaultListLimit = 1000

// ErrInvalidToken is returned by Lister.List for a page token it did not
// issue.
var ErrInvalidToken = errors.New("storage: invalid list token")

// PageToken returns an opaque page token that carries pos, the position
// a backend resumes its listing of prefix at (the last key of the page,
// say). The token holds a short checksum of prefix and pos, so that
// DecodePageToken tells a token the same listing issued from garbage, a
// hand-edited token or one of another prefix: an operator who pastes the
// wrong string gets ErrInvalidToken, not a wrong or empty page. The
// checksum is no secret: a token names a position, it grants nothing.
func PageToken(prefix, pos string) string {
	sum := tokenSum(prefix, pos)
	return base64.RawURLEncoding.EncodeToString(append(sum[:tokenSumLen:tokenSumLen], pos...))
}

// DecodePageToken returns the position of a token PageToken made for
// prefix, and ErrInvalidToken for any other string.
func DecodePageToken(prefix, token string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) < tokenSumLen {
		return "", ErrInvalidToken
	}
	pos := string(raw[tokenSumLen:])
	if sum := tokenSum(prefix, pos); !bytes.Equal(sum[:tokenSumLen], raw[:tokenSumLen]) {
		return "", ErrInvalidToken
	}
	return pos, nil
}

// tokenSumLen is how many bytes of checksum a page token carries: one
// garbage string in four billion passes for a token.
const tokenSumLen = 4

func tokenSum(prefix, pos string) [sha256.Size]byte {
	return sha256.Sum256([]byte(prefix + "\x00" + pos))
}

// Lister is implemented by backends that can enumerate their committed
// objects: the inventory an operator browses, and what a purge by prefix
// deletes.
type Lister interface {
	// List returns up to limit committed objects whose keys start with
	// prefix (a plain string prefix: "a/b" matches "a/bc"), beginning at
	// the page named by token ("" for the first page), and the token of
	// the next page, "" once the listing is complete. A page may hold
	// fewer than limit objects even when more follow. Every object is
	// listed once per listing; objects committed or deleted while it runs
	// may or may not appear. Each Info has at least Key, Size and
	// StoredAt (the store's own modification time on backends that do not
	// keep StoredAt in their listing); the other fields may be empty, Stat
	// has them. The order is the backend's: key order on local disk and
	// in memory, object-key order on S3. limit <= 0 means
	// DefaultListLimit. A token this backend did not issue for the same
	// prefix gives ErrInvalidToken (backends make theirs with PageToken,
	// so that garbage is told from a token).
	List(ctx context.Context, prefix, token string, limit int) (objects []Info, next string, err error)
}

// Locator is implemented by backends that can say where they keep the
// object of a key, so that an operator can find it by hand: a file path on
// local disk, an s3://bucket/object URL on S3. The object need not exist.
type Locator interface {
	Location(key string) (string, error)
}

// LargestLister is implemented by backends that keep their objects in
// order of size, so that the largest can be named without reading the
// whole listing (the local disk backend's index).
type LargestLister interface {
	// Largest returns up to n of the largest committed objects, largest
	// first, each with at least Key, Size and StoredAt. complete is false
	// when the backend does not know all its objects yet (it is still
	// indexing them after a start): the objects are then the largest of
	// those it knows.
	Largest(ctx context.Context, n int) (objects []Info, complete bool, err error)
}

// Rereader is implemented by backends that keep copies of objects beside
// their medium (the local disk backend holds small bodies in memory).
// Reread opens the object as the medium holds it, body and metadata,
// without using or changing those copies, and without counting as a use
// of the object: a verify job reads objects this way, so that it checks
// what is stored and leaves the eviction order alone.
type Rereader interface {
	Reread(ctx context.Context, key string) (Object, error)
}

// Expirer is implemented by backends that can remove the objects nobody
// has read for a while (httpmirror's --max-idle), at a cost in proportion
// to what they remove where their index keeps an order of last access.
type Expirer interface {
	// Expire removes committed objects whose last access (see
	// Info.LastAccess: the time they were stored when never read) is
	// before cutoff, and returns how many it removed. It leaves alone
	// the objects open for reading in this process and those for which
	// keep (when not nil) reports true, such as objects a fill in
	// progress uses. An access later than the time it is run counts as
	// now: a clock set back makes nothing idle. Expire stops early, with
	// ctx's error, when ctx ends; what it removed so far stays removed.
	Expire(ctx context.Context, cutoff time.Time, keep func(key string) bool) (int, error)
}

// Walk calls fn for every object l lists under prefix, a page at a time
// (DefaultListLimit each), for at most maxPages pages. It reports whether
// the listing ended within them, and stops at the first error of List or
// fn, which it returns.
func Walk(ctx context.Context, l Lister, prefix string, maxPages int, fn func(Info) error) (complete bool, err error) {
	token := ""
	for range maxPages {
		objs, next, err := l.List(ctx, prefix, token, DefaultListLimit)
		if err != nil {
			return false, err
		}
		for _, o := range objs {
			if err := fn(o); err != nil {
				return false, err
			}
		}
		if token = next; token == "" {
			return true, nil
		}
	}
	return false, nil
}
