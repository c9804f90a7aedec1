package file

import (
	"fmt"
	"os"
	"path/filepath"
)

// The objects directory has one level of 256 directories, named after the
// first byte of the file names they hold (objects/ab/<hash>), so that a
// commit makes a directory only the first time one of them is needed, not
// nearly every time while the cache is young, as the two levels of 65,536
// directories of older versions did (objects/ab/cd/<hash>).
const (
	layoutName = "layout"
	layout     = "objects/ab/<hash>\n"
)

// migrateLayout moves the object files of a cache written by an older
// version into this layout, then writes the layout file that spares later
// starts the look. With the lock held, nobody else writes there; a start
// that dies midway leaves each file in its old place or its new one, and
// the next start goes on. The index names files, not paths, so it stays
// as it is. Temporary files of commits cut short are removed.
func migrateLayout(root string, noSync bool) error {
	if b, err := os.ReadFile(filepath.Join(root, layoutName)); err == nil && string(b) == layout {
		return nil
	}
	objects := filepath.Join(root, objectsDir)
	for _, d1 := range readNames(objects, 2) {
		top := filepath.Join(objects, d1)
		moved := false
		for _, d2 := range readNames(top, 2) {
			leaf := filepath.Join(top, d2)
			for _, name := range readNames(leaf, 0) {
				switch {
				case isHashName(name) && name[0:2] == d1 && name[2:4] == d2:
					if err := os.Rename(filepath.Join(leaf, name), filepath.Join(top, name)); err != nil {
						return fmt.Errorf("cache directory: moving objects to the new layout: %w", err)
					}
					moved = true
				case len(name) > 64 && isHashName(name[:64]):
					os.Remove(filepath.Join(leaf, name))
				}
			}
			os.Remove(leaf) // stays if anything else is in it
		}
		if moved && !noSync {
			if err := syncDir(top); err != nil {
				return fmt.Errorf("cache directory: %w", err)
			}
		}
	}
	if err := writeDurably(root, layoutName, []byte(layout)); err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	return nil
}
