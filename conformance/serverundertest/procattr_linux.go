package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child get SIGKILL when this process dies, even
// by SIGKILL, so a reference server never outlives its run.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
