//go:build !linux

package s3test

import "os/exec"

// dieWithParent is a no-op where the kernel cannot tie the server's life to
// the test process; StopShared and test cleanups stop it.
func dieWithParent(cmd *exec.Cmd) {}
