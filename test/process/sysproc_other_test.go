//go:build !linux

package process_test

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
