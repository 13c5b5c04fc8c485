package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lokislog/lokislog/bench/internal/contest"
)

// peakRSSChildEnv makes the test binary print peakRSS and exit (TestMain).
const peakRSSChildEnv = "BENCHRUN_TEST_PEAKRSS"

// TestMain lets the test binary serve as benchrun's children: the smoke
// test re-executes it with -role=....
func TestMain(m *testing.M) {
	if os.Getenv(peakRSSChildEnv) != "" {
		fmt.Println(peakRSS())
		os.Exit(0)
	}
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-role=") {
			main()
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// TestSmoke runs benchrun end to end on a few thousand records with a short
// outage, for lokislog's contestants, and a short steady run. It asserts
// what does not depend on speed: the spool modes deliver everything,
// memory-only drops are counted exactly, the steady run logs its schedule
// with the outage inside it, and the report has its tables.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: runs benchrun end to end (about 15 s)")
	}
	o := &options{
		records: 2000, outage: 300 * time.Millisecond, benchtime: "1x", count: 1,
		stall: 10 * time.Second, timeout: time.Minute, dir: t.TempDir(),
		only: strings.Join([]string{contest.LokislogMemory, contest.LokislogSpill, contest.LokislogAlways}, ","),
		skip: "footprint", spillMin: 30_000,
		steady: 1500 * time.Millisecond, steadyRate: 2000, steadyRounds: 2,
		stallProbe: 100 * time.Millisecond,
	}
	var out bytes.Buffer
	r, err := runTo(o, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %v", r.Errors)
	}
	for _, name := range []string{contest.LokislogSpill, contest.LokislogAlways} {
		for _, kind := range []string{"normal", "outage", "steady"} {
			x, ok := runsOf(r, kind)[name]
			if !ok {
				t.Errorf("%s %s: no result", name, kind)
				continue
			}
			want := o.records
			if kind == "steady" {
				want = steadyRecords(o)
			}
			if x.Records != want || x.Delivered != want || x.Duplicates != 0 {
				t.Errorf("%s %s: delivered %d (%d duplicates) of %d logged, want %d", name, kind, x.Delivered, x.Duplicates, x.Records, want)
			}
		}
	}
	for _, kind := range []string{"normal", "outage", "steady"} {
		x := runsOf(r, kind)[contest.LokislogMemory]
		if x.Lokislog == nil || x.Records == 0 || x.CountedDrops != x.Records-x.Delivered {
			t.Errorf("memory-only %s: %d counted drops, %d missing of %d logged", kind, x.CountedDrops, x.Records-x.Delivered, x.Records)
		}
	}
	if r.Outage[contest.LokislogSpill].Outage != o.outage || r.Outage[contest.LokislogSpill].OutageAt == 0 {
		t.Errorf("outage run had no outage: %+v", r.Outage[contest.LokislogSpill])
	}
	for _, name := range []string{contest.JSONDiscard, contest.LokislogMemory, contest.LokislogSpill, contest.LokislogAlways} {
		x, ok := r.Steady[name]
		if !ok {
			t.Errorf("%s: no steady result", name)
			continue
		}
		if runs := r.SteadyAll[name]; len(runs) != o.steadyRounds || runs[medianRound(runs)].OutageHandle.Max != x.OutageHandle.Max {
			t.Errorf("%s: %d steady runs (want %d), the reported one not their median", name, len(runs), o.steadyRounds)
		}
		if x.Records != x.Scheduled || x.Scheduled != steadyRecords(o) || x.Capped {
			t.Errorf("%s steady: logged %d of %d scheduled (want %d), capped %v", name, x.Records, x.Scheduled, steadyRecords(o), x.Capped)
		}
		if x.OutageAt <= 0 || x.OutageAt >= o.steady || x.OutageCalls == 0 {
			t.Errorf("%s steady: outage window at %v, %d calls in it", name, x.OutageAt, x.OutageCalls)
		}
		if x.MaxCall <= 0 || x.P999 > x.P9999 || x.P9999 > x.MaxCall || x.OutageCall.Max > x.MaxCall {
			t.Errorf("%s steady: inconsistent call times: max %v, outage max %v, p99.9 %v, p99.99 %v", name, x.MaxCall, x.OutageCall.Max, x.P999, x.P9999)
		}
		// A handler part is part of a call: never slower than the slowest
		// call, nor over 1 ms more often.
		if h, c := x.OutageHandle, x.OutageCall; h.Max <= 0 || h.Max > c.Max || h.Over1ms > c.Over1ms {
			t.Errorf("%s steady: handler parts during the outage (slowest %v, %d > 1 ms) against whole calls (%v, %d)", name, h.Max, h.Over1ms, c.Max, c.Over1ms)
		}
		for _, c := range []slowestCalls{x.OutageCall, x.OutageHandle} {
			if (x.OutageGCCycles > 0) != (x.OutageGCPauseMax > 0) || (c.GC > 0) != (c.Pause > 0) {
				t.Errorf("%s steady: GC figures disagree: %d cycles in the window, longest pause %v; slowest call's cycle ended %v after it, pause %v",
					name, x.OutageGCCycles, x.OutageGCPauseMax, c.GC, c.Pause)
			}
		}
	}
	if st := r.Machine.Stalls; st == nil || st.Probed < o.stallProbe || st.Longest <= 0 {
		t.Errorf("stall probe: %+v, want one of at least %v", st, o.stallProbe)
	}
	if _, ok := r.Handle[contest.JSONDiscard]; !ok {
		t.Error("no Handle result for the floor")
	}
	if s := r.Spill["spill"]; s.Bytes == 0 || s.Spilled == 0 {
		t.Errorf("spill throughput run wrote nothing: %+v", s)
	}
	for _, want := range []string{"## Machine", "## Contestants", "## Steady logging with an outage in the middle", "## Targets (issue 4)",
		"| `lokislog-spill` 100% delivered, outage run |", "| `lokislog-always` 100% delivered, steady run |",
		"| `lokislog-memory` counted drops = missing, steady run |", "over the whole steady run", "GC cycle",
		"Stall probe, before the contestants: one goroutine reading the clock in a loop for ", "(stall probe: "} { // the probe runs at least -stall-probe (checked above), a little longer on a busy machine
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDurHist(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 127, 128, 129, 255, 256, 1000, 999_999, time.Millisecond, 1234567, time.Hour, 1<<62 + 12345} {
		i := histIndex(d)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d, out of range", d, i)
		}
		if up := histUpper(i); up < d || (i > 0 && histUpper(i-1) >= d) {
			t.Errorf("%d: bucket %d holds (%d, %d]", d, i, histUpper(i-1), up)
		}
		if up := histUpper(i); float64(up-d) > float64(d)/histSub {
			t.Errorf("%d: bucket %d upper bound %d is more than 1/%d above", d, i, up, histSub)
		}
	}
	var h durHist
	for i := 1; i <= 10000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.999, 9990 * time.Microsecond}, {0.9999, 9999 * time.Microsecond}, {1, 10000 * time.Microsecond}}
	for _, tt := range tests {
		got := h.quantile(tt.q, 10*time.Millisecond)
		if got < tt.want || float64(got-tt.want) > float64(tt.want)/histSub {
			t.Errorf("quantile(%v) = %v, want %v (within 1/%d above)", tt.q, got, tt.want, histSub)
		}
	}
	if got := h.quantile(0.9999, 9*time.Millisecond); got != 9*time.Millisecond {
		t.Errorf("quantile above the measured maximum = %v, want the maximum", got)
	}
}

// TestMedianRound picks the run with the median slowest Handle during the
// outage, the higher middle one of an even count; equal ones keep their order.
func TestMedianRound(t *testing.T) {
	ms := func(d ...int) []steadyResult {
		var out []steadyResult
		for _, v := range d {
			var x steadyResult
			x.OutageHandle.Max = time.Duration(v) * time.Millisecond
			out = append(out, x)
		}
		return out
	}
	for _, c := range []struct {
		runs []steadyResult
		want int
	}{
		{nil, -1}, {ms(5), 0}, {ms(3, 1, 2), 2}, {ms(9, 1, 4), 2}, {ms(1, 9, 4, 2), 2}, {ms(2, 2, 2), 1}, {ms(7, 1), 0},
	} {
		if got := medianRound(c.runs); got != c.want {
			t.Errorf("medianRound(%v) = %d, want %d", c.runs, got, c.want)
		}
	}
}

// TestProbeStalls feeds probeStalls a clock whose readings are given and
// checks the gaps it reports: the longest, and those over 1 ms and 100 µs.
func TestProbeStalls(t *testing.T) {
	t0 := time.Unix(1000, 0)
	steps := []time.Duration{0, 10 * time.Microsecond, 150 * time.Microsecond, 10 * time.Microsecond,
		3 * time.Millisecond, 20 * time.Microsecond, 1500 * time.Microsecond, 5 * time.Millisecond}
	var at time.Duration
	i := 0
	now := func() time.Time {
		if i < len(steps) {
			at += steps[i]
		} else {
			at += time.Millisecond / 2
		}
		i++
		return t0.Add(at)
	}
	st := probeStalls(9*time.Millisecond, now)
	// Readings at 0, 10µs, 160µs, 170µs, 3.17ms, 3.19ms, 4.69ms, 9.69ms:
	// the last one passes 9 ms and ends the probe.
	if st.Longest != 5*time.Millisecond {
		t.Errorf("longest gap %v, want 5ms", st.Longest)
	}
	if st.Over1ms != 3 {
		t.Errorf("%d gaps over 1 ms, want 3 (3ms, 1.5ms, 5ms)", st.Over1ms)
	}
	if st.Over100us != 4 {
		t.Errorf("%d gaps over 100 µs, want 4", st.Over100us)
	}
	if want := 9690 * time.Microsecond; st.Probed != want {
		t.Errorf("probed %v, want %v", st.Probed, want)
	}
	if i != len(steps) {
		t.Errorf("clock read %d times, want %d (the probe ends at the first reading past its duration)", i, len(steps))
	}

	// On the real clock the probe runs for about its duration.
	real := probeStalls(20*time.Millisecond, time.Now)
	if real.Probed < 20*time.Millisecond || real.Longest <= 0 || real.Longest > real.Probed {
		t.Errorf("real clock: %+v", real)
	}
}

// TestGCEndAfter: the end of the first garbage collection cycle at or
// after a call's start is found among MemStats' recent pause ends, also
// after the circular buffer wrapped, and only within the window, with that
// cycle's pause; gcPausesIn counts the cycles that ended in a window.
func TestGCEndAfter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := &runtime.MemStats{}
	// 300 cycles a second apart, the last ending 5 ms after t0: the
	// buffer of 256 holds cycles 45 to 300.
	for n := uint32(1); n <= 300; n++ {
		ms.PauseEnd[(n-1)%256] = uint64(t0.Add(5*time.Millisecond - time.Duration(300-n)*time.Second).UnixNano())
	}
	ms.NumGC = 300
	for n := uint32(1); n <= 300; n++ {
		ms.PauseNs[(n-1)%256] = uint64(n) * uint64(time.Microsecond)
	}
	for _, c := range []struct {
		name         string
		t            time.Time
		w            time.Duration
		after, pause time.Duration
	}{
		{"cycle ending 5 ms after the call", t0, 20 * time.Millisecond, 5 * time.Millisecond, 300 * time.Microsecond},
		{"window of 4 ms", t0, 4 * time.Millisecond, 0, 0},
		{"the cycle before the last", t0.Add(-time.Second + time.Millisecond), 5 * time.Millisecond, 4 * time.Millisecond, 299 * time.Microsecond},
		{"after the last cycle", t0.Add(10 * time.Millisecond), 20 * time.Millisecond, 0, 0},
	} {
		if after, pause := gcEndAfter(ms, c.t, c.w); after != c.after || pause != c.pause {
			t.Errorf("%s: got %v, %v, want %v, %v", c.name, after, pause, c.after, c.pause)
		}
	}
	if after, pause := gcEndAfter(&runtime.MemStats{}, t0, time.Second); after != 0 || pause != 0 {
		t.Errorf("no cycle yet: got %v, %v, want 0", after, pause)
	}
	// Cycles 291 to 300 end in the ten seconds before t0 + 5 ms; the
	// longest pause among 292..300 is cycle 300's.
	if n, longest := gcPausesIn(ms, t0.Add(-8*time.Second), t0.Add(time.Second)); n != 9 || longest != 300*time.Microsecond {
		t.Errorf("gcPausesIn: got %d cycles, longest %v, want 9, 300µs", n, longest)
	}
	if n, longest := gcPausesIn(ms, t0.Add(-100*time.Second), t0.Add(-98*time.Second)); n != 2 || longest != 201*time.Microsecond {
		t.Errorf("gcPausesIn, two old cycles: got %d, %v, want 2, 201µs", n, longest)
	}
	if n, _ := gcPausesIn(ms, t0.Add(6*time.Millisecond), t0.Add(time.Hour)); n != 0 {
		t.Errorf("gcPausesIn after the last cycle: got %d cycles", n)
	}
}
