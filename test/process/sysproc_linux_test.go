package process_test

import "syscall"

// sysProcAttr makes the kernel SIGKILL a child if the test binary dies
// (a test timeout, a crash), so that no server outlives the run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
