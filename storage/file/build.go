package file

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The build brings the index up to date with the object files after a
// start that could not trust it whole: it checks again the files of the
// keys the journal names past the point the index reached (a process
// that died), then, when the index is not known to hold every object
// (it is new, was deleted or damaged, or an earlier build was cut
// short), walks the objects directory and reads the trailer of each file.
// It runs in the background: requests are served meanwhile, each from
// the file its key hashes to, which is where the object is whether or not
// the index knows it yet.
//
// Each check holds the stripe of its key from reading the file until its
// finding is queued, so the applier receives a finding and the changes a
// commit, delete or eviction makes to the same file in the order they
// happened. A finding for an object the index holds as it is changes
// nothing; otherwise it records the file's object (its last use being
// the file's modification time, or a later use seen meanwhile) or, for a
// key whose file is gone or damaged, forgets it.

// startBuild starts the build: the keys of replay are checked, then, with
// walk, every file.
func (s *store) startBuild(replay []string, walk bool) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.bmu.Lock()
	s.buildStop, s.buildDone = cancel, done
	s.bmu.Unlock()
	go func() {
		defer close(done)
		s.build(ctx, replay, walk)
	}()
}

// stopBuild stops the build, if one runs, and waits for it.
func (s *store) stopBuild() {
	s.bmu.Lock()
	stop, done := s.buildStop, s.buildDone
	s.buildStop, s.buildDone = nil, nil
	s.bmu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (s *store) build(ctx context.Context, replay []string, walk bool) {
	n := 0
	for _, key := range replay {
		name := hexName(key)
		dir := filepath.Dir(s.ix.path(name))
		s.removeLeftovers(dir, readNames(dir, 0), name)
		if !s.observeKey(key) {
			return
		}
		if n++; n%buildBatch == 0 && s.doCtx(ctx, &op{kind: opSync}) != nil {
			return
		}
	}
	if walk && s.walk(ctx) != nil {
		return
	}
	s.doCtx(ctx, &op{kind: opComplete})
}

// doCtx queues o and waits until the index holds it or ctx ends.
func (s *store) doCtx(ctx context.Context, o *op) error {
	o.done = make(chan error, 1)
	if !s.submit(o) {
		return errClosed
	}
	select {
	case err := <-o.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// walk checks every object file.
func (s *store) walk(ctx context.Context) error {
	ix := s.ix
	n := 0
	for _, d := range readNames(ix.dir, 2) {
		ix.point("walk")
		if err := ctx.Err(); err != nil {
			return err
		}
		dir := filepath.Join(ix.dir, d)
		names := readNames(dir, 0)
		s.removeLeftovers(dir, names, "")
		for _, name := range names {
			if !isHashName(name) || name[0:2] != d {
				continue
			}
			if !s.observeFile(name) {
				return errClosed
			}
			if n++; n%buildBatch == 0 {
				if err := s.doCtx(ctx, &op{kind: opSync}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// readNames returns the names of length n (of any length when n is 0)
// in directory dir, sorted; none when it cannot be read (its objects
// cannot be served either).
func readNames(dir string, n int) []string {
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	if n > 0 {
		names = slices.DeleteFunc(names, func(s string) bool { return len(s) != n })
	}
	slices.Sort(names)
	return names
}

// removeLeftovers removes, of the files names of the object directory
// dir, those a commit left half-made when its process died (see
// writer.writeOut): named after an object file (of that object only,
// when of is not ""), a dot and the mark of the backend that made them,
// other than this one's. A commit of this backend may be writing such a
// file right now.
func (s *store) removeLeftovers(dir string, names []string, of string) {
	for _, name := range names {
		if len(name) > 64 && isHashName(name[:64]) && (of == "" || name[:64] == of) {
			s.removeLeftover(dir, name)
		}
	}
}

// removeLeftover removes the file name of dir if it is a temporary file of
// another backend's commit (see writer.writeOut).
func (s *store) removeLeftover(dir, name string) {
	mark, ok := strings.CutPrefix(name[64:], ".")
	if !ok {
		return
	}
	mark, _, ok = strings.Cut(mark, ".")
	if ok && mark != s.ix.mark {
		os.Remove(filepath.Join(dir, name))
	}
}

// observeKey checks the file of key and queues the finding; false once
// the store is closed.
func (s *store) observeKey(key string) bool {
	name := hexName(key)
	mu := s.ix.stripe(name)
	mu.Lock()
	defer mu.Unlock()
	o := s.observe(name, key)
	return o == nil || s.submit(o)
}

// observeFile checks the object file name and queues the finding.
func (s *store) observeFile(name string) bool {
	mu := s.ix.stripe(name)
	mu.Lock()
	defer mu.Unlock()
	o := s.observe(name, "")
	return o == nil || s.submit(o)
}

// observe reads the trailer of the object file name, whose key is key
// when known. It returns the finding, nil when there is nothing to say
// (a file of unknown key that is gone, damaged or unreadable).
func (s *store) observe(name, key string) *op {
	absent := func() *op {
		if key == "" {
			return nil
		}
		return &op{kind: opObserve, key: key}
	}
	f, err := os.Open(s.ix.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return absent()
	}
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	s.ix.point("trailer")
	m, err := readMeta(f, fi.Size())
	if errors.Is(err, errCorrupt) || err == nil && (hexName(m.Key) != name || key != "" && m.Key != key) {
		// A damaged object is never served: not indexed either. The
		// next fill of its key replaces it.
		return absent()
	}
	if err != nil {
		return nil
	}
	return &op{kind: opObserve, key: m.Key, present: true, r: rec{
		fileSize: fi.Size(), size: m.Size, storedAt: m.StoredAt,
		used: fi.ModTime().UnixNano(), ino: inode(fi), digest: indexedDigest(m.Header),
	}}
}
