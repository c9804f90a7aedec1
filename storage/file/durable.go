package file

import (
	"os"
	"sync"
)

// Commits are made durable in groups. A commit must not return before its
// object survives a power cut: first the new file's bytes (so that the
// rename never publishes a file whose blocks were lost), then the rename
// (the directory entry, and the directories MkdirAll made). One fsync of
// the file and one of its directory per object cost two waits for the
// disk each, and a burst of small misses spends its time in them. Where
// the system offers syncfs (Linux), the commits that wait at the same
// time share one instead: a single call writes back every file and
// directory of the cache's file system. A commit waits for a syncfs that
// started after it asked; whoever asks while none runs starts one, and
// everyone who asked during it is served by the next, so the number of
// syncs follows the disk's pace, not the number of objects. Elsewhere
// each commit syncs its own file and directory, as before.
//
// The choice is grouped commits, not checks after the fact: what a
// Commit returned is on disk, whole, so a power cut leaves either the
// object (its trailer and bytes as written) or no object, and nothing
// has to be verified when the cache opens again.

// syncer makes files and directories of the cache durable (see above).
type syncer struct {
	mu      sync.Mutex
	cond    sync.Cond
	root    *os.File // a handle on the cache directory, for syncfs; nil once closed
	running bool
	// started and finished count the group syncs; failed is the last one
	// that returned an error, err that error.
	started, finished, failed uint64
	err                       error

	syncs int64 // group syncs run, for tests
}

func newSyncer(root string) (*syncer, error) {
	d, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	s := &syncer{root: d}
	s.cond.L = &s.mu
	return s, nil
}

// sync makes f's bytes (unless f is nil) and the entries of the directory
// dir (unless it is "") durable, returning once they are.
func (s *syncer) sync(f *os.File, dir string) error {
	if !groupSync {
		return syncEach(f, dir)
	}
	s.mu.Lock()
	if s.root == nil {
		// Closed: a writer that outlived its backend syncs alone.
		s.mu.Unlock()
		return syncEach(f, dir)
	}
	// The first group sync to start from now on covers what the caller
	// wrote; one running now may have started before the writes.
	want := s.started + 1
	for s.finished < want {
		if s.running {
			s.cond.Wait()
			continue
		}
		s.running = true
		s.started++
		n, root := s.started, s.root
		s.mu.Unlock()
		err := syncFS(root)
		s.mu.Lock()
		s.running = false
		s.finished = n
		s.syncs++
		if err != nil {
			s.failed, s.err = n, err
		}
		s.cond.Broadcast()
	}
	var err error
	if s.failed >= want {
		// The sync that covered the caller, or a later one, failed:
		// the caller's pages may not have made it.
		err = s.err
	}
	s.mu.Unlock()
	return err
}

// close releases the handle on the cache directory; later syncs are each
// writer's own.
func (s *syncer) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.running {
		s.cond.Wait()
	}
	if s.root == nil {
		return nil
	}
	err := s.root.Close()
	s.root = nil
	return err
}

// syncEach fsyncs f and the directory dir, each when given.
func syncEach(f *os.File, dir string) error {
	if f != nil {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if dir != "" {
		return syncDir(dir)
	}
	return nil
}
