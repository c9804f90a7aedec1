package memory

import (
	"bytes"
	"context"
	"strconv"
	"sync"

	"github.com/httpmirror/httpmirror/storage"
)

var _ storage.Claimer = (*Backend)(nil)

// claims holds a Backend's claims; its zero value is empty.
type claims struct {
	mu     sync.Mutex
	m      map[string]storage.Claim
	writes uint64 // numbers the versions
}

// setLocked stores a new version of the claim name; c.mu must be held.
func (c *claims) setLocked(name string, data []byte) storage.Claim {
	if c.m == nil {
		c.m = make(map[string]storage.Claim)
	}
	c.writes++
	cl := storage.Claim{Data: bytes.Clone(data), Version: strconv.FormatUint(c.writes, 10)}
	c.m[name] = cl
	return clone(cl)
}

func clone(cl storage.Claim) storage.Claim {
	cl.Data = bytes.Clone(cl.Data)
	return cl
}

// Claim implements storage.Claimer.
func (b *Backend) Claim(ctx context.Context, name string, data []byte) (storage.Claim, error) {
	if err := storage.ValidateClaim(name, data); err != nil {
		return storage.Claim{}, err
	}
	c := &b.claims
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.m[name]; ok {
		return clone(cur), storage.ErrClaimed
	}
	return c.setLocked(name, data), nil
}

// Swap implements storage.Claimer.
func (b *Backend) Swap(ctx context.Context, name string, data []byte, version string) (storage.Claim, error) {
	if err := storage.ValidateClaim(name, data); err != nil {
		return storage.Claim{}, err
	}
	c := &b.claims
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.m[name]
	if !ok || cur.Version != version {
		return clone(cur), storage.ErrClaimChanged
	}
	return c.setLocked(name, data), nil
}

// Release implements storage.Claimer.
func (b *Backend) Release(ctx context.Context, name, version string) error {
	if err := storage.ValidateClaimName(name); err != nil {
		return err
	}
	c := &b.claims
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.m[name]; !ok || cur.Version != version {
		return storage.ErrClaimChanged
	}
	delete(c.m, name)
	return nil
}

// ReadClaim implements storage.Claimer.
func (b *Backend) ReadClaim(ctx context.Context, name string) (storage.Claim, error) {
	if err := storage.ValidateClaimName(name); err != nil {
		return storage.Claim{}, err
	}
	c := &b.claims
	c.mu.Lock()
	defer c.mu.Unlock()
	cur, ok := c.m[name]
	if !ok {
		return storage.Claim{}, storage.ErrNotFound
	}
	return clone(cur), nil
}

// Claims implements storage.Claimer.
func (b *Backend) Claims(ctx context.Context) ([]string, error) {
	c := &b.claims
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.m))
	for n := range c.m {
		names = append(names, n)
	}
	return names, nil
}
