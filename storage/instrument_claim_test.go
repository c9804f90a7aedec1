package storage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
	"github.com/httpmirror/httpmirror/storage/storagetest"
)

// The decorator keeps the whole contract, claims included.
func TestInstrumentConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return storage.Instrument(memory.New(), nil) })
}

// noClaims is a backend without the Claimer capability.
type noClaims struct{ storage.Backend }

// Claim operations are timed; a lost claim is no store error; a backend
// without claims answers ErrNotSupported through the decorator.
func TestInstrumentClaims(t *testing.T) {
	var mu sync.Mutex
	ops := map[string]int{}
	failed := map[string]int{}
	b := storage.Instrument(memory.New(), func(op string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		ops[op]++
		if err != nil {
			failed[op]++
		}
	})
	c := b.(storage.Claimer)
	ctx := context.Background()
	cl, err := c.Claim(ctx, "n", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Claim(ctx, "n", []byte("b")); !errors.Is(err, storage.ErrClaimed) {
		t.Fatalf("second Claim: %v; want ErrClaimed", err)
	}
	cl, err = c.Swap(ctx, "n", []byte("c"), cl.Version)
	if err != nil {
		t.Fatal(err)
	}
	c.ReadClaim(ctx, "n")
	c.Claims(ctx)
	if err := c.Release(ctx, "n", cl.Version); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"claim": 2, "swap": 1, "read_claim": 1, "list_claims": 1, "release": 1}
	for op, n := range want {
		if ops[op] != n {
			t.Errorf("%s observed %d times; want %d", op, ops[op], n)
		}
	}
	if len(failed) != 0 {
		t.Errorf("failures observed: %v; want none (a lost claim is not a store failure)", failed)
	}

	plain := storage.Instrument(noClaims{memory.New()}, nil).(storage.Claimer)
	if _, err := plain.Claim(ctx, "n", nil); !errors.Is(err, storage.ErrNotSupported) {
		t.Errorf("Claim without a Claimer underneath: %v; want ErrNotSupported", err)
	}
}
