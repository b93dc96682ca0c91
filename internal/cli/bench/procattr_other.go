//go:build !linux

package bench

import "syscall"

// childAttr has nothing to add outside Linux; Stop still ends every child.
func childAttr() *syscall.SysProcAttr { return nil }
