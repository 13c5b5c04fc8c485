package spool

import (
	"fmt"
	"os"
	"strconv"
)

// childEnv names the spool directory when the test binary runs as the
// child of a crash test (see crash_unix_test.go).
const childEnv = "LOKISLOG_SPOOL_CHILD_DIR"

// childFullEnv makes the child run childDiskFull instead.
const childFullEnv = "LOKISLOG_SPOOL_CHILD_DISK_FULL"

// childNoMmapEnv makes the child use the write path (Options.NoMmap).
const childNoMmapEnv = "LOKISLOG_SPOOL_CHILD_NOMMAP"

// childMain appends records forever, printing the id of each after Append
// returned, until it is killed. LOKISLOG_SPOOL_CHILD_FROM is the first id.
// After the first Append it prints "writer=mmap" or "writer=write".
func childMain(dir string) int {
	if os.Getenv(childFullEnv) != "" {
		return childDiskFull(dir)
	}
	from, _ := strconv.Atoi(os.Getenv("LOKISLOG_SPOOL_CHILD_FROM"))
	s, err := Open(Options{Dir: dir, SegmentSize: 4096, Sync: SyncNever, NoMmap: os.Getenv(childNoMmapEnv) != ""})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	var line []byte
	for i := from; ; i++ {
		if err := s.Append(payload(i, 100), 1, int64(i)); err != nil {
			fmt.Fprintln(os.Stderr, "child append:", err)
			return 3
		}
		if i == from {
			fmt.Println(map[bool]string{true: "writer=mmap", false: "writer=write"}[mapped(s)])
		}
		line = strconv.AppendInt(line[:0], int64(i), 10)
		line = append(line, '\n')
		os.Stdout.Write(line)
	}
}
