//go:build !unix

package spool

func childDiskFull(string) int { return 1 }
