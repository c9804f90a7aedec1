package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/httpmirror/httpmirror/cluster"
	"github.com/httpmirror/httpmirror/storage"
	"github.com/httpmirror/httpmirror/storage/memory"
)

// liar accepts every conditional write, as a store that ignores the
// conditions would.
type liar struct{ *memory.Backend }

func (l liar) Claim(ctx context.Context, name string, data []byte) (storage.Claim, error) {
	return storage.Claim{Data: data, Version: strconv.Itoa(len(data))}, nil
}

func TestProbe(t *testing.T) {
	n := newReplica(t, memory.New(), newClock(), nil).node
	if err := n.Probe(context.Background()); err != nil {
		t.Errorf("Probe on a store with conditional writes: %v", err)
	}
	bad, err := cluster.New(cluster.Config{Store: liar{memory.New()}, Self: "http://127.0.0.1:1", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Probe(context.Background()); !errors.Is(err, cluster.ErrNoConditionalWrites) {
		t.Errorf("Probe on a store that ignores conditions: %v; want ErrNoConditionalWrites", err)
	}
}

// The sweep removes leases more than a lease duration past their
// deadline, and aborts the uploads their owners left, and leaves live
// leases and other claims alone.
func TestSweepRemovesAbandonedLeases(t *testing.T) {
	store, clk := &killable{Backend: memory.New()}, newClock()
	n := newReplica(t, store, clk, nil).node
	writeLease(t, store, "http://10.0.0.1:8081", clk.Now().Add(-lease-time.Second))
	other := "example.com/other"
	data, _ := json.Marshal(map[string]any{"owner": "http://10.0.0.2:8081", "deadline": clk.Now().Add(-lease / 2)})
	store.Claim(context.Background(), cluster.LeaseName(other), data)
	store.Claim(context.Background(), "not-a-lease", []byte("x"))
	removed, err := n.Sweep(context.Background())
	if err != nil || removed != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 lease removed", removed, err)
	}
	names, _ := store.Claims(context.Background())
	if len(names) != 2 {
		t.Errorf("claims left: %q; want the recently expired lease and the other claim", names)
	}
	if n := store.aborts.Load(); n != 1 {
		t.Errorf("%d aborts of uploads; want 1, for the lease removed", n)
	}
}

func TestConfigRefused(t *testing.T) {
	for _, cfg := range []cluster.Config{
		{Store: memory.New(), Self: "http://127.0.0.1:8081"},                        // no secret
		{Store: memory.New(), Self: "127.0.0.1:8081", Secret: secret},               // no scheme
		{Store: memory.New(), Self: "http://127.0.0.1:8081/x", Secret: secret},      // a path
		{Store: noClaims{memory.New()}, Self: "http://127.0.0.1:1", Secret: secret}, // no claims
	} {
		if _, err := cluster.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded; want an error", cfg)
		}
	}
}

type noClaims struct{ storage.Backend }
