package main

import (
	"fmt"
	"os"
	"runtime/trace"
	"strings"
	"sync"
	"time"
)

// slowTracer keeps the last seconds of an execution trace in memory (the
// runtime's flight recorder) and writes them to a file when a logging
// call's handler part (Enabled and Handle, the target's figure) is the
// slowest so far and over a millisecond, so that what the call waited
// for (a lock, the GC, the scheduler, a system call) can be read with
// go tool trace. It runs with -profile in the steady run only; writing a
// snapshot takes the writer a few milliseconds, and the file is rewritten
// by each slower call. The slowest call during the outage has a file of its
// own (path with "-outage" before ".trace").
type slowTracer struct {
	path string
	fr   *trace.FlightRecorder

	mu      sync.Mutex
	slowest [2]time.Duration // of the snapshots written: whole run, outage
	pending chan slowCall
	done    chan struct{}
}

type slowCall struct {
	d      time.Duration
	outage bool
}

func startSlowTracer(path string) (*slowTracer, error) {
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: 2 * time.Second, MaxBytes: 32 << 20})
	if err := fr.Start(); err != nil {
		return nil, err
	}
	s := &slowTracer{path: path, fr: fr, pending: make(chan slowCall, 2), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

// observe is called after every logging call with its handler part's
// duration and whether that overlapped the outage.
func (s *slowTracer) observe(d time.Duration, outage bool) {
	if s == nil || d < time.Millisecond {
		return
	}
	for i, on := range [2]bool{true, outage} {
		if !on {
			continue
		}
		s.mu.Lock()
		slower := d > s.slowest[i]
		if slower {
			s.slowest[i] = d
		}
		s.mu.Unlock()
		if slower {
			select {
			case s.pending <- slowCall{d, i == 1}:
			default: // a snapshot is being written; it will cover this call too
			}
		}
	}
}

func (s *slowTracer) loop() {
	defer close(s.done)
	for c := range s.pending {
		time.Sleep(100 * time.Millisecond) // let the trace hold what followed the call
		if err := s.write(c); err != nil {
			fmt.Fprintln(os.Stderr, "slow-call trace:", err)
		}
	}
}

func (s *slowTracer) write(c slowCall) error {
	path := s.path
	if c.outage {
		path = strings.TrimSuffix(path, ".trace") + "-outage.trace"
	}
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if _, err := s.fr.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "slow-call trace: a %v call, in %s\n", c.d.Round(time.Microsecond), path)
	return os.Rename(path+".tmp", path)
}

// stop waits for a snapshot being written and stops the recorder.
func (s *slowTracer) stop() {
	if s == nil {
		return
	}
	close(s.pending)
	<-s.done
	s.fr.Stop()
}
