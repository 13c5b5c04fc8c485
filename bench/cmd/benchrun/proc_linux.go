package main

import (
	"fmt"
	"os"
	"runtime/metrics"
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
		mem := newMemSample()
		var memAtMax string
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for sampling := true; sampling; {
			anon, file := procRSS()
			if anon+file > maxTotal {
				maxTotal, anonAtMax, fileAtMax = anon+file, anon, file
				memAtMax = mem.String()
			}
			maxAnon, maxFile = max(maxAnon, anon), max(maxFile, file)
			select {
			case <-tick.C:
			case <-done:
				sampling = false // one last sample was taken
			}
		}
		res <- fmt.Sprintf("rss (sampled every 5ms): peak %.1f MiB = anon %.1f + file %.1f; largest anon %.1f MiB, largest file %.1f MiB\nGo runtime at the peak (MiB): %s",
			mibK(maxTotal), mibK(anonAtMax), mibK(fileAtMax), mibK(maxAnon), mibK(maxFile), memAtMax)
	}()
	return func() string { close(done); return <-res }
}

func mibK(kib int64) float64 { return float64(kib) / 1024 }

// procStatus calls fn with each numeric field of /proc/self/status (name
// with its colon, value in the file's unit: kB for the sizes). It returns
// false if the file cannot be read.
func procStatus(fn func(name string, n int64)) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, ln := range strings.Split(string(b), "\n") {
		f := strings.Fields(ln)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		fn(f[0], n)
	}
	return true
}

// procRSS returns RssAnon and RssFile+RssShmem of this process, in KiB.
func procRSS() (anon, file int64) {
	procStatus(func(name string, n int64) {
		switch name {
		case "RssAnon:":
			anon = n
		case "RssFile:", "RssShmem:":
			file += n
		}
	})
	return anon, file
}

// peakRSS returns this process's peak resident set size in bytes: VmHWM
// of /proc/self/status, the high-water mark of the address space the
// process got at exec. getrusage's Maxrss is not that: a child started by
// os/exec (clone with CLONE_VM|CLONE_VFORK) shares its parent's address
// space until exec, and the kernel keeps the larger of the two high-water
// marks, so a child's Maxrss is at least its parent's peak RSS until then
// (a child with 2.4 MiB of VmHWM reports 105 MiB of Maxrss when its parent
// holds 100 MiB). Zero if it cannot be read.
func peakRSS() int64 {
	var hwm int64
	procStatus(func(name string, n int64) {
		if name == "VmHWM:" {
			hwm = n << 10 // kB
		}
	})
	return hwm
}

// memSample reads the Go runtime's memory classes (runtime/metrics): what
// the anonymous part of the RSS is made of.
type memSample struct{ s []metrics.Sample }

var memNames = []struct{ name, short string }{
	{"/memory/classes/heap/objects:bytes", "heap objects"},
	{"/memory/classes/heap/unused:bytes", "heap unused"},
	{"/memory/classes/heap/free:bytes", "heap free"},
	{"/memory/classes/heap/released:bytes", "released"},
	{"/gc/heap/live:bytes", "live at the last GC"},
	{"/gc/heap/goal:bytes", "heap goal"},
	{"/memory/classes/heap/stacks:bytes", "stacks"},
	{"/memory/classes/total:bytes", "runtime total"},
}

func newMemSample() *memSample {
	m := &memSample{s: make([]metrics.Sample, len(memNames))}
	for i, n := range memNames {
		m.s[i].Name = n.name
	}
	return m
}

func (m *memSample) String() string {
	metrics.Read(m.s)
	var b strings.Builder
	for i, n := range memNames {
		if i > 0 {
			b.WriteString(", ")
		}
		v := uint64(0)
		if m.s[i].Value.Kind() == metrics.KindUint64 {
			v = m.s[i].Value.Uint64()
		}
		fmt.Fprintf(&b, "%s %.1f", n.short, float64(v)/(1<<20))
	}
	return b.String()
}
