//go:build unix

package spool

import "syscall"

// processCPU returns the CPU time (user and system) the process has used,
// in nanoseconds, or -1 when it is unknown.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
