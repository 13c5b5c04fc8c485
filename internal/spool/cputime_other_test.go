//go:build !unix

package spool

func processCPU() int64 { return -1 }
