package fill

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

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
	// late, when not nil, brings more digests to check (wholeDigests'),
	// which arrive before the first byte is written (see settle).
	late <-chan []policy.Expected
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
	v.add(exp)
	if v.sha == nil && len(v.checks) == 0 {
		return nil
	}
	return v
}

// add makes v check the digests exp too, those it does not already check;
// no byte may have been written yet.
func (v *verifier) add(exp []policy.Expected) {
	for _, e := range exp {
		if slices.ContainsFunc(v.checks, func(c check) bool {
			return c.exp.Alg == e.Alg && bytes.Equal(c.exp.Sum, e.Sum)
		}) {
			continue
		}
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
}

// settle waits for the digests that arrive late (see late), and checks
// them too; it is called before the first byte is written.
func (v *verifier) settle() {
	if v != nil && v.late != nil {
		v.add(<-v.late)
		v.late = nil
	}
}

// checking reports whether v checks a published digest, or may (late):
// then the fill holds its readers' last byte until the verdict.
func (v *verifier) checking() bool { return v != nil && (len(v.checks) > 0 || v.late != nil) }

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

// behind returns a writer that feeds v on a goroutine of its own, so that
// a body copied by one goroutine is hashed beside it rather than between
// its reads, and the function that waits for that goroutine to finish,
// after which v's verdict may be taken. Each write is copied into a
// buffer of the pool (bufSize at most, as pump's are); at most a few
// chunks wait.
func (v *verifier) behind() (io.Writer, func()) {
	ch := make(chan *[]byte, 2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range ch {
			v.Write(*b)
			*b = (*b)[:cap(*b)] // whole again for the pool's other users
			bufPool.Put(b)
		}
	}()
	w := writerFunc(func(p []byte) (int, error) {
		for rest := p; len(rest) > 0; {
			b := bufPool.Get().(*[]byte)
			m := copy(*b, rest)
			*b = (*b)[:m]
			ch <- b
			rest = rest[m:]
		}
		return len(p), nil
	})
	return w, func() {
		close(ch)
		<-done
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

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
// spool as the segments complete it.
func (s *segmenter) follow(v *verifier, feed bool) error {
	return follow(s.ctx, s.f, s.sw, s.size, v, feed)
}

// follow feeds the first size bytes of f's object, in order, to the
// verifier v (when not nil) and, when feed is set, to sw's storage writer,
// reading each part of the prefix back from the spool as it grows: the
// prefix of a segmented fill, or of a fill that took another party's
// fetch over (see spoolWriter.store). It returns once all size bytes are
// fed, or the fill failed or ctx ended (the fill says why), or the spool
// cannot be read (ErrSpool). A writer that fails is dropped: the object
// is not stored.
func follow(ctx context.Context, f *Fill, sw *spoolWriter, size int64, v *verifier, feed bool) error {
	v.settle()
	buf := bufPool.Get().(*[]byte)
	defer bufPool.Put(buf)
	var fed int64
	for fed < size {
		n, err := f.arrivedFrom(ctx, fed)
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
			switch {
			case sw.mem != nil:
				src = sw.mem
			case file == nil:
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

// verified lets readers take the last byte once the bytes matched every
// digest checked: what follows (the commit, its sync) changes none of
// them, and a client's response need not wait for it.
func (f *Fill) verified() {
	f.mu.Lock()
	f.holdLast = false
	f.wakeLocked()
	f.mu.Unlock()
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
