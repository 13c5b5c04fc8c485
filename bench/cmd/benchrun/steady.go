package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"math"
	"math/bits"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lokislog/lokislog/bench/internal/contest"
	"github.com/lokislog/lokislog/bench/internal/receiver/ctl"
	"github.com/lokislog/lokislog/bench/internal/workload"
)

// The steady run logs at a fixed rate, well below what the cores can do,
// with the receiver answering 503 for o.outage in the middle: the slowest
// logger.Info call then shows whether logging waits on Loki (or the disk)
// instead of waiting for a CPU, as every call of the burst runs does.

// steadyResult is what a -role=steady child reports. The embedded
// runResult holds the delivery figures; its Records is the records
// actually logged, MaxCall, CallsOver1ms and CallsOver100us cover the whole
// run, and Burst is LoggingTime.
type steadyResult struct {
	runResult
	// Scheduled is the records the schedule holds (Rate × Steady).
	Scheduled uint64        `json:"scheduled"`
	Rate      uint64        `json:"rate"`
	Steady    time.Duration `json:"steady"`
	// LoggingTime is from the first record's due time to the end of the
	// last logger.Info call (Steady when the schedule was kept).
	LoggingTime time.Duration `json:"logging_time"`
	// MaxCallAt is when the slowest call (MaxCall) began, after the first
	// record's due time.
	MaxCallAt time.Duration `json:"max_call_at"`
	// MaxLag is how late, at most, a record was logged after its due time.
	MaxLag time.Duration `json:"max_lag"`
	// OutageHandle is the slowest handler part (Enabled and Handle, the
	// record already built) of the calls that overlapped the outage window
	// (for contestants without a receiver, the same window with no
	// outage): the target's figure. OutageCall is the slowest whole call,
	// the record built as logger.Info builds it (slog.NewRecord and its
	// attributes: what allocates, and may start a collection cycle whose
	// stop-the-world pause the call then waits out, whatever the handler)
	// and then the handler part.
	OutageHandle slowestCalls `json:"outage_handle"`
	OutageCall   slowestCalls `json:"outage_call"`
	// OutageGCCycles is how many garbage collection cycles ended in the
	// outage window, and OutageGCPauseMax the longest of their
	// stop-the-world pauses.
	OutageGCCycles   int           `json:"outage_gc_cycles"`
	OutageGCPauseMax time.Duration `json:"outage_gc_pause_max,omitempty"`
	OutageCalls      uint64        `json:"outage_calls"`
	// P999 and P9999 are the 99.9th and 99.99th percentiles of the call
	// durations (upper bounds of a histogram with 1.6 % wide buckets).
	P999  time.Duration `json:"p99_9"`
	P9999 time.Duration `json:"p99_99"`
	// Cap is when logging stops, whatever is left (after the first
	// record); Capped is true when it did, leaving records unlogged.
	Cap    time.Duration `json:"cap"`
	Capped bool          `json:"capped"`
	// StuckCalls is the number of logger.Info calls still running when
	// the driver stopped waiting for them, Cap + 2 s after the start;
	// each counts in MaxCall as long as it had run then.
	StuckCalls int `json:"stuck_calls,omitempty"`
}

// slowestCalls is the slowest of the timed calls (or of their handler parts)
// that overlapped the outage window, and how many of them took over 1 ms.
type slowestCalls struct {
	Max time.Duration `json:"max"`
	// GC is how long after the slowest one began a garbage collection
	// cycle of the child ended, when one ended within gcWindow of it (0:
	// none did). A cycle that started in the call (the allocating
	// goroutine starts it and waits for its first stop-the-world) ends a
	// few milliseconds later.
	GC time.Duration `json:"gc,omitempty"`
	// Pause is that cycle's stop-the-world pauses, together
	// (MemStats.PauseNs): the part of the call during which no goroutine
	// of the child ran, whatever the handler.
	Pause   time.Duration `json:"pause,omitempty"`
	Over1ms uint64        `json:"over_1ms"`
	at      time.Time     // when the slowest began
}

// add counts a call of d that began at t.
func (c *slowestCalls) add(d time.Duration, t time.Time) {
	if d > c.Max {
		c.Max, c.at = d, t
	}
	if d > time.Millisecond {
		c.Over1ms++
	}
}

// merge adds o's calls to c's.
func (c *slowestCalls) merge(o *slowestCalls) {
	if o.Max > c.Max {
		c.Max, c.at = o.Max, o.at
	}
	c.Over1ms += o.Over1ms
}

// gcWindow is how long after a call began the end of a garbage collection
// cycle still counts as the cycle's (gcEndAfter): longer than a cycle's
// mark phase here (1–7 ms), far shorter than the seconds between cycles.
const gcWindow = 20 * time.Millisecond

// gcCycles yields the end and the stop-the-world pauses of each garbage
// collection cycle recorded in ms, newest first. MemStats keeps the last
// 256 (PauseEnd, PauseNs).
func gcCycles(ms *runtime.MemStats) iter.Seq2[time.Time, time.Duration] {
	return func(yield func(time.Time, time.Duration) bool) {
		n := min(ms.NumGC, uint32(len(ms.PauseEnd)))
		for i := range n {
			j := (ms.NumGC - 1 - i) % uint32(len(ms.PauseEnd))
			if !yield(time.Unix(0, int64(ms.PauseEnd[j])), time.Duration(ms.PauseNs[j])) {
				return
			}
		}
	}
}

// gcEndAfter returns how long after t the first garbage collection cycle
// recorded in ms that ended at or after t ended, if within w, and that
// cycle's stop-the-world pauses; 0, 0 otherwise.
func gcEndAfter(ms *runtime.MemStats, t time.Time, w time.Duration) (after, pause time.Duration) {
	for end, p := range gcCycles(ms) {
		if d := end.Sub(t); d >= 0 && d <= w && (after == 0 || d < after) {
			after, pause = max(d, 1), p
		}
	}
	return after, pause
}

// gcPausesIn returns how many garbage collection cycles recorded in ms
// ended in [from, to) and the longest of their stop-the-world pauses.
func gcPausesIn(ms *runtime.MemStats, from, to time.Time) (cycles int, longest time.Duration) {
	for end, p := range gcCycles(ms) {
		if !end.Before(from) && end.Before(to) {
			cycles++
			longest = max(longest, p)
		}
	}
	return cycles, longest
}

// steadyCap is how long a steady run may log before it stops: twice the
// scheduled time plus 30 s, so that a contestant whose Handle blocks during
// the outage can catch up, but not hang the run.
func steadyCap(steady time.Duration) time.Duration { return 2*steady + 30*time.Second }

// steadyOutageAt is when the outage begins after the first record: in the
// middle of the logging time.
func steadyOutageAt(steady, outage time.Duration) time.Duration { return max(0, (steady-outage)/2) }

// steadyRecords is the number of records of the schedule.
func steadyRecords(o *options) uint64 {
	return uint64(math.Round(float64(o.steadyRate) * o.steady.Seconds()))
}

// durHist is a histogram of durations: exact below 128 ns, then 64
// buckets per power of two (each at most 1/64 of its lower bound wide).
type durHist [histBuckets]uint64

const (
	histSubBits = 6
	histSub     = 1 << histSubBits               // buckets per power of two
	histBuckets = (64-histSubBits)*histSub + 128 // up to 2^63 ns
)

func histIndex(d time.Duration) int {
	v := uint64(max(d, 0))
	if v < 2*histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return shift*histSub + int(v>>shift)
}

// histUpper returns the largest duration of bucket i.
func histUpper(i int) time.Duration {
	if i < 2*histSub {
		return time.Duration(i)
	}
	shift := i/histSub - 1
	top := uint64(i%histSub + histSub)
	return time.Duration((top+1)<<shift - 1)
}

func (h *durHist) add(d time.Duration) { h[histIndex(d)]++ }

func (h *durHist) merge(o *durHist) {
	for i, n := range o {
		h[i] += n
	}
}

// quantile returns the upper bound of the bucket holding the q-quantile,
// at most maxd (the slowest call measured exactly).
func (h *durHist) quantile(q float64, maxd time.Duration) time.Duration {
	var total uint64
	for _, n := range h {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var cum uint64
	for i, n := range h {
		if cum += n; cum >= rank {
			return min(histUpper(i), maxd)
		}
	}
	return maxd
}

// steadyWorker is one logging goroutine's record of its calls. mu guards
// everything but inCall: the driver may read a worker that is still stuck
// in a call.
type steadyWorker struct {
	mu                 sync.Mutex
	logged             uint64
	hist               durHist
	max                time.Duration
	maxAt              time.Time
	over1ms, over100us uint64
	outCalls           uint64
	out, outH          slowestCalls // during the outage: whole calls, handler parts
	maxLag             time.Duration
	lastEnd            time.Time
	inCall             atomic.Int64 // start of the call in progress (unix ns), or 0
}

// childSteady logs steadyRecords(o) records through one contestant at
// o.steadyRate records per second in total, from contest.Workers
// goroutines, with the receiver answering 503 for o.outage from the middle
// of the run, and waits for delivery as childRun does.
func childSteady(o *options) error {
	c, ok := contest.ByName(o.contestant)
	if !ok {
		return fmt.Errorf("unknown contestant %q", o.contestant)
	}
	n := steadyRecords(o)
	if n == 0 || n > 1<<32 {
		return fmt.Errorf("-steady-rate × -steady = %d records: want 1 to 2^32", n)
	}
	var rc *ctl.Client
	if c.Ships {
		rc = ctl.NewClient(o.receiverURL)
		if err := rc.Reset(n); err != nil {
			return fmt.Errorf("reset receiver: %w", err)
		}
	}
	inst, err := c.New(contest.Env{ReceiverURL: o.receiverURL, Dir: o.dir})
	if err != nil {
		return err
	}
	// Each call does what logger.Info does (the caller's pc aside: no
	// contestant adds the source) with the handler part timed on its own.
	h := workload.NewLogger(inst.Handler).Handler()
	ctx := context.Background()
	var slow *slowTracer
	if o.profile != "" {
		stop, err := startProfiles(o.profile)
		if err != nil {
			return err
		}
		defer stop()
		if slow, err = startSlowTracer(o.profile + ".slowest.trace"); err != nil {
			return err
		}
	}

	res := steadyResult{Scheduled: n, Rate: o.steadyRate, Steady: o.steady, Cap: steadyCap(o.steady)}
	res.Outage = o.outage
	outage := o.outage > 0 && c.Ships

	var (
		outageStart atomic.Int64 // unix ns; 0 until the outage (or its window) begins
		capped      atomic.Bool
		wg          sync.WaitGroup
		workers     = make([]*steadyWorker, contest.Workers)
		stopOutage  = make(chan struct{})
	)
	defer close(stopOutage)
	start := time.Now().Add(10 * time.Millisecond) // the first record's due time; every worker starts alike
	deadline := start.Add(res.Cap)
	if o.outage > 0 {
		at := start.Add(steadyOutageAt(o.steady, o.outage))
		go func() {
			select {
			case <-time.After(time.Until(at)):
			case <-stopOutage:
				return
			}
			t := time.Now()
			if outage {
				if err := rc.Outage(o.outage); err != nil {
					fmt.Fprintln(os.Stderr, "outage:", err)
				}
			}
			outageStart.Store(t.UnixNano())
		}()
	}
	outNs := o.outage.Nanoseconds()
	for g := range contest.Workers {
		w := new(steadyWorker)
		workers[g] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(g); seq < n; seq += contest.Workers {
				due := start.Add(time.Duration(seq * uint64(time.Second) / o.steadyRate))
				t := time.Now()
				if d := due.Sub(t); d > 0 {
					// Sleep at least a millisecond: every record due by the
					// wake-up is then logged at once.
					time.Sleep(max(d, time.Millisecond))
				}
				if time.Now().After(deadline) {
					capped.Store(true)
					return
				}
				id := workload.RequestID(seq)
				t = time.Now()
				w.inCall.Store(t.UnixNano())
				r := workload.Record(id)
				th := time.Now()
				if h.Enabled(ctx, slog.LevelInfo) {
					_ = h.Handle(ctx, r) // as logger.Info does, the error dropped
				}
				end := time.Now()
				w.inCall.Store(0)
				d, dh := end.Sub(t), end.Sub(th)
				ws := outageStart.Load()
				during := ws != 0 && t.UnixNano() < ws+outNs && end.UnixNano() >= ws
				duringH := ws != 0 && th.UnixNano() < ws+outNs && end.UnixNano() >= ws
				slow.observe(dh, duringH)

				w.mu.Lock()
				w.logged++
				w.hist.add(d)
				if d > w.max {
					w.max, w.maxAt = d, t
				}
				w.maxLag = max(w.maxLag, t.Sub(due))
				w.lastEnd = end
				if d > 100*time.Microsecond {
					w.over100us++
					if d > time.Millisecond {
						w.over1ms++
					}
				}
				if during {
					w.outCalls++
					w.out.add(d, t)
				}
				if duringH {
					w.outH.add(dh, th)
				}
				w.mu.Unlock()
			}
		}()
	}
	logged := make(chan struct{})
	go func() { wg.Wait(); close(logged) }()
	select {
	case <-logged:
		slow.stop()
	case <-time.After(time.Until(deadline) + 2*time.Second):
		fmt.Fprintln(os.Stderr, "steady: logging calls still running after the cap; not waiting for them")
	}

	// Collect what the workers measured.
	var (
		hist    durHist
		lastEnd time.Time
		now     = time.Now()
	)
	for _, w := range workers {
		w.mu.Lock()
		hist.merge(&w.hist)
		res.Records += w.logged
		if w.max > res.MaxCall {
			res.MaxCall, res.MaxCallAt = w.max, w.maxAt.Sub(start)
		}
		res.CallsOver1ms += w.over1ms
		res.CallsOver100us += w.over100us
		res.OutageCall.merge(&w.out)
		res.OutageHandle.merge(&w.outH)
		res.OutageCalls += w.outCalls
		res.MaxLag = max(res.MaxLag, w.maxLag)
		if w.lastEnd.After(lastEnd) {
			lastEnd = w.lastEnd
		}
		w.mu.Unlock()
		if ns := w.inCall.Load(); ns != 0 {
			// Stuck in a call: count it as long as it has run.
			res.StuckCalls++
			d := now.Sub(time.Unix(0, ns))
			if d > res.MaxCall {
				res.MaxCall, res.MaxCallAt = d, time.Unix(0, ns).Sub(start)
			}
			res.CallsOver1ms++
			res.CallsOver100us++
			lastEnd = now
			if ws := outageStart.Load(); ws != 0 && ns < ws+outNs {
				// Whether it is stuck in the handler or before: both.
				res.OutageCall.add(d, time.Unix(0, ns))
				res.OutageHandle.add(d, time.Unix(0, ns))
				res.OutageCalls++
			}
		}
	}
	res.Capped = capped.Load() || res.StuckCalls > 0
	if ws := outageStart.Load(); ws != 0 || !res.OutageCall.at.IsZero() || !res.OutageHandle.at.IsZero() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms) // stops the world once, after the logging
		for _, c := range []*slowestCalls{&res.OutageCall, &res.OutageHandle} {
			if !c.at.IsZero() {
				c.GC, c.Pause = gcEndAfter(&ms, c.at, gcWindow)
			}
		}
		if ws != 0 {
			res.OutageGCCycles, res.OutageGCPauseMax = gcPausesIn(&ms, time.Unix(0, ws), time.Unix(0, ws+outNs))
		}
	}
	res.P999 = hist.quantile(0.999, res.MaxCall)
	res.P9999 = hist.quantile(0.9999, res.MaxCall)
	if !lastEnd.IsZero() {
		res.LoggingTime = lastEnd.Sub(start)
	}
	res.Burst = res.LoggingTime
	if ns := outageStart.Load(); ns != 0 {
		res.OutageAt = time.Unix(0, ns).Sub(start)
	}

	// Flush concurrently with watching the receiver, as childRun does;
	// waiting ends at the latest o.timeout after logging ended.
	flushDone, cancelFlush := startFlush(inst, o.timeout)
	defer cancelFlush()
	if c.Ships {
		wo := *o
		wo.records = res.Records
		wo.timeout = time.Since(start) + o.timeout
		res.Ended = waitDelivery(rc, &wo, start, outage, &outageStart, flushDone, &res.runResult)
		if res.Records == 0 {
			res.Ended = "nothing logged"
		}
	} else {
		select {
		case err := <-flushDone:
			if err != nil {
				res.FlushErr = err.Error()
			}
		case <-time.After(o.timeout):
			res.FlushErr = "flush did not return"
		}
		res.Delivered = res.Records
		res.Delivery = res.LoggingTime
		res.Ended = "local"
	}

	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- inst.Close(closeCtx) }()
	select {
	case err := <-closed:
		if err != nil {
			res.CloseErr = err.Error()
		}
	case <-time.After(35 * time.Second):
		res.CloseErr = "close did not return within 35 s"
	}
	if inst.Lokislog != nil {
		st := inst.Lokislog.Stats()
		res.Lokislog = &st
		res.CountedDrops = contest.Dropped(st)
	}
	return writeResult(o.result, res)
}

// steadyRun runs contestant c's steady run in a child process.
func (p *parent) steadyRun(c contest.Contestant, round int) {
	name := "steady-" + c.Name
	if round > 0 {
		name += fmt.Sprintf("-%d", round+1)
	}
	recv0, recvOK := procCPU(p.recv.Pid())
	b, cs, err := p.child(name, p.binary(c), "-role=steady", "-contestant="+c.Name,
		"-steady="+p.o.steady.String(), fmt.Sprintf("-steady-rate=%d", p.o.steadyRate), "-outage="+p.o.outage.String(),
		"-stall="+p.o.stall.String(), "-timeout="+p.o.timeout.String(), "-profile="+p.profileBase(name))
	if recv1, ok := procCPU(p.recv.Pid()); ok && recvOK && round == 0 {
		p.res.ReceiverCPU["steady/"+c.Name] = recv1 - recv0
	}
	var r steadyResult
	if err == nil {
		err = json.Unmarshal(b, &r)
	}
	if err != nil {
		p.fail("steady run %s (round %d): %v", c.Name, round+1, err)
		return
	}
	logf("steady %-18s round %d: logged %d/%d in %v (behind by at most %v%s); slowest call %v at %v (during the outage, from %v: %v, its Handle %v), %d calls > 1ms, p99.9 %v, p99.99 %v; delivered %d (%s), cpu %v",
		c.Name, round+1, r.Records, r.Scheduled, r.LoggingTime.Round(time.Millisecond), r.MaxLag.Round(time.Microsecond), cappedNote(r),
		r.MaxCall, r.MaxCallAt.Round(time.Millisecond), r.OutageAt.Round(time.Millisecond), r.OutageCall.Max, r.OutageHandle.Max, r.CallsOver1ms, r.P999, r.P9999, r.Delivered, r.Ended, cs.CPU.Round(time.Millisecond))
	if r.Lokislog != nil {
		logf("  lokislog stats: enqueued %d exported %d spilled %d replayed %d dropped %v requests %d retries %d",
			r.Lokislog.Enqueued, r.Lokislog.Exported, r.Lokislog.Spilled, r.Lokislog.Replayed, r.Lokislog.Dropped,
			r.Lokislog.Requests, r.Lokislog.Retries)
	}
	p.res.SteadyAll[c.Name] = append(p.res.SteadyAll[c.Name], r)
	p.res.steadyPS[c.Name] = append(p.res.steadyPS[c.Name], cs)
}

// steadyMedians picks, for each contestant, the steady round whose slowest
// call during the outage is the median (the higher one of an even count) as
// the reported steady run.
func (p *parent) steadyMedians() {
	for name, runs := range p.res.SteadyAll {
		i := medianRound(runs)
		p.res.Steady[name], p.res.SteadyPS[name] = runs[i], p.res.steadyPS[name][i]
	}
}

// medianRound returns the index of the round with the median slowest
// handler part during the outage (the target's figure); -1 when there is
// none.
func medianRound(runs []steadyResult) int {
	if len(runs) == 0 {
		return -1
	}
	idx := make([]int, len(runs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(runs[a].OutageHandle.Max, runs[b].OutageHandle.Max) })
	return idx[len(idx)/2]
}

func cappedNote(r steadyResult) string {
	switch {
	case r.StuckCalls > 0:
		return fmt.Sprintf(", stopped at the %v cap with %d calls stuck", r.Cap, r.StuckCalls)
	case r.Capped:
		return fmt.Sprintf(", stopped at the %v cap", r.Cap)
	}
	return ""
}

// checkSteady validates the steady run's flags.
func checkSteady(o *options) error {
	if o.steady <= 0 || slices.Contains(splitList(o.skip), "steady") {
		return nil
	}
	if o.steadyRate == 0 {
		return errors.New("-steady-rate must be positive")
	}
	if o.steadyRounds < 1 {
		return errors.New("-steady-rounds must be at least 1")
	}
	if n := steadyRecords(o); n == 0 || n > 1<<32 {
		return fmt.Errorf("-steady-rate × -steady = %d records: want 1 to 2^32", n)
	}
	if o.outage >= o.steady {
		return fmt.Errorf("-outage (%v) must be shorter than -steady (%v) to fall in its middle", o.outage, o.steady)
	}
	return nil
}
