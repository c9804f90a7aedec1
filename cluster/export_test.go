package cluster

import (
	"context"
	"errors"

	"github.com/httpmirror/httpmirror"
)

func heldOf(c httpmirror.Coordination) *held {
	s := c.(*share)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Renew renews the lease c holds now, as its renewal ticker does.
func Renew(c httpmirror.Coordination) error {
	hd := heldOf(c)
	if hd == nil {
		return errors.New("no lease held")
	}
	return hd.renew(context.Background())
}

// Progressed reports what the next renewal tick of c's lease would decide.
func Progressed(c httpmirror.Coordination) bool { return heldOf(c).progressed() }

// LeaseName is the claim name of key's lease.
func LeaseName(key string) string { return leaseName(key) }
