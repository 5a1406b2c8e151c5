//go:build !linux

package main

import "os/exec"

// dieWithParent is a no-op where the kernel offers no parent-death
// signal; the deferred stop still ends the child on a normal exit.
func dieWithParent(*exec.Cmd) {}
