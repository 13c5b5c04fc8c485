package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokislog/lokislog/bench/internal/contest"
	"github.com/lokislog/lokislog/bench/internal/receiver/ctl"
	"github.com/lokislog/lokislog/bench/internal/workload"
	"github.com/lokislog/lokislog/handler"
)

// handleResult is what a -role=handle child reports.
type handleResult struct {
	N          int     `json:"n"`
	NsPerOp    float64 `json:"ns_per_op"`
	AllocsOp   int64   `json:"allocs_per_op"`
	BytesOp    int64   `json:"bytes_per_op"`
	DropsPerOp float64 `json:"drops_per_op"`
}

// runResult is what a -role=run child reports.
type runResult struct {
	Records uint64 `json:"records"`
	// Burst is how long logging all records took.
	Burst time.Duration `json:"burst"`
	// Delivery is from the first record logged to the receiver counting
	// the last distinct record it got (zero when nothing arrived).
	Delivery time.Duration `json:"delivery"`
	// Delivered is the number of distinct records the receiver got;
	// Duplicates the entries it got twice or more.
	Delivered  uint64 `json:"delivered"`
	Duplicates uint64 `json:"duplicates"`
	// Ended says why waiting ended: "all", "settled", "stalled", "timeout"
	// or "local" (nothing to deliver).
	Ended string `json:"ended"`
	// WireBytes is what the receiver got for accepted pushes (request
	// line, headers, body); RejectedWireBytes for pushes answered 503.
	WireBytes         uint64 `json:"wire_bytes"`
	RejectedWireBytes uint64 `json:"rejected_wire_bytes"`
	// MaxCall is the slowest logger.Info call; CallsOver1ms and
	// CallsOver100us count the calls slower than that.
	MaxCall        time.Duration `json:"max_call"`
	CallsOver1ms   uint64        `json:"calls_over_1ms"`
	CallsOver100us uint64        `json:"calls_over_100us"`
	// Outage is the outage's length; OutageAt when it began after the
	// burst started.
	Outage   time.Duration `json:"outage"`
	OutageAt time.Duration `json:"outage_at"`
	// FlushErr is the error of the contestant's flush, CloseErr of its
	// close.
	FlushErr string `json:"flush_err,omitempty"`
	CloseErr string `json:"close_err,omitempty"`

	// Lokislog's counters, after Shutdown.
	Lokislog *handler.Stats `json:"lokislog,omitempty"`
	// CountedDrops is the sum of Lokislog.Dropped.
	CountedDrops uint64 `json:"counted_drops"`

	// SpillBytes is what lokislog wrote to its spool during the outage,
	// in SpillTime (from the outage start to the last growth seen).
	SpillBytes int64         `json:"spill_bytes"`
	SpillTime  time.Duration `json:"spill_time"`
}

// writeResult writes a child's result to path and, where the system tells
// it (Linux), the child's peak resident set size to path+".rss" ([peakRSS]).
// Every child calls it last, so the high-water mark covers its whole life.
func writeResult(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if hwm := peakRSS(); hwm > 0 {
		if err := os.WriteFile(path+rssSuffix, strconv.AppendInt(nil, hwm, 10), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(path, b, 0o644)
}

// rssSuffix names the file, next to a child's result, holding its peak RSS.
const rssSuffix = ".rss"

// childHandle runs the Handle benchmark of one contestant.
func childHandle(o *options) error {
	c, ok := contest.ByName(o.contestant)
	if !ok {
		return fmt.Errorf("unknown contestant %q", o.contestant)
	}
	var failed string
	res := testing.Benchmark(func(b *testing.B) {
		dir, err := os.MkdirTemp(o.dir, "handle-")
		if err != nil {
			failed = err.Error()
			b.Skip(err)
		}
		defer os.RemoveAll(dir)
		contest.BenchHandle(b, c, contest.Env{ReceiverURL: o.receiverURL, Dir: dir})
	})
	if failed != "" {
		return fmt.Errorf("benchmark: %s", failed)
	}
	if res.N == 0 {
		return fmt.Errorf("benchmark of %s failed (see its output)", c.Name)
	}
	return writeResult(o.result, handleResult{
		N:          res.N,
		NsPerOp:    float64(res.T.Nanoseconds()) / float64(res.N),
		AllocsOp:   res.AllocsPerOp(),
		BytesOp:    res.AllocedBytesPerOp(),
		DropsPerOp: res.Extra["drops/op"],
	})
}

// childRun logs o.records records through one contestant in a burst from
// contest.Workers goroutines and waits until the receiver has them or
// delivery ends.
func childRun(o *options) error {
	c, ok := contest.ByName(o.contestant)
	if !ok {
		return fmt.Errorf("unknown contestant %q", o.contestant)
	}
	var rc *ctl.Client
	if c.Ships {
		rc = ctl.NewClient(o.receiverURL)
		if err := rc.Reset(o.records); err != nil {
			return fmt.Errorf("reset receiver: %w", err)
		}
	}
	inst, err := c.New(contest.Env{ReceiverURL: o.receiverURL, Dir: o.dir})
	if err != nil {
		return err
	}
	logger := workload.NewLogger(inst.Handler)
	stopRSS := rssWatch()
	defer func() { fmt.Fprintln(os.Stderr, stopRSS()) }()
	res := runResult{Records: o.records, Outage: o.outage}
	outage := o.outage > 0 && c.Ships

	// The outage begins when the first worker is half way; the spill
	// sampler then watches the spool grow.
	var (
		outageOnce  sync.Once
		outageStart atomic.Int64 // unix ns
		samplerDone = make(chan struct{})
		spill       spillSampler
	)
	startOutage := func() {
		go func() {
			t := time.Now()
			if err := rc.Outage(o.outage); err != nil {
				fmt.Fprintln(os.Stderr, "outage:", err)
			}
			outageStart.Store(t.UnixNano())
			if inst.Lokislog != nil && inst.SpoolDir != "" {
				spill.run(inst.Lokislog, t, t.Add(o.outage), samplerDone)
			} else {
				close(samplerDone)
			}
		}()
	}
	if !outage {
		close(samplerDone)
	}

	if o.profile != "" {
		stop, err := startProfiles(o.profile)
		if err != nil {
			return err
		}
		defer stop()
	}
	var wg sync.WaitGroup
	calls := make([]callStats, contest.Workers)
	start := time.Now()
	for g := range contest.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := uint64(contest.Workers)
			half := o.records / w / 2
			var n uint64
			cs := &calls[g]
			for seq := uint64(g); seq < o.records; seq += w {
				if outage && n == half {
					outageOnce.Do(startOutage)
				}
				n++
				id := workload.RequestID(seq)
				t := time.Now()
				workload.Log(logger, id)
				cs.add(time.Since(t))
			}
		}()
	}
	wg.Wait()
	res.Burst = time.Since(start)
	if o.profile != "" {
		if err := writeHeapProfile(o.profile + ".heap.pprof"); err != nil {
			return err
		}
	}
	for _, cs := range calls {
		res.MaxCall = max(res.MaxCall, cs.max)
		res.CallsOver1ms += cs.over1ms
		res.CallsOver100us += cs.over100us
	}

	// Flush concurrently with watching the receiver.
	flushDone, cancelFlush := startFlush(inst, o.timeout)
	defer cancelFlush()

	if c.Ships {
		res.Ended = waitDelivery(rc, o, start, outage, &outageStart, flushDone, &res)
	} else {
		if err := <-flushDone; err != nil {
			res.FlushErr = err.Error()
		}
		res.Delivered = o.records
		res.Delivery = time.Since(start)
		res.Ended = "local"
	}
	<-samplerDone
	if ns := outageStart.Load(); ns != 0 {
		res.OutageAt = time.Unix(0, ns).Sub(start)
	}
	res.SpillBytes, res.SpillTime = spill.result()

	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := inst.Close(closeCtx); err != nil {
		res.CloseErr = err.Error()
	}
	if inst.Lokislog != nil {
		st := inst.Lokislog.Stats()
		res.Lokislog = &st
		res.CountedDrops = contest.Dropped(st)
	}
	return writeResult(o.result, res)
}

// waitDelivery polls the receiver until it has every record, or delivery
// settled (the flush returned and nothing new arrived for a second), or
// stalled (nothing new for o.stall after the outage), or o.timeout passed.
func waitDelivery(rc *ctl.Client, o *options, start time.Time, outage bool, outageStart *atomic.Int64,
	flushDone <-chan error, res *runResult) string {
	var (
		flushed    bool
		lastUnique uint64
		lastChange = time.Now()
		ended      string
		st         ctl.Stats
	)
	for {
		select {
		case err := <-flushDone:
			flushed = true
			flushDone = nil
			if err != nil {
				res.FlushErr = err.Error()
			}
		case <-time.After(10 * time.Millisecond):
		}
		var err error
		st, err = rc.Stats()
		if err != nil {
			ended = "receiver error: " + err.Error()
			break
		}
		now := time.Now()
		if st.Unique != lastUnique {
			lastUnique, lastChange = st.Unique, now
		}
		if st.Unique >= o.records {
			ended = "all"
			break
		}
		quietSince := lastChange
		if outage {
			ns := outageStart.Load()
			if ns == 0 {
				continue // the outage has not begun
			}
			end := time.Unix(0, ns).Add(o.outage)
			if now.Before(end) {
				continue
			}
			if end.After(quietSince) {
				quietSince = end
			}
		}
		quiet := now.Sub(quietSince)
		if flushed && quiet >= time.Second {
			ended = "settled"
			break
		}
		if quiet >= o.stall {
			ended = "stalled"
			break
		}
		if now.Sub(start) >= o.timeout {
			ended = "timeout"
			break
		}
	}
	res.Delivered = st.Unique
	res.Duplicates = st.Duplicates
	res.WireBytes = st.WireBytes
	res.RejectedWireBytes = st.RejectedWireBytes
	if st.LastNewUnixNano != 0 {
		res.Delivery = time.Unix(0, st.LastNewUnixNano).Sub(start)
	}
	return ended
}

// spillSampler watches lokislog's spool size during the outage.
type spillSampler struct {
	bytes int64
	dur   time.Duration
}

// run samples h's spool size every 5 ms from t0 until the outage ends at
// t1, and keeps the growth up to the last sample that grew.
func (s *spillSampler) run(h *handler.Handler, t0, t1 time.Time, done chan<- struct{}) {
	defer close(done)
	base := h.Stats().SpoolBytes
	last := base
	for now := time.Now(); now.Before(t1); now = time.Now() {
		b := h.Stats().SpoolBytes
		if b > last {
			last = b
			s.bytes = b - base
			s.dur = now.Sub(t0)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *spillSampler) result() (int64, time.Duration) { return s.bytes, s.dur }

// callStats are one worker's logger.Info call durations.
type callStats struct {
	max                time.Duration
	over1ms, over100us uint64
	_                  [40]byte // keep workers off each other's cache line
}

func (c *callStats) add(d time.Duration) {
	if d > 100*time.Microsecond {
		c.over100us++
		if d > time.Millisecond {
			c.over1ms++
		}
		if d > c.max {
			c.max = d
		}
	}
}

// startProfiles starts the CPU profile into base.cpu.pprof and the mutex
// and block profiles (contention on locks and waits show where slow calls
// wait); stop writes base.mutex.pprof and base.block.pprof.
func startProfiles(base string) (stop func(), err error) {
	f, err := os.Create(base + ".cpu.pprof")
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	runtime.SetMutexProfileFraction(10)
	runtime.SetBlockProfileRate(int(100 * time.Microsecond))
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		for _, name := range []string{"mutex", "block"} {
			if f, err := os.Create(base + "." + name + ".pprof"); err == nil {
				pprof.Lookup(name).WriteTo(f, 0)
				f.Close()
			}
		}
	}, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// startFlush calls inst.Flush (when it has one) on a goroutine of its own
// with a context ending after timeout, and returns the channel its result
// comes on; cancel ends the context.
func startFlush(inst *contest.Instance, timeout time.Duration) (done <-chan error, cancel context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	ch := make(chan error, 1)
	go func() {
		if inst.Flush == nil {
			ch <- nil
			return
		}
		ch <- inst.Flush(ctx)
	}()
	return ch, cancel
}
