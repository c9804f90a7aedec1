package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// lease is the content of a lease claim: which replica fills a key, since
// when, and until when its claim holds unless renewed.
type lease struct {
	// Owner is the owner's advertised peer URL.
	Owner string `json:"owner"`
	// Key is the cache key filled, for people looking at the bucket; long
	// keys are cut.
	Key string `json:"key"`
	// Started is when the owner first claimed the fill.
	Started time.Time `json:"started"`
	// Deadline is when the lease expires unless renewed: past it, any
	// replica may take the fill over.
	Deadline time.Time `json:"deadline"`
}

// maxLeaseKey bounds the key recorded in a lease, which is informative
// only, well inside storage.MaxClaimSize.
const maxLeaseKey = 1 << 10

// leaseName is the claim name of the lease of key: the hex SHA-256 of the
// key, a valid claim name for every key.
func leaseName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

func (l lease) encode() []byte {
	if len(l.Key) > maxLeaseKey {
		l.Key = l.Key[:maxLeaseKey]
	}
	b, _ := json.Marshal(l) // a struct of strings and times always encodes
	return b
}

// decodeLease parses a lease claim; ok is false for data that is no lease
// (a claim another program wrote, or a damaged one).
func decodeLease(data []byte) (l lease, ok bool) {
	if json.Unmarshal(data, &l) != nil || l.Owner == "" || l.Deadline.IsZero() {
		return lease{}, false
	}
	return l, true
}

// live reports whether l still holds at now.
func (l lease) live(now time.Time) bool { return now.Before(l.Deadline) }
