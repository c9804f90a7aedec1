package file

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

// listed is what List reports of an object: its key, body size and
// StoredAt.
type listed struct {
	key      string
	size     int64
	storedAt time.Time
}

// listItem is an indexed object as List finds it: known tells whether l
// is filled in already.
type listItem struct {
	e     *entry
	l     listed
	known bool
}

// List implements storage.Lister, in key order; a page token is the last
// key of the previous page. Object files are named by the hash of their
// key, so the first page of a listing looks at every indexed object: the
// key of an object not used since start-up is read from its trailer the
// first time it is listed, and remembered (a few dozen bytes per object)
// for the listings that follow. The first listing of a large cache
// therefore reads one trailer per object; later ones only walk the index.
// The following pages of a listing come from the sorted snapshot its first
// page made, for up to a minute.
func (b *Backend) List(ctx context.Context, prefix, token string, limit int) ([]storage.Info, string, error) {
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	b.snapMu.Lock()
	defer b.snapMu.Unlock()
	if token == "" || b.snap.prefix != prefix || b.snap.items == nil || time.Since(b.snap.at) > time.Minute {
		items, err := b.listSorted(ctx, prefix)
		if err != nil {
			return nil, "", err
		}
		b.snap = listSnapshot{prefix: prefix, items: items, at: time.Now()}
	}
	items := b.snap.items
	i, _ := slices.BinarySearchFunc(items, token, func(l listed, t string) int {
		if l.key <= t {
			return -1
		}
		return 1
	})
	page := items[i:min(i+limit, len(items))]
	next := ""
	if i+limit < len(items) {
		next = page[len(page)-1].key
	} else {
		b.snap = listSnapshot{} // the listing is complete
	}
	out := make([]storage.Info, len(page))
	for i, l := range page {
		out[i] = storage.Info{Key: l.key, Size: l.size, StoredAt: l.storedAt}
	}
	return out, next, nil
}

// listSnapshot is the sorted listing of a prefix that the pages after the
// first are served from.
type listSnapshot struct {
	prefix string
	items  []listed
	at     time.Time
}

// listSorted returns the indexed objects under prefix in key order.
func (b *Backend) listSorted(ctx context.Context, prefix string) ([]listed, error) {
	items := b.ix.listItems()
	match := []listed{}
	for i := range items {
		it := &items[i]
		if !it.known {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			l, ino, err := readListed(b.ix.path(it.e.name), it.e.name)
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errCorrupt) {
				continue // evicted or replaced meanwhile, or damaged
			}
			if err != nil {
				return nil, err
			}
			b.ix.remember(it.e, ino, l)
			it.l = l
		}
		if strings.HasPrefix(it.l.key, prefix) {
			match = append(match, it.l)
		}
	}
	slices.SortFunc(match, func(a, b listed) int { return cmp.Compare(a.key, b.key) })
	return match, nil
}

// readListed reads the key, size and StoredAt of the object file at path,
// named name, from its trailer; a trailer whose key does not hash to name
// is damaged.
func readListed(path, name string) (listed, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return listed{}, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return listed{}, 0, err
	}
	m, err := readMeta(f, fi.Size())
	if err != nil {
		return listed{}, 0, err
	}
	if hashKey(m.Key) != name {
		return listed{}, 0, errCorrupt
	}
	return listed{key: m.Key, size: m.Size, storedAt: time.Unix(0, m.StoredAt)}, inode(fi), nil
}

// listItems returns every indexed object, with what the index knows of it.
func (ix *index) listItems() []listItem {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	items := make([]listItem, 0, len(ix.entries))
	for _, e := range ix.entries {
		it := listItem{e: e}
		switch {
		case e.hasInfo:
			it.l, it.known = listed{key: e.info.Key, size: e.info.Size, storedAt: e.info.StoredAt}, true
		case e.listed != nil:
			it.l, it.known = *e.listed, true
		}
		items = append(items, it)
	}
	return items
}

// remember records what List read of the object of entry e, from the file
// with inode ino, unless the entry was replaced or removed meanwhile.
func (ix *index) remember(e *entry, ino uint64, l listed) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.entries[e.name] == e && !e.hasInfo && (e.ino == 0 || e.ino == ino) {
		e.listed = &l
	}
}

// Location implements storage.Locator: the object file's path.
func (b *Backend) Location(key string) (string, error) { return b.Path(key) }
