package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child killed when benchrun exits, so that an
// interrupted run leaves no child logging or receiving.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
