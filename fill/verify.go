package fill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/httpmirror/httpmirror/policy"
	"github.com/httpmirror/httpmirror/storage"
)

// ErrDigestMismatch is matched by the error of a fill whose bytes do not
// hash to a digest published for the object (see Options.Digests): nothing
// is stored, and every reader's transfer fails, none ends cleanly.
var ErrDigestMismatch = errors.New("fill: digest mismatch")

// DigestError is a digest mismatch: the digest published (by Source, with
// algorithm Alg) and what the bytes hash to.
type DigestError struct {
	Alg, Source   string
	Expected, Got []byte
}

func (e *DigestError) Error() string {
	return fmt.Sprintf("%s digest from %s does not match: expected %x, got %x", e.Alg, e.Source, e.Expected, e.Got)
}

// Is makes errors.Is(err, ErrDigestMismatch) true.
func (e *DigestError) Is(target error) bool { return target == ErrDigestMismatch }

// verifier hashes an object's bytes, in order, once each: the SHA-256 kept
// with the stored object (policy.DigestHeader), and every digest published
// for it. It is fed by the same writes as the spool: the body's chunks as
// they arrive, or, for a segmented fill, the object's prefix as it grows
// (see follow).
type verifier struct {
	sha    hash.Hash // nil when the SHA-256 is needed neither to keep nor to check
	checks []check
}

// check is one published digest and the hash that checks it (nil: the
// verifier's SHA-256).
type check struct {
	exp policy.Expected
	h   hash.Hash
}

// newVerifier returns the verifier of a fill whose object is stored (keep)
// or not, for the digests exp published for it; nil when there is nothing
// to compute.
func newVerifier(exp []policy.Expected, keep bool) *verifier {
	v := &verifier{}
	if keep {
		v.sha = sha256.New()
	}
	for _, e := range exp {
		if e.Alg == "sha-256" {
			if v.sha == nil {
				v.sha = sha256.New()
			}
			v.checks = append(v.checks, check{exp: e})
			continue
		}
		if h := policy.NewHash(e.Alg); h != nil {
			v.checks = append(v.checks, check{exp: e, h: h})
		}
	}
	if v.sha == nil && len(v.checks) == 0 {
		return nil
	}
	return v
}

// checking reports whether v checks a published digest: then the fill holds
// its readers' last byte until the verdict.
func (v *verifier) checking() bool { return v != nil && len(v.checks) > 0 }

func (v *verifier) Write(p []byte) (int, error) {
	if v.sha != nil {
		v.sha.Write(p)
	}
	for _, c := range v.checks {
		if c.h != nil {
			c.h.Write(p)
		}
	}
	return len(p), nil
}

// verdict returns the SHA-256 of the bytes written (nil when not computed)
// and a *DigestError for the first published digest they do not match, in
// the order of trust the digests were given in.
func (v *verifier) verdict() ([]byte, error) {
	var sum []byte
	if v.sha != nil {
		sum = v.sha.Sum(nil)
	}
	for _, c := range v.checks {
		got := sum
		if c.h != nil {
			got = c.h.Sum(nil)
		}
		if !bytes.Equal(got, c.exp.Sum) {
			return sum, &DigestError{Alg: c.exp.Alg, Source: c.exp.Source, Expected: c.exp.Sum, Got: got}
		}
	}
	return sum, nil
}

// follow feeds the object's bytes, in order, to the verifier v (when not
// nil) and, when the storage writer cannot take bytes at offsets (feed),
// to the storage writer, reading each part of the prefix back from the
// spool as the segments complete it. It returns once all size bytes are
// fed, or the fill failed (which says why), or the spool cannot be read
// (ErrSpool).
func (s *segmenter) follow(v *verifier, feed bool) error {
	sw, f := s.sw, s.f
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	var fed int64
	for fed < s.size {
		n, err := f.arrivedFrom(s.ctx, fed)
		if err != nil {
			return nil // the fill failed; it says why
		}
		for fed < n {
			m := min(int64(len(*buf)), n-fed)
			sw.mu.RLock()
			file, w := sw.file, sw.w
			sw.mu.RUnlock()
			if feed && w == nil {
				feed = false // the writer failed: no longer stored
				if v == nil {
					return nil
				}
			}
			var src io.ReaderAt = file
			if file == nil {
				src = w.(storage.Spooler) // the storage writer is the spool
			}
			if _, err := src.ReadAt((*buf)[:m], fed); err != nil {
				return fmt.Errorf("%w: reading the spool: %w", ErrSpool, err)
			}
			if v != nil {
				v.Write((*buf)[:m])
			}
			if feed {
				if _, err := w.Write((*buf)[:m]); err != nil {
					sw.dropFed(f, err)
					feed = false
					if v == nil {
						return nil
					}
				}
			}
			fed += m
		}
	}
	return nil
}

// Checked reports whether the fill's bytes are checked against a
// published digest: a reader must not complete them from elsewhere.
func (f *Fill) Checked() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.holdLast
}

// arrivedFrom is Available for the fill itself (asFollower): it waits for
// the byte at off without holding back the last one (see holdLast), so
// that what follows the prefix (the verifier, the feed of a storage
// writer) reaches the end, and without asking for the byte ahead of the
// segments' order: it follows the prefix where the segments complete it.
func (f *Fill) arrivedFrom(ctx context.Context, off int64) (int64, error) {
	return f.available(ctx, off, asFollower)
}
