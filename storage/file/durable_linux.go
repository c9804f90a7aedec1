package file

import (
	"os"

	"golang.org/x/sys/unix"
)

// groupSync: commits share syncfs calls (see syncer).
const groupSync = true

// syncFS writes back every file and directory of the file system that
// holds d, and waits for them, as syncfs(2) does (which reports write-back
// errors since Linux 5.8).
func syncFS(d *os.File) error {
	rc, err := d.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for {
			serr = unix.Syncfs(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return os.NewSyscallError("syncfs", serr)
}
