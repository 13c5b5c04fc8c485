//go:build !linux

package main

import "time"

// procCPU is not available on this system.
func procCPU(int) (time.Duration, bool) { return 0, false }

// rssWatch is not available on this system.
func rssWatch() (stop func() string) {
	return func() string { return "rss composition: not measured on this system" }
}

// peakRSS is not available on this system: the parent reports the child's
// Maxrss (getrusage), which can include the parent's own peak RSS until
// the child's start.
func peakRSS() int64 { return 0 }
