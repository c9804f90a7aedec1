package file

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
)

// stateName is the file that says how the last process left the index.
// The index database and its journal are written without fsync (cheap,
// and safe when only the process dies: the kernel keeps what it wrote).
// After a crash of the whole system they may have lost writes in any
// order, so they are trusted only when the last process closed them
// (after syncing them), or when it died during the current boot of the
// system.
const stateName = "index.state"

// indexState is the content of the state file.
type indexState struct {
	// Clean is true when the last process closed the index: the database
	// was synced (unless Synced is false: Options.NoSync) and the journal
	// has nothing to replay.
	Clean  bool `json:"clean"`
	Synced bool `json:"synced"`
	// Boot identifies the boot of the system the last process ran in.
	Boot string `json:"boot,omitempty"`
}

// readState returns the state the last process left; the zero state
// (nothing trusted) when there is none.
func readState(root string) indexState {
	var st indexState
	b, err := os.ReadFile(filepath.Join(root, stateName))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return indexState{}
	}
	return st
}

// trusted reports whether the index files left in state st may be used
// in the boot boot.
func (st indexState) trusted(boot string) bool {
	if st.Clean && st.Synced {
		return true
	}
	return st.Boot != "" && st.Boot == boot
}

// writeState replaces the state file, durably: the next start must not
// trust an index this process has started to change without syncing.
func writeState(root string, st indexState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeDurably(root, stateName, append(b, '\n'))
}

// writeDurably replaces the file name of directory dir with one holding
// data, by a rename, and returns once the new file is on disk.
func writeDurably(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// bootID identifies the current boot of the system; "" where it is not
// known, and then an index left by a process that died is never trusted.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
