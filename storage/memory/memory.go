// Package memory is an in-process storage backend. It keeps every object in
// RAM and is meant for tests and for small, throwaway deployments.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/httpmirror/httpmirror/storage"
)

type entry struct {
	info storage.Info
	data []byte // never modified after commit

	// The object's reads: Open counts, Stat does not.
	used    atomic.Int64 // last Open (or the commit), Unix nanoseconds
	hits    atomic.Int64
	readers atomic.Int64 // objects open
}

// use records an Open at now.
func (e *entry) use(now int64) {
	e.hits.Add(1)
	for {
		old := e.used.Load()
		if now <= old || e.used.CompareAndSwap(old, now) {
			return
		}
	}
}

// listed returns e's metadata with its uses.
func (e *entry) listed() storage.Info {
	info := cloneInfo(e.info)
	info.LastAccess, info.Hits = time.Unix(0, e.used.Load()), e.hits.Load()
	return info
}

// Backend keeps objects in a map. The zero value is not usable; call New.
type Backend struct {
	// Now is the clock of last accesses and of commits' StoredAt; set it,
	// if at all, before the backend is used. Nil means time.Now.
	Now func() time.Time

	mu      sync.RWMutex
	objects map[string]*entry

	claims claims // storage.Claimer's claims, apart from the objects
}

// New returns an empty in-memory backend.
func New() *Backend {
	return &Backend{objects: make(map[string]*entry)}
}

func (b *Backend) get(key string) (*entry, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, err
	}
	b.mu.RLock()
	e, ok := b.objects[key]
	b.mu.RUnlock()
	if !ok {
		return nil, storage.ErrNotFound
	}
	return e, nil
}

// Stat implements storage.Backend.
func (b *Backend) Stat(ctx context.Context, key string) (storage.Info, error) {
	e, err := b.get(key)
	if err != nil {
		return storage.Info{}, err
	}
	return cloneInfo(e.info), nil
}

func (b *Backend) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Open implements storage.Backend. It counts as a use of the object (see
// storage.Info.Hits).
func (b *Backend) Open(ctx context.Context, key string) (storage.Object, error) {
	e, err := b.get(key)
	if err != nil {
		return nil, err
	}
	e.use(b.now().UnixNano())
	e.readers.Add(1)
	return &object{Reader: bytes.NewReader(e.data), info: cloneInfo(e.info), e: e}, nil
}

var _ storage.Rereader = (*Backend)(nil)

// Reread implements storage.Rereader: Open without counting a use.
func (b *Backend) Reread(ctx context.Context, key string) (storage.Object, error) {
	e, err := b.get(key)
	if err != nil {
		return nil, err
	}
	return &object{Reader: bytes.NewReader(e.data), info: cloneInfo(e.info)}, nil
}

// Delete implements storage.Backend.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.objects, key)
	b.mu.Unlock()
	return nil
}

// Create implements storage.Backend. The writer implements storage.Spooler
// and storage.InfoUpdater.
func (b *Backend) Create(ctx context.Context, key string, info storage.Info) (storage.Writer, error) {
	if err := storage.ValidateKey(key); err != nil {
		return nil, err
	}
	info.Key = key
	return &writer{b: b, key: key, info: cloneInfo(info)}, nil
}

// Refresh implements storage.Refresher.
func (b *Backend) Refresh(ctx context.Context, key string, info storage.Info) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.objects[key]
	if !ok || e.info.Size != info.Size || e.info.ETag != info.ETag {
		return storage.ErrNotFound
	}
	info.Key = key
	ne := &entry{info: cloneInfo(info), data: e.data}
	ne.used.Store(e.used.Load())
	ne.hits.Store(e.hits.Load())
	b.objects[key] = ne
	return nil
}

// List implements storage.Lister, in key order. A page token holds the
// last key of the previous page (storage.PageToken).
func (b *Backend) List(ctx context.Context, prefix, token string, limit int) ([]storage.Info, string, error) {
	if limit <= 0 {
		limit = storage.DefaultListLimit
	}
	after := ""
	if token != "" {
		var err error
		if after, err = storage.DecodePageToken(prefix, token); err != nil {
			return nil, "", err
		}
	}
	b.mu.RLock()
	var keys []string
	for k := range b.objects {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	next := ""
	if len(keys) > limit {
		keys = keys[:limit]
		next = storage.PageToken(prefix, keys[limit-1])
	}
	out := make([]storage.Info, len(keys))
	for i, k := range keys {
		out[i] = b.objects[k].listed()
	}
	b.mu.RUnlock()
	return out, next, nil
}

var _ storage.Expirer = (*Backend)(nil)

// Expire implements storage.Expirer: it looks at every object.
func (b *Backend) Expire(ctx context.Context, cutoff time.Time, keep func(key string) bool) (int, error) {
	c := cutoff.UnixNano()
	b.mu.RLock()
	var idle []string
	for k, e := range b.objects {
		if e.used.Load() < c && e.readers.Load() == 0 {
			idle = append(idle, k)
		}
	}
	b.mu.RUnlock()
	n := 0
	for _, k := range idle {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		if keep != nil && keep(k) {
			continue
		}
		b.mu.Lock()
		// Checked again: opened or replaced since.
		if e := b.objects[k]; e != nil && e.used.Load() < c && e.readers.Load() == 0 {
			delete(b.objects, k)
			n++
		}
		b.mu.Unlock()
	}
	return n, nil
}

// Len reports how many objects are stored.
func (b *Backend) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.objects)
}

func cloneInfo(i storage.Info) storage.Info {
	if i.Header != nil {
		i.Header = http.Header(maps.Clone(map[string][]string(i.Header)))
	}
	return i
}

type object struct {
	*bytes.Reader
	info   storage.Info
	e      *entry
	closed atomic.Bool
}

func (o *object) Info() storage.Info { return o.info }

func (o *object) Close() error {
	if o.e != nil && o.closed.CompareAndSwap(false, true) {
		o.e.readers.Add(-1)
	}
	return nil
}

var (
	_ storage.Spooler     = (*writer)(nil)
	_ storage.InfoUpdater = (*writer)(nil)
)

type writer struct {
	b    *Backend
	key  string
	info storage.Info

	mu   sync.RWMutex
	buf  []byte
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, fmt.Errorf("memory: write to %s: %w", w.key, storage.ErrWriterFinished)
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

func (w *writer) Written() int64 {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return int64(len(w.buf))
}

func (w *writer) ReadAt(p []byte, off int64) (int, error) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return bytes.NewReader(w.buf).ReadAt(p, off)
}

// UpdateInfo implements storage.InfoUpdater.
func (w *writer) UpdateInfo(info storage.Info) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("memory: update of %s: %w", w.key, storage.ErrWriterFinished)
	}
	info.Key, info.Size = w.key, w.info.Size
	info.Header = info.Header.Clone()
	w.info = info
	return nil
}

func (w *writer) Commit(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return fmt.Errorf("memory: commit of %s: %w", w.key, storage.ErrWriterFinished)
	}
	info := w.info
	n := int64(len(w.buf))
	if info.Size >= 0 && info.Size != n {
		return fmt.Errorf("%w: wrote %d bytes, expected %d", storage.ErrSizeMismatch, n, info.Size)
	}
	info.Size = n
	now := w.b.now()
	if info.StoredAt.IsZero() {
		info.StoredAt = now
	}
	w.done = true
	e := &entry{info: cloneInfo(info), data: w.buf}
	e.used.Store(now.UnixNano())
	w.b.mu.Lock()
	if old := w.b.objects[w.key]; old != nil {
		e.hits.Store(old.hits.Load()) // the key's count goes on
	}
	w.b.objects[w.key] = e
	w.b.mu.Unlock()
	return nil
}

// Cancel discards the object; what was written stays readable through
// ReadAt until Close, as storage.Spooler requires.
func (w *writer) Cancel(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	return nil
}

func (w *writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.buf = nil
	return nil
}
