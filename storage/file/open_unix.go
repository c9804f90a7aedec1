//go:build unix

package file

import (
	"os"
	"syscall"
)

// openRead opens an object file for reading. os.Open would also try to
// put the descriptor in the runtime's poller, which refuses regular files
// after four more system calls; an object file is read with pread and
// sendfile, which need none of it.
func openRead(path string) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		switch err {
		case nil:
			return os.NewFile(uintptr(fd), path), nil
		case syscall.EINTR:
			continue
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
}

// idleFilesBound returns the bound of the descriptors kept open for the
// next Opens: idleFilesMax, or a quarter of the process's limit of open
// files if that is lower.
func idleFilesBound() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int(min(uint64(idleFilesMax), rl.Cur/4))
}
