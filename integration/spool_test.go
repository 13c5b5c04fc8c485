package integration

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokislog/lokislog/handler"
)

// Tests of the on-disk spool (issue 3) against VictoriaLogs: an outage
// under steady logging with a small memory bound, a restart, and a crash
// of a child process.

// TestSpoolOutage logs steadily from 8 goroutines with a small memory bound
// while the receiver first refuses connections, then answers 503, then
// comes back: every record must arrive exactly once, in per-stream order,
// and the spool must end empty.
func TestSpoolOutage(t *testing.T) {
	t.Parallel() // mostly waiting on outages; independent run_id
	vl := newVictoriaLogs(t)
	rcv := newReceiver(t, vl.base)
	runID := newRunID(t)
	errs := newErrorLog()
	h, err := handler.New(handler.Config{
		URL:            rcv.url(),
		Protocol:       "json", // the receiver checks per-stream order of JSON pushes
		Labels:         map[string]string{"service_name": "itest", "run_id": runID},
		LabelKeys:      []string{"worker"},
		BatchWait:      100 * time.Millisecond,
		BatchSize:      16 << 10,
		MaxBufferBytes: 128 << 10, // far below the outage's backlog: it must spill
		SpoolDir:       t.TempDir(),
		ErrorHandler:   errs.handle,
	})
	if err != nil {
		t.Fatalf("handler.New: %v", err)
	}
	t.Cleanup(func() { _ = h.Shutdown(shutdownCtx(t)) })

	lg := startLoggers(t, h, func() string {
		if rcv.unavailable.Load() {
			return "unavailable"
		}
		return "up"
	})

	if !waitFor(10*time.Second, func() bool { return rcv.forwarded.Load() >= 3 }) {
		t.Fatalf("no pushes reached the receiver within 10s")
	}
	rcv.stop() // connection refused
	time.Sleep(3 * time.Second)
	rcv.unavailable.Store(true)
	rcv.start() // 503
	downAt := time.Now()
	ok := waitFor(30*time.Second, func() bool {
		return time.Since(downAt) >= 2*time.Second && rcv.withRA.Load()+rcv.plain.Load() >= 2
	})
	rcv.unavailable.Store(false)
	if !ok {
		t.Fatalf("outage: served only %d 503s in %v", rcv.withRA.Load()+rcv.plain.Load(), time.Since(downAt))
	}
	upAt := rcv.forwarded.Load()
	if !waitFor(60*time.Second, func() bool { return rcv.forwarded.Load() >= upAt+3 }) {
		t.Fatalf("pushes did not resume within 60s after the outage")
	}
	time.Sleep(500 * time.Millisecond)
	want := lg.stop()
	if err := h.Shutdown(shutdownCtx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	st := h.Stats()
	total := lg.total()
	t.Logf("logged %d records; stats %+v", total, st)
	if n := lg.handleErrs.Load(); n > 0 {
		t.Errorf("Handle returned %d errors", n)
	}
	checkAllExported(t, st, total)
	if st.Spilled == 0 || st.Replayed == 0 {
		t.Errorf("Stats: spilled %d, replayed %d; want both > 0 with a %d-byte memory bound", st.Spilled, st.Replayed, 128<<10)
	}
	if st.SpoolEntries != 0 {
		t.Errorf("Stats: the spool still holds %d entries after Shutdown", st.SpoolEntries)
	}
	for _, err := range errs.all() {
		t.Logf("ErrorHandler (expected during the outage): %v", err)
	}

	filter := fmt.Sprintf(`{run_id=%q}`, runID)
	if n := vl.waitCount(t, "", filter, total); n != total {
		t.Errorf("VictoriaLogs holds %d records of this run, want %d", n, total)
	}
	vl.checkExactlyOnce(t, "", filter, "unpack_logfmt", "worker", want)
	rcv.checkOrderOK(t)
}

// TestSpoolRestart logs while the receiver is down, shuts down with a short
// deadline, and starts a new handler on the same directory with the
// receiver up: the first handler's records must arrive exactly once and
// before the second handler's.
func TestSpoolRestart(t *testing.T) {
	t.Parallel() // mostly waiting on outages; independent run_id
	vl := newVictoriaLogs(t)
	rcv := newReceiver(t, vl.base)
	runID := newRunID(t)
	dir := t.TempDir()
	errs := newErrorLog()
	const workers, before, after = 4, 750, 250 // per worker
	cfg := handler.Config{
		Protocol:     "json",
		Labels:       map[string]string{"service_name": "itest", "run_id": runID},
		LabelKeys:    []string{"worker"},
		BatchWait:    50 * time.Millisecond,
		SpoolDir:     dir,
		ErrorHandler: errs.handle,
	}
	logRange := func(h *handler.Handler, from, to int) {
		for i := from; i < to; i++ {
			for w := range workers {
				slog.New(h).Info("restart record", "worker", w, "seq", w*stride+i)
			}
		}
	}

	// First process: the receiver is down (connection refused).
	cfg.URL = deadURL(t)
	h1, err := handler.New(cfg)
	if err != nil {
		t.Fatalf("handler.New: %v", err)
	}
	logRange(h1, 0, before)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	err = h1.Shutdown(ctx)
	cancel()
	st1 := h1.Stats()
	t.Logf("first handler: Shutdown: %v; stats %+v", err, st1)
	if st1.Exported != 0 {
		t.Errorf("first handler exported %d entries to a dead address", st1.Exported)
	}
	for reason, n := range st1.Dropped {
		if n > 0 {
			t.Errorf("first handler: %d dropped (%s), want all of them kept in the spool", n, reason)
		}
	}

	// Second process: same directory, the receiver is up.
	cfg.URL = rcv.url()
	h2, err := handler.New(cfg)
	if err != nil {
		t.Fatalf("handler.New on the same spool: %v", err)
	}
	t.Cleanup(func() { _ = h2.Shutdown(shutdownCtx(t)) })
	logRange(h2, before, before+after)
	if err := h2.Shutdown(shutdownCtx(t)); err != nil {
		t.Fatalf("second handler: Shutdown: %v", err)
	}
	st2 := h2.Stats()
	t.Logf("second handler: stats %+v", st2)
	// The backlog is replayed; new records may go through the spool too
	// (while it holds data it is the queue).
	if st2.Replayed < workers*before {
		t.Errorf("second handler replayed %d entries, want at least the %d of the backlog", st2.Replayed, workers*before)
	}
	if st2.Exported != workers*(before+after) {
		t.Errorf("second handler exported %d entries, want %d", st2.Exported, workers*(before+after))
	}
	for reason, n := range st2.Dropped {
		if n > 0 {
			t.Errorf("second handler: %d dropped (%s)", n, reason)
		}
	}
	if st2.SpoolEntries != 0 {
		t.Errorf("the spool still holds %d entries", st2.SpoolEntries)
	}

	filter := fmt.Sprintf(`{run_id=%q}`, runID)
	total := workers * (before + after)
	if n := vl.waitCount(t, "", filter, total); n != total {
		t.Errorf("VictoriaLogs holds %d records of this run, want %d", n, total)
	}
	want := map[string]seqRange{}
	for w := range workers {
		want[strconv.Itoa(w)] = seqRange{from: w * stride, count: before + after}
	}
	vl.checkExactlyOnce(t, "", filter, "unpack_logfmt", "worker", want)
	rcv.checkOrderOK(t) // the backlog went before the new records
}

// Child process modes of TestSpoolCrash, run by TestMain.
const (
	envChild    = "LOKISLOG_ITEST_CHILD"
	envChildDir = "LOKISLOG_ITEST_DIR"
	envChildRun = "LOKISLOG_ITEST_RUN"
	envChildURL = "LOKISLOG_ITEST_URL"
	envChildN   = "LOKISLOG_ITEST_N"
)

// TestSpoolCrash kills a child process (this test binary re-executed) with
// SIGKILL while it logs to a receiver that is down, then starts a handler on
// the child's spool directory with VictoriaLogs up: every record the child
// logged must arrive exactly once.
//
//   - always: the kill comes in the middle of logging; every record whose
//     Handle returned must arrive (and at most the one being logged more).
//   - spill: the child logs, waits until its spool holds every record, and
//     is killed.
func TestSpoolCrash(t *testing.T) {
	t.Parallel() // mostly waiting on outages; independent run_id
	vl := newVictoriaLogs(t)
	for _, mode := range []string{"always", "spill"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			runID := newRunID(t)
			dir := t.TempDir()
			const n = 2000 // always: kill after this many; spill: log this many
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(),
				envChild+"="+mode, envChildDir+"="+dir, envChildRun+"="+runID,
				envChildURL+"="+deadURL(t), envChildN+"="+strconv.Itoa(n))
			cmd.Stderr = &prefixWriter{t: t}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatalf("start child: %v", err)
			}
			var killOnce sync.Once
			kill := func() { killOnce.Do(func() { _ = cmd.Process.Kill() }) }
			t.Cleanup(kill)
			// The child never ends on its own: a watchdog ends a stuck one.
			var timedOut atomic.Bool
			watchdog := time.AfterFunc(60*time.Second, func() { timedOut.Store(true); kill() })
			defer watchdog.Stop()

			returned := 0 // records whose Handle returned nil, as the child reported
			spilled := false
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				line := sc.Text()
				switch {
				case line == "spilled":
					spilled = true
					kill()
				case strings.HasPrefix(line, "ok "):
					seq, err := strconv.Atoi(strings.TrimPrefix(line, "ok "))
					if err != nil || seq != returned {
						t.Errorf("child: unexpected line %q after %d records", line, returned)
					}
					returned++
					if mode == "always" && returned == n {
						kill() // mid-logging: the child goes on logging until it dies
					}
				default:
					t.Errorf("child: %s", line)
					kill()
				}
			}
			err = cmd.Wait()
			if timedOut.Load() {
				t.Fatalf("child killed after 60s without finishing (%d records returned)", returned)
			}
			t.Logf("child (%s): %d records returned; exit: %v", mode, returned, err)
			if mode == "spill" && !spilled {
				t.Fatalf("child did not report its records spilled")
			}
			if returned < n {
				t.Fatalf("child returned from only %d Handle calls, want at least %d", returned, n)
			}

			h, err := handler.New(handler.Config{
				URL:       vl.pushBase(),
				Labels:    map[string]string{"service_name": "itest", "run_id": runID},
				LabelKeys: []string{"worker"},
				BatchWait: 50 * time.Millisecond,
				SpoolDir:  dir,
			})
			if err != nil {
				t.Fatalf("handler.New on the child's spool: %v", err)
			}
			t.Cleanup(func() { _ = h.Shutdown(shutdownCtx(t)) })
			if err := h.Shutdown(shutdownCtx(t)); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			st := h.Stats()
			t.Logf("replaying handler: stats %+v", st)
			for reason, c := range st.Dropped {
				if c > 0 {
					t.Errorf("replaying handler: %d dropped (%s)", c, reason)
				}
			}
			if st.SpoolEntries != 0 {
				t.Errorf("the spool still holds %d entries", st.SpoolEntries)
			}

			filter := fmt.Sprintf(`{run_id=%q}`, runID)
			got := vl.waitCount(t, "", filter, returned)
			// The record being logged when the kill came may be in the
			// spool too: at most one more than reported.
			if got < returned || got > returned+1 {
				t.Errorf("VictoriaLogs holds %d records, want %d (or one more)", got, returned)
			}
			if st.Replayed != uint64(got) {
				t.Errorf("Stats: replayed %d, VictoriaLogs holds %d", st.Replayed, got)
			}
			vl.checkExactlyOnce(t, "", filter, "unpack_logfmt", "worker", map[string]seqRange{"0": {from: 0, count: got}})
		})
	}
}

// runChild is the child process of TestSpoolCrash. It logs to a dead
// address and reports on stdout "ok <seq>" after each Handle that returned
// nil; in spill mode it logs n records, waits until the spool holds them
// all and reports "spilled" (or, after 30s, what it holds). It never
// returns on its own: the parent kills it.
func runChild(mode string) int {
	n, _ := strconv.Atoi(os.Getenv(envChildN))
	h, err := handler.New(handler.Config{
		URL:          os.Getenv(envChildURL),
		Labels:       map[string]string{"service_name": "itest", "run_id": os.Getenv(envChildRun)},
		LabelKeys:    []string{"worker"},
		BatchWait:    50 * time.Millisecond,
		SpoolDir:     os.Getenv(envChildDir),
		SpoolMode:    mode,
		ErrorHandler: func(err error) { fmt.Fprintln(os.Stderr, "error handler:", err) },
	})
	if err != nil {
		fmt.Println("handler.New:", err)
		return 1
	}
	logOne := func(seq int) {
		r := slog.NewRecord(time.Now(), slog.LevelInfo, "crash record", 0)
		r.Add("worker", 0, "seq", seq)
		if err := h.Handle(context.Background(), r); err != nil {
			fmt.Printf("Handle %d: %v\n", seq, err)
			return
		}
		fmt.Printf("ok %d\n", seq) // os.Stdout is unbuffered: one write each
	}
	if mode == "always" {
		for seq := 0; ; seq++ {
			logOne(seq)
		}
	}
	for seq := range n {
		logOne(seq)
	}
	// The buffer spills batches whose export keeps failing after a few
	// seconds (its SpillAfter, 5s); 30s is a generous bound for that.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := h.Stats()
		if st.SpoolEntries == int64(n) {
			fmt.Println("spilled")
			select {} // wait for the kill
		}
		if time.Now().After(deadline) {
			fmt.Printf("spool holds %d of %d entries after 30s: %+v\n", st.SpoolEntries, n, st)
			select {}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// prefixWriter passes a child's stderr to the test log.
type prefixWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Logf("child stderr: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// stride separates the seq numbers of workers: worker w logs w*stride,
// w*stride+1, ...
const stride = 10_000_000

// loggers are 8 goroutines logging about 1,000 records a second each, each
// on its own stream (label worker), until stopped.
type loggers struct {
	stopCh     chan struct{}
	wg         sync.WaitGroup
	counts     []int
	handleErrs atomic.Int64
	stopOnce   sync.Once
}

// startLoggers starts the goroutines; phase names the receiver's state,
// written into each record.
func startLoggers(t *testing.T, h *handler.Handler, phase func() string) *loggers {
	lg := &loggers{stopCh: make(chan struct{}), counts: make([]int, goroutines)}
	for g := range goroutines {
		lg.wg.Go(func() {
			for i := 0; ; i++ {
				if i%10 == 0 {
					select {
					case <-lg.stopCh:
						lg.counts[g] = i
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
				r := slog.NewRecord(time.Now(), slog.LevelInfo, "outage record", 0)
				r.Add("seq", g*stride+i, "worker", g, "phase", phase())
				if err := h.Handle(context.Background(), r); err != nil {
					lg.handleErrs.Add(1)
				}
			}
		})
	}
	t.Cleanup(func() { lg.stop() })
	return lg
}

// stop stops the goroutines and returns what each logged, by worker label.
func (lg *loggers) stop() map[string]seqRange {
	lg.stopOnce.Do(func() {
		close(lg.stopCh)
		lg.wg.Wait()
	})
	want := make(map[string]seqRange)
	for g, n := range lg.counts {
		want[strconv.Itoa(g)] = seqRange{from: g * stride, count: n}
	}
	return want
}

// total is the number of records logged; valid after stop.
func (lg *loggers) total() int {
	n := 0
	for _, c := range lg.counts {
		n += c
	}
	return n
}

// checkAllExported checks Stats show total records enqueued and exported
// and none dropped.
func checkAllExported(t *testing.T, st handler.Stats, total int) {
	t.Helper()
	if st.Enqueued != uint64(total) || st.Exported != uint64(total) {
		t.Errorf("Stats: enqueued %d, exported %d; want %d each", st.Enqueued, st.Exported, total)
	}
	for reason, n := range st.Dropped {
		if n > 0 {
			t.Errorf("Stats: %d dropped (%s), want none", n, reason)
		}
	}
}
