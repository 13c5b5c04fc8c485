package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// machine describes where the benchmark ran.
type machine struct {
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	// LoadStart and LoadEnd are /proc/loadavg when the run began and
	// ended: other work on the machine skews every figure.
	LoadStart string `json:"load_start"`
	// Library is the lokislog tree measured: its git commit and how many
	// of the library's files differed from it.
	Library string `json:"library"`
	LoadEnd string `json:"load_end"`
	// Stalls is what the machine alone does to a running goroutine
	// (probeStalls), measured before the contestants run; nil when
	// -stall-probe is 0.
	Stalls *stalls `json:"stalls,omitempty"`
}

// stalls is the outcome of probeStalls: the gaps a goroutine that only
// reads the clock sees between two readings. On an idle machine such a
// gap is time the thread did not run (the kernel or, on a VM, the
// hypervisor took its CPU), and any call that spans it takes that long,
// whatever the call does: it bounds from below the slowest call the steady
// runs can measure.
type stalls struct {
	Probed  time.Duration `json:"probed"`
	Longest time.Duration `json:"longest"`
	Over1ms int           `json:"over_1ms"`
	// Over100us counts the gaps over 100 µs.
	Over100us int `json:"over_100us"`
}

// probeStalls reads the clock in a loop for d and reports the gaps
// between consecutive readings. now is time.Now but for tests.
func probeStalls(d time.Duration, now func() time.Time) stalls {
	start := now()
	last, end := start, start.Add(d)
	var st stalls
	for {
		t := now()
		gap := t.Sub(last)
		last = t
		st.Longest = max(st.Longest, gap)
		if gap > time.Millisecond {
			st.Over1ms++
		}
		if gap > 100*time.Microsecond {
			st.Over100us++
		}
		if !t.Before(end) {
			st.Probed = t.Sub(start)
			return st
		}
	}
}

func describeMachine() machine {
	return machine{
		GOOS:      runtime.GOOS,
		GOARCH:    runtime.GOARCH,
		CPU:       cpuModel(),
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
		LoadStart: loadAvg(),
		Library:   libraryVersion(),
	}
}

// libraryVersion describes the lokislog tree the bench module replaces
// its dependency with (the parent directory), from git; "" when unknown.
func libraryVersion() string {
	mod, err := moduleDir()
	if err != nil {
		return ""
	}
	root := filepath.Dir(mod)
	head, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	v := "commit " + strings.TrimSpace(string(head))
	st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "handler", "buffer", "exporter", "internal").Output()
	if err == nil {
		if n := len(strings.FieldsFunc(string(st), func(r rune) bool { return r == '\n' })); n > 0 {
			v += fmt.Sprintf(" with %d uncommitted library files", n)
		}
	}
	return v
}

// loadAvg returns the 1, 5 and 15 minute load averages (Linux), or "".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// cpuModel reads the CPU model from /proc/cpuinfo (Linux), else "unknown".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
