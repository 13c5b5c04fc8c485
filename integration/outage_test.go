package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/lokislog/lokislog/handler"
)

// TestOutage503 logs steadily from 8 goroutines while the receiver answers
// 503 (with and without Retry-After) for a few seconds in the middle; after
// Shutdown every record must be in VictoriaLogs exactly once, in per-stream
// order on each of the handler's two connections (memory mode sends two
// pushes at once while batches queue up, and they may arrive in either
// order). Memory only: the bound holds the whole backlog.
func TestOutage503(t *testing.T) {
	t.Parallel() // mostly waiting on outages; independent run_id
	vl := newVictoriaLogs(t)
	rcv := newReceiver(t, vl.base)
	rcv.byConn.Store(true)
	runID := newRunID(t)
	errs := newErrorLog()
	h, err := handler.New(handler.Config{
		URL:            rcv.url(),
		Protocol:       "json", // the receiver checks per-stream order of JSON pushes
		Labels:         map[string]string{"service_name": "itest", "run_id": runID},
		LabelKeys:      []string{"worker"},
		BatchWait:      100 * time.Millisecond,
		BatchSize:      64 << 10,
		MaxBufferBytes: 128 << 20, // holds the whole outage's backlog
		ErrorHandler:   errs.handle,
	})
	if err != nil {
		t.Fatalf("handler.New: %v", err)
	}
	t.Cleanup(func() { _ = h.Shutdown(shutdownCtx(t)) })

	lg := startLoggers(t, h, func() string {
		if rcv.unavailable.Load() {
			return "down"
		}
		return "up"
	})

	// Up: pushes go through.
	if !waitFor(10*time.Second, func() bool { return rcv.forwarded.Load() >= 3 }) {
		t.Fatalf("no pushes reached the receiver within 10s (forwarded %d)", rcv.forwarded.Load())
	}
	// Down for at least 3s, until both kinds of 503 were served twice.
	rcv.unavailable.Store(true)
	downAt := time.Now()
	ok := waitFor(30*time.Second, func() bool {
		return time.Since(downAt) >= 3*time.Second && rcv.withRA.Load() >= 2 && rcv.plain.Load() >= 2
	})
	rcv.unavailable.Store(false)
	if !ok {
		t.Fatalf("outage: after %v served %d 503s with Retry-After and %d without; want 2 of each",
			time.Since(downAt), rcv.withRA.Load(), rcv.plain.Load())
	}
	t.Logf("outage of %v: %d 503s with Retry-After, %d without",
		time.Since(downAt).Round(time.Millisecond), rcv.withRA.Load(), rcv.plain.Load())
	// Up again: deliveries resume while logging goes on.
	upAt := rcv.forwarded.Load()
	if !waitFor(60*time.Second, func() bool { return rcv.forwarded.Load() >= upAt+3 }) {
		t.Fatalf("pushes did not resume within 60s after the outage")
	}
	time.Sleep(500 * time.Millisecond)
	want := lg.stop()
	if err := h.Shutdown(shutdownCtx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	total := lg.total()
	st := h.Stats()
	t.Logf("logged %d records; stats: exported %d, export errors %d, requests %d, retries %d",
		total, st.Exported, st.ExportErrors, st.Requests, st.Retries)
	if n := lg.handleErrs.Load(); n > 0 {
		t.Errorf("Handle returned %d errors", n)
	}
	checkAllExported(t, st, total)
	if st.Retries == 0 && st.ExportErrors == 0 {
		t.Errorf("Stats show neither retries nor export errors after %d 503s", rcv.withRA.Load()+rcv.plain.Load())
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
	// Records logged during the outage are among them.
	got := map[string]string{}
	for _, row := range vl.query(t, "", filter+" | unpack_logfmt fields (phase) | stats by (phase) count() n") {
		got[row["phase"]] = row["n"]
	}
	if got["down"] == "" || got["up"] == "" {
		t.Errorf("records by phase: %v; want some logged while down and some while up", got)
	}
}
