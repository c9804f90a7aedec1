package file

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
)

// The journal names, before each change to the object files (a commit's
// rename, a delete, an eviction), the key it concerns. The index records
// the change afterwards, in a batch (store.go), together with how far the
// journal is covered. When the process dies in between, the next start
// checks the file of each key the journal names past that point again
// (build.go), instead of walking every object.
//
// The journal is written without fsync, as the index is: both survive the
// death of the process (the kernel holds what was written), and after a
// power loss or a crash of the system the index is rebuilt from the files
// (see readState).
//
// Layout: magic (8 bytes) | generation (8 bytes, big endian) | records,
// each a key length (4 bytes, big endian) and the key. The generation
// changes each time the journal starts over, so that a position recorded
// for an earlier generation is never applied to a later one.

const (
	journalName   = "index.journal"
	journalHeader = 16
	// journalRotate is the size past which the journal starts over, once
	// the index covers it.
	journalRotate = 1 << 20
)

var journalMagic = [8]byte{'H', 'M', 'J', 'R', 'N', 'L', '0', '1'}

// jentry is a record of the journal whose change the index does not hold
// yet.
type jentry struct {
	off     int64
	key     string
	applied bool // in the index transaction being committed
}

type journal struct {
	mu          sync.Mutex
	f           *os.File // nil once closed
	gen         uint64
	end         int64
	outstanding map[*jentry]struct{}
	// hold is a position the index still needs: the start of the records
	// being checked again after a crash, -1 when none.
	hold int64
	// lost is set when a record could not be written: the journal no
	// longer names every change, and the index says so (store.go).
	lost bool
}

// openJournal opens the journal of the cache directory root. With keep,
// the existing journal is kept as it is (its records past the index's
// position are to be checked again) and its generation and the end of its
// last whole record are read; otherwise, or when it is missing or
// damaged, a new one of generation gen is started. It returns whether the
// existing journal was kept.
func openJournal(path string, keep bool, gen uint64) (*journal, bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, fmt.Errorf("cache directory: index journal: %w", err)
	}
	j := &journal{f: f, outstanding: map[*jentry]struct{}{}, hold: -1}
	if keep {
		if g, end, err := scanJournal(f); err == nil {
			j.gen, j.end = g, end
			return j, true, nil
		}
	}
	if err := j.restartLocked(gen); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("cache directory: index journal: %w", err)
	}
	return j, false, nil
}

// scanJournal returns the generation of the journal f and the end of its
// last whole record.
func scanJournal(f *os.File) (gen uint64, end int64, err error) {
	var hdr [journalHeader]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return 0, 0, err
	}
	if [8]byte(hdr[:8]) != journalMagic {
		return 0, 0, errors.New("not a journal")
	}
	end = journalHeader
	err = readRecords(f, end, func(off int64, key string) { end = off + 4 + int64(len(key)) })
	return binary.BigEndian.Uint64(hdr[8:]), end, err
}

// readRecords calls fn with each whole record of f from off on.
func readRecords(f *os.File, off int64, fn func(off int64, key string)) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	buf := make([]byte, max(fi.Size()-off, 0))
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	for p := 0; p+4 <= len(buf); {
		n := int(binary.BigEndian.Uint32(buf[p:]))
		if n == 0 || n > len(buf)-p-4 {
			break // the tail of a record cut short
		}
		fn(off+int64(p), string(buf[p+4:p+4+n]))
		p += 4 + n
	}
	return nil
}

// replayKeys returns the keys named by the journal of generation gen from
// off on (every record if the journal has another generation), each once.
func (j *journal) replayKeys(gen uint64, off int64) ([]string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if gen != j.gen || off < journalHeader || off > j.end {
		off = journalHeader
	}
	j.hold = off
	seen := map[string]bool{}
	var keys []string
	err := readRecords(j.f, off, func(o int64, key string) {
		if o < j.end && !seen[key] {
			seen[key] = true
			keys = append(keys, key)
		}
	})
	return keys, err
}

// restartLocked empties the journal and starts generation gen.
func (j *journal) restartLocked(gen uint64) error {
	if err := j.f.Truncate(0); err != nil {
		return err
	}
	var hdr [journalHeader]byte
	copy(hdr[:], journalMagic[:])
	binary.BigEndian.PutUint64(hdr[8:], gen)
	if _, err := j.f.WriteAt(hdr[:], 0); err != nil {
		return err
	}
	j.gen, j.end = gen, journalHeader
	return nil
}

// add records that the file of key is about to change. The entry is
// outstanding until the index holds the change (done); a nil entry means
// the journal is closed. An error means the change must not be made.
func (j *journal) add(key string) (*jentry, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil, nil
	}
	e := &jentry{key: key}
	if err := j.writeLocked(e); err != nil {
		j.lost = true
		return nil, fmt.Errorf("file: index journal: %w", err)
	}
	j.outstanding[e] = struct{}{}
	return e, nil
}

func (j *journal) writeLocked(e *jentry) error {
	rec := make([]byte, 4+len(e.key))
	binary.BigEndian.PutUint32(rec, uint32(len(e.key)))
	copy(rec[4:], e.key)
	if _, err := j.f.WriteAt(rec, j.end); err != nil {
		return err
	}
	e.off = j.end
	j.end += int64(len(rec))
	return nil
}

// done forgets entries: their changes are in the index, or were not made.
func (j *journal) done(es ...*jentry) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range es {
		if e != nil {
			delete(j.outstanding, e)
		}
	}
}

// mark sets whether entries are in the index transaction being
// committed.
func (j *journal) mark(es []*jentry, applied bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range es {
		e.applied = applied
	}
}

// position returns what the index transaction being committed records:
// the generation, and the position from which the journal names changes
// the index may not hold once the transaction is committed (entries
// marked applied are in it).
func (j *journal) position() (gen uint64, off int64, lost bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	off = j.end
	for e := range j.outstanding {
		if !e.applied && e.off < off {
			off = e.off
		}
	}
	if j.hold >= 0 && j.hold < off {
		off = j.hold
	}
	return j.gen, off, j.lost
}

// release drops the hold of a replay whose checks the index now holds.
func (j *journal) release() {
	j.mu.Lock()
	j.hold = -1
	j.mu.Unlock()
}

// rotate starts the journal over when it has grown past journalRotate,
// copying the records still outstanding. It is called after an index
// commit: until the next one records the new generation, a restart
// checks every record of the new journal, which is harmless.
func (j *journal) rotate() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil || j.end < journalRotate || j.hold >= 0 {
		return false
	}
	if err := j.restartLocked(j.gen + 1); err != nil {
		j.lost = true
		return false
	}
	for e := range j.outstanding {
		if err := j.writeLocked(e); err != nil {
			j.lost = true
			return false
		}
	}
	return true
}

// close closes the journal file; later changes are not journaled.
func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

// removeFile deletes the journal at path, if any.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
