package main

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestPeakRSSIsTheChildsOwn checks that a child's peak RSS, as benchrun
// reports it, does not include its parent's memory: the parent holds
// 96 MiB when it starts a child that allocates nothing, and the child's
// figure must stay far below that. (getrusage's Maxrss of the same child
// includes the parent's peak RSS; it is logged for comparison.)
func TestPeakRSSIsTheChildsOwn(t *testing.T) {
	held := make([]byte, 96<<20)
	for i := 0; i < len(held); i += 4096 {
		held[i] = 1
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), peakRSSChildEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("child printed %q: %v", out, err)
	}
	var maxrss int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		maxrss = int64(ru.Maxrss) << 10
	}
	t.Logf("child: peakRSS %d KiB, getrusage Maxrss %d KiB; parent holds %d KiB", n>>10, maxrss>>10, len(held)>>10)
	if n <= 0 || n >= 64<<20 {
		t.Errorf("child's peak RSS %d bytes: want more than 0 and less than 64 MiB (its parent holds 96 MiB, the child nothing)", n)
	}
	runtime.KeepAlive(held)
}
