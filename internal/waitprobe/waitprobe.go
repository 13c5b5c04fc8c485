// Package waitprobe measures how late a goroutine that wakes up often is
// scheduled: a stand-in, in benchmarks, for a logging goroutine waiting for
// a P while the library's background work runs.
package waitprobe

import (
	"sync/atomic"
	"testing"
	"time"
)

// Probe is a goroutine that sleeps for a period again and again and
// records, for each sleep, how much longer than the period it took.
type Probe struct {
	phase              *atomic.Int64
	late, sum, n, over atomic.Int64
	stop, done         chan struct{}
}

// Start starts a probe sleeping period at a time. With phase nil every wait
// counts; otherwise a wait counts only when phase was odd when it began
// and unchanged when it ended (the caller makes phase odd while the work
// it measures is under way).
func Start(period time.Duration, phase *atomic.Int64) *Probe {
	p := &Probe{phase: phase, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run(period)
	return p
}

func (p *Probe) run(period time.Duration) {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		var p0 int64
		if p.phase != nil {
			p0 = p.phase.Load()
		}
		t0 := time.Now()
		time.Sleep(period)
		d := int64(time.Since(t0) - period)
		if p.phase != nil && (p0%2 == 0 || p.phase.Load() != p0) {
			continue
		}
		if d > p.late.Load() {
			p.late.Store(d)
		}
		p.sum.Add(d)
		if d > int64(time.Millisecond) {
			p.over.Add(1)
		}
		p.n.Add(1)
	}
}

// Report stops the probe and reports, per op of b: late-max-µs (the
// longest wait beyond the period: the longest stretch that did not let the
// probe run), late-mean-µs, late>1ms/op and wakeups/op.
func (p *Probe) Report(b *testing.B) {
	close(p.stop)
	<-p.done
	b.ReportMetric(float64(p.late.Load())/1e3, "late-max-µs")
	b.ReportMetric(float64(p.sum.Load())/1e3/float64(max(p.n.Load(), 1)), "late-mean-µs")
	b.ReportMetric(float64(p.over.Load())/float64(b.N), "late>1ms/op")
	b.ReportMetric(float64(p.n.Load())/float64(b.N), "wakeups/op")
}
