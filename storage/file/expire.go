package file

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

var _ storage.Expirer = (*Backend)(nil)

// expireBatch bounds the objects one transaction of the applier removes
// for Expire, so that commits and deletes waiting behind it are not held
// for long.
const expireBatch = 512

// Expire implements storage.Expirer from the index's order of last use:
// it reads the entries of the objects it removes, and of those it leaves
// because they are being read or kept, and stops at the first one used
// since cutoff, whatever the size of the cache. The hot set's uses the
// index has not been told of yet count (such an object is moved to its
// place in the order instead). Like eviction it needs the whole index:
// while the index is being built after a start it waits, or returns
// ctx's error.
func (b *Backend) Expire(ctx context.Context, cutoff time.Time, keep func(key string) bool) (int, error) {
	if !b.ix.waitComplete(ctx) {
		return 0, ctx.Err()
	}
	total := 0
	for ctx.Err() == nil {
		o := &op{kind: opExpire, cutoff: cutoff.UnixNano(), keep: keep}
		if err := b.ix.st.do(o); err != nil {
			return total, err
		}
		total += o.expired
		if !o.more {
			return total, nil
		}
	}
	return total, ctx.Err()
}

// expire removes up to expireBatch objects last used before o.cutoff that
// nobody is reading and o.keep does not keep, through the path eviction
// takes (remove), and records in o how many it removed and whether more
// may be idle.
func (a *applying) expire(o *op) error {
	if o.tried {
		// A try that failed removed these files already.
		for _, v := range o.victims {
			if _, err := a.forget(v); err != nil {
				return err
			}
		}
		return nil
	}
	o.tried = true
	if !a.complete {
		return nil // rebuilt meanwhile: the next sweep sees it whole
	}
	n := 0
	victims, err := a.removeOldest(
		func(k []byte) bool { return n >= expireBatch || int64(binary.BigEndian.Uint64(k)) >= o.cutoff },
		func(key string, _ rec) bool {
			if o.keep != nil && o.keep(key) {
				return false
			}
			n++
			return true
		})
	if err != nil {
		return err
	}
	o.more = n == expireBatch
	for _, v := range victims {
		o.victims = append(o.victims, v)
		removed, err := a.forget(v)
		if err != nil {
			return err
		}
		if removed {
			o.expired++
		}
	}
	return nil
}

// forget drops the index entries of v, an object Expire removed, and
// reports whether its file was removed (not found gone already).
func (a *applying) forget(v victim) (bool, error) {
	if v.j != nil {
		a.entries = append(a.entries, v.j)
	}
	r, ok := a.get(v.key)
	if !ok {
		return false, nil
	}
	return v.removed, a.unlink(v.key, r)
}
