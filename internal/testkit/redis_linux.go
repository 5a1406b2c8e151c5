package testkit

import "syscall"

// redisProcAttr makes the kernel kill redis-server when the test binary
// dies, so no server outlives a crashed or killed test run.
func redisProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
