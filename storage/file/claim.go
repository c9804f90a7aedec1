package file

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/httpmirror/httpmirror/storage"
)

var _ storage.Claimer = (*Backend)(nil)

// claimsDir holds the claims of storage.Claimer, one file per name, apart
// from objects/ (so the index, eviction and the size limit never see
// them). A claim file holds its version (random hex) on the first line,
// then the data. It is created with a hard link of a complete temporary
// file (link fails when the name exists: create-if-absent without a
// half-written file), replaced with a rename and removed with an unlink,
// the last two under the flock of claims/.lock so that the compare and the
// write are one step for every process of the machine.
const claimsDir = "claims"

// claimMu serialises the process's own claim operations, so that it holds
// one descriptor of the lock file at a time; the flock excludes other
// processes.
var claimMu sync.Mutex

func (b *Backend) claimPath(name string) string { return filepath.Join(b.root, claimsDir, name) }

// lockClaims takes the claims lock and returns its release.
func (b *Backend) lockClaims() (func(), error) {
	claimMu.Lock()
	if err := os.MkdirAll(filepath.Join(b.root, claimsDir), 0o755); err != nil {
		claimMu.Unlock()
		return nil, fmt.Errorf("claims directory: %w", err)
	}
	f, err := lockClaims(filepath.Join(b.root, claimsDir, ".lock"))
	if err != nil {
		claimMu.Unlock()
		return nil, fmt.Errorf("locking claims: %w", err)
	}
	return func() { f.Close(); claimMu.Unlock() }, nil
}

// writeClaimTemp writes a new version of a claim to a temporary file in
// the claims directory and returns its path and the claim.
func (b *Backend) writeClaimTemp(data []byte) (string, storage.Claim, error) {
	var v [16]byte
	rand.Read(v[:])
	cl := storage.Claim{Data: bytes.Clone(data), Version: hex.EncodeToString(v[:])}
	f, err := os.CreateTemp(filepath.Join(b.root, claimsDir), ".tmp-*")
	if err != nil {
		return "", storage.Claim{}, fmt.Errorf("writing claim: %w", err)
	}
	_, err = f.Write(append([]byte(cl.Version+"\n"), data...))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", storage.Claim{}, fmt.Errorf("writing claim: %w", err)
	}
	return f.Name(), cl, nil
}

// Claim implements storage.Claimer.
func (b *Backend) Claim(ctx context.Context, name string, data []byte) (storage.Claim, error) {
	if err := storage.ValidateClaim(name, data); err != nil {
		return storage.Claim{}, err
	}
	unlock, err := b.lockClaims()
	if err != nil {
		return storage.Claim{}, err
	}
	defer unlock()
	tmp, cl, err := b.writeClaimTemp(data)
	if err != nil {
		return storage.Claim{}, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, b.claimPath(name)); err != nil {
		if errors.Is(err, fs.ErrExist) {
			cur, _ := b.ReadClaim(ctx, name)
			return cur, storage.ErrClaimed
		}
		return storage.Claim{}, fmt.Errorf("creating claim: %w", err)
	}
	return cl, nil
}

// Swap implements storage.Claimer.
func (b *Backend) Swap(ctx context.Context, name string, data []byte, version string) (storage.Claim, error) {
	if err := storage.ValidateClaim(name, data); err != nil {
		return storage.Claim{}, err
	}
	unlock, err := b.lockClaims()
	if err != nil {
		return storage.Claim{}, err
	}
	defer unlock()
	cur, err := b.ReadClaim(ctx, name)
	if errors.Is(err, storage.ErrNotFound) || err == nil && cur.Version != version {
		return cur, storage.ErrClaimChanged
	}
	if err != nil {
		return storage.Claim{}, err
	}
	tmp, cl, err := b.writeClaimTemp(data)
	if err != nil {
		return storage.Claim{}, err
	}
	if err := os.Rename(tmp, b.claimPath(name)); err != nil {
		os.Remove(tmp)
		return storage.Claim{}, fmt.Errorf("replacing claim: %w", err)
	}
	return cl, nil
}

// Release implements storage.Claimer.
func (b *Backend) Release(ctx context.Context, name, version string) error {
	if err := storage.ValidateClaimName(name); err != nil {
		return err
	}
	unlock, err := b.lockClaims()
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := b.ReadClaim(ctx, name)
	if errors.Is(err, storage.ErrNotFound) || err == nil && cur.Version != version {
		return storage.ErrClaimChanged
	}
	if err != nil {
		return err
	}
	if err := os.Remove(b.claimPath(name)); err != nil {
		return fmt.Errorf("releasing claim: %w", err)
	}
	return nil
}

// ReadClaim implements storage.Claimer. It takes no lock: a claim file is
// complete from the moment it has its name.
func (b *Backend) ReadClaim(ctx context.Context, name string) (storage.Claim, error) {
	if err := storage.ValidateClaimName(name); err != nil {
		return storage.Claim{}, err
	}
	content, err := os.ReadFile(b.claimPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return storage.Claim{}, storage.ErrNotFound
	}
	if err != nil {
		return storage.Claim{}, fmt.Errorf("reading claim: %w", err)
	}
	version, data, _ := bytes.Cut(content, []byte("\n"))
	return storage.Claim{Data: data, Version: string(version)}, nil
}

// Claims implements storage.Claimer. Under the lock, where nobody writes
// one, it also removes temporary files a crash left behind.
func (b *Backend) Claims(ctx context.Context) ([]string, error) {
	unlock, err := b.lockClaims()
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := filepath.Join(b.root, claimsDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing claims: %w", err)
	}
	var names []string
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), ".tmp-"):
			os.Remove(filepath.Join(dir, e.Name()))
		case !strings.HasPrefix(e.Name(), ".") && e.Type().IsRegular():
			names = append(names, e.Name())
		}
	}
	return names, nil
}
