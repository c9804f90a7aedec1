package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/httpmirror/httpmirror/storage"
)

// claimTests are run for backends that implement storage.Claimer.
var claimTests = []struct {
	name string
	fn   func(t *testing.T, b storage.Backend, c storage.Claimer)
}{
	{"ClaimOnce", testClaimOnce},
	{"ClaimSwap", testClaimSwap},
	{"ClaimRelease", testClaimRelease},
	{"ClaimIsNoObject", testClaimIsNoObject},
	{"ClaimList", testClaimList},
	{"ClaimInvalid", testClaimInvalid},
	{"ClaimRace", testClaimRace},
}

// runClaims runs the Claimer suite, or skips it when the backend has no
// claims.
func runClaims(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	for _, tc := range claimTests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			c, ok := b.(storage.Claimer)
			if !ok {
				t.Skip("backend has no claims")
			}
			tc.fn(t, b, c)
		})
	}
}

func testClaimOnce(t *testing.T, b storage.Backend, c storage.Claimer) {
	ctx := context.Background()
	if _, err := c.ReadClaim(ctx, "lease-a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ReadClaim of a missing claim: %v; want ErrNotFound", err)
	}
	first, err := c.Claim(ctx, "lease-a", []byte("first"))
	if err != nil || string(first.Data) != "first" || first.Version == "" {
		t.Fatalf("Claim = %q, %q, %v; want the data and a version", first.Data, first.Version, err)
	}
	cur, err := c.Claim(ctx, "lease-a", []byte("second"))
	if !errors.Is(err, storage.ErrClaimed) {
		t.Fatalf("second Claim error = %v; want ErrClaimed", err)
	}
	if string(cur.Data) != "first" || cur.Version != first.Version {
		t.Errorf("second Claim returned %q version %q; want the first claim (%q)", cur.Data, cur.Version, first.Version)
	}
	got, err := c.ReadClaim(ctx, "lease-a")
	if err != nil || string(got.Data) != "first" || got.Version != first.Version {
		t.Errorf("ReadClaim = %q, %q, %v; want the first claim", got.Data, got.Version, err)
	}
}

func testClaimSwap(t *testing.T, b storage.Backend, c storage.Claimer) {
	ctx := context.Background()
	v1, err := c.Claim(ctx, "lease-b", []byte("same"))
	if err != nil {
		t.Fatal(err)
	}
	// The same data again is a new write with a new version.
	v2, err := c.Swap(ctx, "lease-b", []byte("same"), v1.Version)
	if err != nil || v2.Version == v1.Version || v2.Version == "" {
		t.Fatalf("Swap = version %q, %v; want a new version (old %q)", v2.Version, err, v1.Version)
	}
	cur, err := c.Swap(ctx, "lease-b", []byte("stale"), v1.Version)
	if !errors.Is(err, storage.ErrClaimChanged) {
		t.Fatalf("Swap against a stale version: %v; want ErrClaimChanged", err)
	}
	if cur.Version != v2.Version || string(cur.Data) != "same" {
		t.Errorf("failed Swap returned version %q data %q; want the current claim %q", cur.Version, cur.Data, v2.Version)
	}
	if _, err := c.Swap(ctx, "lease-missing", []byte("x"), v2.Version); !errors.Is(err, storage.ErrClaimChanged) {
		t.Errorf("Swap of a missing claim: %v; want ErrClaimChanged", err)
	}
	if _, err := c.ReadClaim(ctx, "lease-missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a failed Swap created the claim: ReadClaim error %v", err)
	}
	got, err := c.ReadClaim(ctx, "lease-b")
	if err != nil || got.Version != v2.Version || string(got.Data) != "same" {
		t.Errorf("ReadClaim = %q, %q, %v; want the swapped claim", got.Data, got.Version, err)
	}
}

func testClaimRelease(t *testing.T, b storage.Backend, c storage.Claimer) {
	ctx := context.Background()
	v1, err := c.Claim(ctx, "lease-c", []byte("one"))
	if err != nil {
		t.Fatal(err)
	}
	v2, err := c.Swap(ctx, "lease-c", []byte("two"), v1.Version)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, "lease-c", v1.Version); !errors.Is(err, storage.ErrClaimChanged) {
		t.Fatalf("Release with a stale version: %v; want ErrClaimChanged", err)
	}
	if got, err := c.ReadClaim(ctx, "lease-c"); err != nil || got.Version != v2.Version {
		t.Fatalf("after a refused Release: ReadClaim = %q, %v; want the claim unchanged", got.Version, err)
	}
	if err := c.Release(ctx, "lease-c", v2.Version); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if _, err := c.ReadClaim(ctx, "lease-c"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ReadClaim after Release: %v; want ErrNotFound", err)
	}
	if err := c.Release(ctx, "lease-c", v2.Version); !errors.Is(err, storage.ErrClaimChanged) {
		t.Errorf("second Release: %v; want ErrClaimChanged", err)
	}
	if _, err := c.Claim(ctx, "lease-c", []byte("three")); err != nil {
		t.Errorf("Claim after Release: %v", err)
	}
}

// A claim and an object of the same name are unrelated: neither sees,
// replaces or removes the other.
func testClaimIsNoObject(t *testing.T, b storage.Backend, c storage.Claimer) {
	ctx := context.Background()
	const name = "example.com"
	if _, err := c.Claim(ctx, name, []byte("lease")); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, b, name)
	put(t, b, name, []byte("object"), sampleInfo(6))
	if _, got := read(t, b, name); string(got) != "object" {
		t.Errorf("object = %q; want %q", got, "object")
	}
	if err := b.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadClaim(ctx, name); err != nil || string(got.Data) != "lease" {
		t.Errorf("claim after the object's delete = %q, %v; want it intact", got.Data, err)
	}
}

func testClaimList(t *testing.T, b storage.Backend, c storage.Claimer) {
	ctx := context.Background()
	put(t, b, "example.com/not-a-claim", []byte("x"), sampleInfo(1))
	want := []string{"l1", "l2", "l3"}
	for _, n := range want {
		if _, err := c.Claim(ctx, n, []byte(n)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := c.ReadClaim(ctx, "l2")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx, "l2", v.Version); err != nil {
		t.Fatal(err)
	}
	got, err := c.Claims(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if fmt.Sprint(got) != "[l1 l3]" {
		t.Errorf("Claims = %q; want [l1 l3]", got)
	}
}

func testClaimInvalid(t *testing.T, b storage.Backend, c storage.Claimer) {
	ctx := context.Background()
	for _, name := range []string{"", ".hidden", "a/b", "../x", "a b", strings.Repeat("x", 129), "\x00"} {
		if _, err := c.Claim(ctx, name, nil); !errors.Is(err, storage.ErrInvalidClaim) {
			t.Errorf("Claim(%q) error = %v; want ErrInvalidClaim", name, err)
		}
		if _, err := c.ReadClaim(ctx, name); !errors.Is(err, storage.ErrInvalidClaim) {
			t.Errorf("ReadClaim(%q) error = %v; want ErrInvalidClaim", name, err)
		}
	}
	if _, err := c.Claim(ctx, "big", make([]byte, storage.MaxClaimSize+1)); !errors.Is(err, storage.ErrInvalidClaim) {
		t.Errorf("Claim of %d bytes: %v; want ErrInvalidClaim", storage.MaxClaimSize+1, err)
	}
}

// Concurrent Claims of one name, then concurrent Swaps against one
// version: exactly one of each wins.
func testClaimRace(t *testing.T, b storage.Backend, c storage.Claimer) {
	ctx := context.Background()
	const n = 8
	race := func(op func(i int) (storage.Claim, error), lost error) storage.Claim {
		t.Helper()
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			wins   []storage.Claim
			failed []error
		)
		for i := range n {
			wg.Go(func() {
				cl, err := op(i)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins = append(wins, cl)
				case !errors.Is(err, lost):
					failed = append(failed, err)
				}
			})
		}
		wg.Wait()
		if len(failed) > 0 || len(wins) != 1 {
			t.Fatalf("%d winners, errors %v; want exactly one winner and %v for the others", len(wins), failed, lost)
		}
		return wins[0]
	}
	won := race(func(i int) (storage.Claim, error) {
		return c.Claim(ctx, "contended", fmt.Appendf(nil, "claimer %d", i))
	}, storage.ErrClaimed)
	swapped := race(func(i int) (storage.Claim, error) {
		return c.Swap(ctx, "contended", fmt.Appendf(nil, "swapper %d", i), won.Version)
	}, storage.ErrClaimChanged)
	got, err := c.ReadClaim(ctx, "contended")
	if err != nil || got.Version != swapped.Version || string(got.Data) != string(swapped.Data) {
		t.Errorf("ReadClaim = %q, %q, %v; want the winning swap %q", got.Data, got.Version, err, swapped.Data)
	}
}
