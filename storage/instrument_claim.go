package storage

import (
	"context"
	"errors"
	"time"
)

// claimDone reports a Claimer operation; losing a claim to another writer
// is the protocol at work, not a failure of the store.
func (s *instrumented) claimDone(op string, start time.Time, err error) {
	if errors.Is(err, ErrClaimed) || errors.Is(err, ErrClaimChanged) {
		err = nil
	}
	s.done(op, start, err)
}

// Claim implements Claimer.
func (s *instrumented) Claim(ctx context.Context, name string, data []byte) (Claim, error) {
	if s.claimer == nil {
		return Claim{}, ErrNotSupported
	}
	start := time.Now()
	c, err := s.claimer.Claim(ctx, name, data)
	s.claimDone("claim", start, err)
	return c, err
}

// Swap implements Claimer.
func (s *instrumented) Swap(ctx context.Context, name string, data []byte, version string) (Claim, error) {
	if s.claimer == nil {
		return Claim{}, ErrNotSupported
	}
	start := time.Now()
	c, err := s.claimer.Swap(ctx, name, data, version)
	s.claimDone("swap", start, err)
	return c, err
}

// Release implements Claimer.
func (s *instrumented) Release(ctx context.Context, name, version string) error {
	if s.claimer == nil {
		return ErrNotSupported
	}
	start := time.Now()
	err := s.claimer.Release(ctx, name, version)
	s.claimDone("release", start, err)
	return err
}

// ReadClaim implements Claimer.
func (s *instrumented) ReadClaim(ctx context.Context, name string) (Claim, error) {
	if s.claimer == nil {
		return Claim{}, ErrNotSupported
	}
	start := time.Now()
	c, err := s.claimer.ReadClaim(ctx, name)
	s.done("read_claim", start, err)
	return c, err
}

// Claims implements Claimer.
func (s *instrumented) Claims(ctx context.Context) ([]string, error) {
	if s.claimer == nil {
		return nil, ErrNotSupported
	}
	start := time.Now()
	names, err := s.claimer.Claims(ctx)
	s.done("list_claims", start, err)
	return names, err
}

// AbortUploads implements UploadAborter.
func (s *instrumented) AbortUploads(ctx context.Context, key string) (int, error) {
	a, ok := s.b.(UploadAborter)
	if !ok {
		return 0, ErrNotSupported
	}
	start := time.Now()
	n, err := a.AbortUploads(ctx, key)
	s.done("abort_uploads", start, err)
	return n, err
}
