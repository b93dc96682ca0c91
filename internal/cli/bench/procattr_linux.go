package bench

import "syscall"

// childAttr makes the kernel kill a sidecar bench started if bench itself
// dies without cleaning up (SIGKILL, crash).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
