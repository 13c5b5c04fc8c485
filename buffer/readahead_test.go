package buffer

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
)

// downBuffer is an "always" mode buffer on dir whose exporter fails
// every push: what it is given stays in the spool for the next start.
func downBuffer(t *testing.T, dir string) *Buffer {
	t.Helper()
	var down atomic.Bool
	down.Store(true)
	return mustNew(t, Config{Exporter: &recorder{fail: switchable(&down)}, SpoolDir: dir, SpoolMode: SpoolAlways,
		RetryInterval: time.Millisecond})
}

// stopSoon shuts b down within 100 ms: with a spool, the rest stays there.
func stopSoon(b *Buffer) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	b.Shutdown(ctx)
}

// started waits for the buffer an exporter's hook runs under (its
// Export calls may begin before New returns).
func started(bp *atomic.Pointer[Buffer]) *Buffer {
	for {
		if b := bp.Load(); b != nil {
			return b
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAlwaysModeReadsNextBatchWhileSending replays a spool with nothing
// logged meanwhile and checks, inside each Export call, that the worker
// reads the next batch from the spool while that call is still running:
// the records not yet read drop below what the batches exported so far
// leave. Without the read ahead they stay there until the call returns
// (the wait then times out).
func TestAlwaysModeReadsNextBatchWhileSending(t *testing.T) {
	dir := t.TempDir()
	b1 := downBuffer(t, dir)
	const streams, n = 2, 1000
	logN(t, b1, streams, 0, n, 0)
	stopSoon(b1)

	var (
		bp                    atomic.Pointer[Buffer]
		calls, overlaps, sent int // Export calls are serialized
		timedOut              bool
	)
	r := &recorder{fail: func(_ int, batch *exporter.Batch) error {
		b := started(&bp)
		calls++
		sent += batch.Len()
		left := int64(streams*n - sent) // records unread if none was read ahead
		deadline := time.Now().Add(2 * time.Second)
		for left > 0 && !timedOut && b.sp.Stats().Unread >= left {
			if time.Now().After(deadline) {
				timedOut = true
				break
			}
			time.Sleep(time.Millisecond)
		}
		if b.sp.Stats().Unread < left {
			overlaps++
		}
		return nil
	}}
	b2 := mustNew(t, Config{Exporter: r, SpoolDir: dir, SpoolMode: SpoolAlways, BatchSize: 2048})
	bp.Store(b2)
	flushAndShutdown(t, b2)
	checkExactlyOnceInOrder(t, r, streams, n)
	if calls < 3 || overlaps != calls-1 {
		t.Fatalf("%d of %d exports ran while the next batch was read (want all but the last)", overlaps, calls)
	}
}

// TestReadAheadAcknowledgesAfterTheBatchBefore has the read ahead drop a
// whole batch (older than MaxAge) while the batch before it cannot be sent.
// Acknowledging what the read ahead dropped would acknowledge the unsent
// batch's records with it (acknowledgements are positions in the spool):
// the next start must still find them and deliver them.
func TestReadAheadAcknowledgesAfterTheBatchBefore(t *testing.T) {
	dir := t.TempDir()
	b1 := downBuffer(t, dir)
	old := time.Now().Add(-8 * 24 * time.Hour).UnixNano()
	for i := range 10 {
		if err := b1.Add("", `{a="b"}`, time.Now().UnixNano(), []byte(fmt.Sprint(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Another tenant's records start a batch of their own.
	for i := range 10 {
		if err := b1.Add("t2", `{a="b"}`, old+int64(i), []byte(fmt.Sprint("old ", i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	stopSoon(b1)

	// Loki refuses the first batch; the second, read ahead, is all too old.
	r2 := &recorder{fail: func(int, *exporter.Batch) error { return errors.New("connection refused") }}
	b2 := mustNew(t, Config{Exporter: r2, SpoolDir: dir, SpoolMode: SpoolAlways, RetryInterval: time.Millisecond})
	deadline := time.Now().Add(5 * time.Second)
	for b2.Stats().Dropped[ReasonTooOld] != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the second batch was not dropped as too old: %+v", b2.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	stopSoon(b2)

	r3 := &recorder{}
	b3 := mustNew(t, Config{Exporter: r3, SpoolDir: dir, SpoolMode: SpoolAlways})
	flushAndShutdown(t, b3)
	if got := r3.lines()[`|{a="b"}`]; fmt.Sprint(got) != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Fatalf("after the restart: delivered %v, want the ten entries the second start could not send", got)
	}
}

// TestAlwaysModeDoesNotReadAheadWhileLogging replays a spool while the
// application keeps logging (one entry during each export): the worker
// then reads each batch after the one before is settled, leaving the
// other CPU to the application, and still delivers everything. (The
// first export may overlap a read: nothing was logged before it.)
func TestAlwaysModeDoesNotReadAheadWhileLogging(t *testing.T) {
	dir := t.TempDir()
	b1 := downBuffer(t, dir)
	const n = 1000
	logN(t, b1, 1, 0, n, 0)
	stopSoon(b1)

	var (
		bp                     atomic.Pointer[Buffer]
		calls, overlaps, added int
		sent                   int // entries of the batches exported so far
	)
	r := &recorder{fail: func(_ int, batch *exporter.Batch) error {
		b := started(&bp)
		calls++
		sent += batch.Len()
		if sent >= n+added {
			return nil // the last batch: nothing left to read
		}
		if err := b.Add("", `{s="new"}`, time.Now().UnixNano(), []byte(fmt.Sprint("new ", calls)), nil); err != nil {
			return err
		}
		added++
		time.Sleep(20 * time.Millisecond) // time enough to read a batch ahead
		if left := int64(n + added - sent); calls > 1 && b.sp.Stats().Unread < left {
			overlaps++
		}
		return nil
	}}
	b2 := mustNew(t, Config{Exporter: r, SpoolDir: dir, SpoolMode: SpoolAlways, BatchSize: 2048})
	bp.Store(b2)
	flushAndShutdown(t, b2)
	if calls < 3 || overlaps != 0 {
		t.Fatalf("%d of %d exports after the first ran while the next batch was read, with entries logged meanwhile", overlaps, calls-1)
	}
	if got := r.count(); got != n+added || added == 0 {
		t.Fatalf("delivered %d entries, want %d (%d replayed, %d logged meanwhile)", got, n+added, n, added)
	}
}

// TestReplayKeepsPendingRecordsWhileLogging replays three tenants' records
// (each tenant's a batch of its own; the records read past a batch's end
// wait in the worker for the next one) while an entry is logged during
// every export, so that some steps read ahead and others do not. Every
// tenant's entries must arrive: the records waiting for the next batch
// go with it whether or not it was read ahead.
func TestReplayKeepsPendingRecordsWhileLogging(t *testing.T) {
	dir := t.TempDir()
	b1 := downBuffer(t, dir)
	tenants := []string{"a", "b", "c"}
	for _, tn := range tenants {
		for i := range 10 {
			if err := b1.Add(tn, `{s="old"}`, time.Now().UnixNano(), []byte(fmt.Sprint(tn, i)), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	stopSoon(b1)

	var (
		bp    atomic.Pointer[Buffer]
		added atomic.Int32
	)
	r := &recorder{fail: func(n int, _ *exporter.Batch) error {
		b := started(&bp)
		if n <= 3 {
			added.Add(1)
			return b.Add("a", `{s="new"}`, time.Now().UnixNano(), []byte(fmt.Sprint("new", n)), nil)
		}
		return nil
	}}
	b2 := mustNew(t, Config{Exporter: r, SpoolDir: dir, SpoolMode: SpoolAlways})
	bp.Store(b2)
	flushAndShutdown(t, b2)
	got := r.lines()
	for _, tn := range tenants {
		if lines := got[tn+`|{s="old"}`]; len(lines) != 10 {
			t.Errorf("tenant %s: delivered %v, want its 10 entries", tn, lines)
		}
	}
	if n := len(got[`a|{s="new"}`]); n != int(added.Load()) || n == 0 {
		t.Errorf("delivered %d of the %d entries logged during the replay", n, added.Load())
	}
}
