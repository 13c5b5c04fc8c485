//go:build !linux

package main

import "os/exec"

// dieWithParent is a no-op here: the receiver still stops when its
// standard input closes.
func dieWithParent(*exec.Cmd) {}
