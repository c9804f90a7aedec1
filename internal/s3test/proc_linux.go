package s3test

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the server exit when the test process dies without
// cleaning up (a panic or a -timeout kill), so no versitygw outlives its
// tests.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
