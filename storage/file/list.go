package file

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/httpmirror/httpmirror/storage"
)

// The storage capabilities the index gives.
var (
	_ storage.Lister        = (*Backend)(nil)
	_ storage.LargestLister = (*Backend)(nil)
)

// List implements storage.Lister, in key order; a page token holds the
// last key of the previous page (storage.PageToken). Each object's LastAccess is its last Open (its
// commit when never opened since) and Hits counts its Opens (Reread and
// Stat do not count) since it was first stored under its key: a new
// version of an object keeps the count, a delete (purge, eviction,
// expiry) ends it. Counts survive restarts with the index; a crash of the
// process loses at most the uses of the last minute of each object (see
// touchEvery), and a rebuild of the index (after a crash of the system,
// or a damaged index) starts them again at 0. The index holds the keys in order, so a page
// reads the entries it returns and one more, whatever the size of the
// cache, and the file of each (a stat; see checkListed). While the index
// is being built after a start (see Indexed), List waits for it, or for
// ctx to end: a listing must not leave out objects the index has not
// reached yet (a purge by prefix deletes what it lists).
func (b *Backend) List(ctx context.Context, prefix, token string, limit int) ([]storage.Info, string, error) {
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	if token != "" {
		var err error
		if token, err = storage.DecodePageToken(prefix, token); err != nil {
			return nil, "", err
		}
	}
	var out []listedRec
	next := ""
	for try := 0; ; try++ {
		if !b.ix.waitComplete(ctx) {
			return nil, "", ctx.Err()
		}
		b.ix.st.sync() // the commits and deletes that have returned
		out, next = out[:0], ""
		err := b.ix.st.view(func(tx *bolt.Tx) error {
			keys := tx.Bucket(bucketKeys)
			if keys == nil {
				return errIndexDamaged
			}
			c := keys.Cursor()
			p := []byte(prefix)
			start := p
			if token != "" {
				start = []byte(token)
			}
			k, v := c.Seek(start)
			if token != "" && k != nil && string(k) == token {
				k, v = c.Next()
			}
			for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
				b.ix.visits.Add(1)
				if len(out) == limit {
					next = out[len(out)-1].key
					break
				}
				if r, ok := decodeRec(v); ok {
					out = append(out, listedRec{string(k), r})
				}
			}
			return nil
		})
		if errors.Is(err, errIndexDamaged) && try < 2 {
			continue // rebuilt meanwhile: wait for it
		}
		if err != nil {
			return nil, "", err
		}
		if next != "" {
			next = storage.PageToken(prefix, next)
		}
		return b.checkListed(out), next, nil
	}
}

// listedRec is an object as the index lists it.
type listedRec struct {
	key string
	r   rec
}

// checkListed returns the objects of ls whose files are as the index
// says, or whose trailers check out, with what a listing shows of them.
// The files are the truth: one removed or damaged behind the index's back
// (by hand, or by the disk) is left out, and checked again in the
// background so that the index forgets it.
func (b *Backend) checkListed(ls []listedRec) []storage.Info {
	out := make([]storage.Info, 0, len(ls))
	for _, l := range ls {
		size, storedAt, digest := l.r.size, l.r.storedAt, l.r.digest
		p := b.ix.path(hexName(l.key))
		fi, err := os.Lstat(p)
		if err == nil && (fi.Size() != l.r.fileSize || l.r.ino != 0 && inode(fi) != l.r.ino) {
			var m meta
			b.ix.point("trailer")
			if m, err = readListed(p); err == nil && m.Key != l.key {
				err = errCorrupt
			}
			size, storedAt, digest = m.Size, m.StoredAt, indexedDigest(m.Header)
		}
		if err != nil {
			b.ix.st.checkLater(l.key)
			continue
		}
		// The uses the hot set has not told the index of yet count:
		// a listing shows every use, the index is written at most
		// once a minute per object.
		u := b.ix.hotPending(hexName(l.key))
		info := storage.Info{Key: l.key, Size: size, StoredAt: time.Unix(0, storedAt),
			LastAccess: time.Unix(0, max(l.r.used, u.t)), Hits: l.r.hits + u.n}
		if digest != "" {
			info.Header = http.Header{storage.DigestHeader: {digest}}
		}
		out = append(out, info)
	}
	return out
}

// readListed reads the trailer of the object file at path.
func readListed(path string) (meta, error) {
	f, err := os.Open(path)
	if err != nil {
		return meta{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return meta{}, err
	}
	return readMeta(f, fi.Size())
}

// Largest implements storage.LargestLister from the index's order of
// sizes: it reads n entries. While the index is being built after a
// start, the objects are the largest of those indexed so far, and
// complete is false.
func (b *Backend) Largest(ctx context.Context, n int) ([]storage.Info, bool, error) {
	b.ix.st.sync()
	complete := b.ix.isComplete()
	var out []listedRec
	err := b.ix.st.view(func(tx *bolt.Tx) error {
		keys, sizes := tx.Bucket(bucketKeys), tx.Bucket(bucketSize)
		if keys == nil || sizes == nil {
			return errIndexDamaged
		}
		c := sizes.Cursor()
		for k, v := c.Last(); k != nil && len(out) < n; k, v = c.Prev() {
			b.ix.visits.Add(1)
			if r, ok := decodeRec(keys.Get(v)); ok {
				out = append(out, listedRec{string(v), r})
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return b.checkListed(out), complete, nil
}

// Location implements storage.Locator: the object file's path.
func (b *Backend) Location(key string) (string, error) { return b.Path(key) }
