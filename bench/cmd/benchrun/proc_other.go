//go:build !linux

package main

import "time"

// procCPU is not available on this system.
func procCPU(int) (time.Duration, bool) { return 0, false }
