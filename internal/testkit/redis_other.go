//go:build !linux

package testkit

import "syscall"

// redisProcAttr returns nil: only Linux can tie the server's life to the
// test binary's (Pdeathsig); elsewhere t.Cleanup alone stops it.
func redisProcAttr() *syscall.SysProcAttr { return nil }
