package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procCPU returns the user+system CPU time of a running process from
// /proc/PID/stat, assuming the usual 100 clock ticks per second.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}

// rssWatch samples /proc/self/status every 5 ms and keeps the largest
// anonymous (Go heap, stacks, runtime) and file-backed (code, the spool's
// mapped segments) resident sizes, in KiB, and the heap's share at the
// peak of the total: what makes up peak RSS. stop returns a line for the
// child's log.
func rssWatch() (stop func() string) {
	done := make(chan struct{})
	res := make(chan string, 1)
	go func() {
		var maxAnon, maxFile, maxTotal, anonAtMax, fileAtMax int64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for sampling := true; sampling; {
			anon, file := procRSS()
			if anon+file > maxTotal {
				maxTotal, anonAtMax, fileAtMax = anon+file, anon, file
			}
			maxAnon, maxFile = max(maxAnon, anon), max(maxFile, file)
			select {
			case <-tick.C:
			case <-done:
				sampling = false // one last sample was taken
			}
		}
		res <- fmt.Sprintf("rss (sampled every 5ms): peak %.1f MiB = anon %.1f + file %.1f; largest anon %.1f MiB, largest file %.1f MiB",
			mibK(maxTotal), mibK(anonAtMax), mibK(fileAtMax), mibK(maxAnon), mibK(maxFile))
	}()
	return func() string { close(done); return <-res }
}

func mibK(kib int64) float64 { return float64(kib) / 1024 }

// procRSS returns RssAnon and RssFile+RssShmem of this process, in KiB.
func procRSS() (anon, file int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, ln := range strings.Split(string(b), "\n") {
		f := strings.Fields(ln)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "RssAnon:":
			anon = n
		case "RssFile:", "RssShmem:":
			file += n
		}
	}
	return anon, file
}
