package buffer

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lokislog/lokislog/exporter"
)

// entered is a recorder that counts the Export calls that began, before
// they wait at the recorder's gate.
type entered struct {
	*recorder
	n atomic.Int32
}

func (e *entered) Export(ctx context.Context, b *exporter.Batch) error {
	e.n.Add(1)
	return e.recorder.Export(ctx, b)
}

// sentLines returns the lines r delivered, in order, of the one stream
// these tests log to.
func sentLines(r *recorder) []string { return r.lines()[`|{a="b"}`] }

// twoFlightBuffer returns a memory-only buffer whose batches each hold
// one entry, with first and second as Exporter and Exporter2. It has sent
// a first batch ("x") through first, where it waits at first's gate, and
// queued the batches "0" to "3" behind it: the gate's opening starts the
// pairs.
func twoFlightBuffer(t *testing.T, first, second exporter.Exporter, gate chan struct{}) *Buffer {
	t.Helper()
	b := mustNew(t, Config{Exporter: first, Exporter2: second, BatchSize: 1, RetryInterval: time.Hour})
	add(t, b, "", `{a="b"}`, "x")
	synctest.Wait() // the worker waits at the gate with "x": the queue was empty
	for _, l := range []string{"0", "1", "2", "3"} {
		add(t, b, "", `{a="b"}`, l)
	}
	close(gate)
	return b
}

// heldPair returns a memory-only buffer with two exporters whose Export
// calls wait at gates. It first sends a batch "x" alone (the queue was
// empty) and lets it through Exporter's gate only once the given one-entry
// batches are queued behind it, so that the worker meets them all at
// once, whatever the scheduling: it has then sent the first two together,
// where they wait at the gates, and every goroutine settled. (Without
// "x", the worker could meet the first batch before the second was added
// and send it alone: CI saw that once.)
func heldPair(t *testing.T, lines ...string) (b *Buffer, r1, r2 *entered, gate1, gate2 chan struct{}) {
	gate1, gate2 = make(chan struct{}), make(chan struct{})
	r1 = &entered{recorder: &recorder{gate: gate1}}
	r2 = &entered{recorder: &recorder{gate: gate2}}
	b = mustNew(t, Config{Exporter: r1, Exporter2: r2, BatchSize: 1})
	add(t, b, "", `{a="b"}`, "x")
	synctest.Wait() // the worker waits at gate1 with "x"
	for _, l := range lines {
		add(t, b, "", `{a="b"}`, l)
	}
	gate1 <- struct{}{} // "x" goes
	synctest.Wait()
	return b, r1, r2, gate1, gate2
}

// TestMemoryModeSendsTwoBatchesAtOnce: without a spool and with an
// Exporter2, the worker sends the next queued batch through Exporter2
// while one is in flight through Exporter, and Shutdown shuts both down.
func TestMemoryModeSendsTwoBatchesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, r1, r2, gate1, gate2 := heldPair(t, "0", "1", "2", "3")
		// After "x", the worker holds four sealed batches and sends
		// the first two at once: both are in flight now.
		if n1, n2 := r1.n.Load(), r2.n.Load(); n1 != 2 || n2 != 1 {
			t.Fatalf("Export calls begun through Exporter %d (\"x\" done), Exporter2 %d; want 2 and 1", n1, n2)
		}
		close(gate1)
		close(gate2)
		flushAndShutdown(t, b)
		got := append(sentLines(r1.recorder), sentLines(r2.recorder)...)
		slices.Sort(got)
		if want := []string{"0", "1", "2", "3", "x"}; !slices.Equal(got, want) {
			t.Errorf("delivered %q, want %q", got, want)
		}
		if s := b.Stats(); s.Exported != 5 || len(s.Dropped) != 0 || s.BufferedEntries != 0 {
			t.Errorf("stats %+v", s)
		}
		if n1, n2 := r1.shutdown.Load(), r2.shutdown.Load(); n1 != 1 || n2 != 1 {
			t.Errorf("Shutdown shut Exporter down %d times, Exporter2 %d; want 1 and 1", n1, n2)
		}
	})
}

// TestTwoInFlightFailures: a batch that fails is queued again ahead of
// those after it; after the head failed the worker pauses (RetryInterval)
// and sends one batch at a time until an export succeeds; when only the
// second failed, it is sent again at once, as the head. Which exporter
// sent what, and the (fake) time the worker paused, show it.
func TestTwoInFlightFailures(t *testing.T) {
	fail := func(calls ...int) func(int, *exporter.Batch) error {
		return func(n int, _ *exporter.Batch) error {
			if slices.Contains(calls, n) {
				return errors.New("503")
			}
			return nil
		}
	}
	for _, c := range []struct {
		name         string
		fail1, fail2 []int // failing calls of Exporter (the first is "x") and Exporter2
		want1, want2 string
		pause        bool
	}{
		// "0" fails, "1" is delivered; a pause, "0" again, alone; then
		// "2" and "3".
		{"first fails", []int{2}, nil, "x 0 2", "1 3", true},
		// "1" fails: at once again, as the head, with "2"; then "3".
		{"second fails", nil, []int{1}, "x 0 1 3", "2", false},
		// Both fail: a pause, "0" alone, then "1" and "2", then "3".
		{"both fail", []int{2}, []int{1}, "x 0 1 3", "2", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				gate := make(chan struct{})
				r1 := &recorder{gate: gate, fail: fail(c.fail1...)}
				r2 := &recorder{fail: fail(c.fail2...)}
				start := time.Now()
				b := twoFlightBuffer(t, r1, r2, gate)
				if err := b.Flush(context.Background()); err != nil { // the pause is an hour
					t.Fatal(err)
				}
				if err := b.Shutdown(context.Background()); err != nil {
					t.Fatal(err)
				}
				if paused := time.Since(start) >= time.Hour; paused != c.pause {
					t.Errorf("paused %v, want %v", paused, c.pause)
				}
				got1, got2 := strings.Join(sentLines(r1), " "), strings.Join(sentLines(r2), " ")
				if got1 != c.want1 || got2 != c.want2 {
					t.Errorf("Exporter sent %q, Exporter2 %q; want %q and %q", got1, got2, c.want1, c.want2)
				}
				if s := b.Stats(); s.Exported != 5 || len(s.Dropped) != 0 {
					t.Errorf("stats %+v", s)
				}
			})
		})
	}
}

// TestTwoInFlightShutdownCountsBoth: when Shutdown's deadline passes with
// two batches in flight (Loki does not answer), both are counted as
// dropped, exactly once.
func TestTwoInFlightShutdownCountsBoth(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, _, r2, _, _ := heldPair(t, "0", "1", "2")
		if r2.n.Load() != 1 {
			t.Fatalf("Exporter2 has %d batches in flight, want 1", r2.n.Load())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1)
		defer cancel()
		if err := b.Shutdown(ctx); err == nil {
			t.Error("Shutdown returned nil with three entries undelivered")
		}
		if s := b.Stats(); s.Dropped[ReasonShutdown] != 3 || s.Exported != 1 || s.BufferedEntries != 0 {
			t.Errorf("stats %+v, want \"x\" delivered, 3 dropped (shutdown)", s)
		}
	})
}

// TestSpoolIgnoresExporter2: with a spool the worker sends one batch at a
// time through Exporter; Shutdown still shuts Exporter2 down.
func TestSpoolIgnoresExporter2(t *testing.T) {
	r1, r2 := &recorder{}, &recorder{}
	b := mustNew(t, Config{Exporter: r1, Exporter2: r2, BatchSize: 1, SpoolDir: t.TempDir()})
	for _, l := range []string{"0", "1", "2", "3"} {
		add(t, b, "", `{a="b"}`, l)
	}
	flushAndShutdown(t, b)
	if got := strings.Join(sentLines(r1), " "); got != "0 1 2 3" || len(sentLines(r2)) != 0 {
		t.Errorf("Exporter sent %q, Exporter2 %q; want all four through Exporter", got, sentLines(r2))
	}
	if r2.shutdown.Load() != 1 {
		t.Errorf("Exporter2 shut down %d times, want 1", r2.shutdown.Load())
	}
}

// TestTwoInFlightFlushWaitsForTheOlderBatch: Flush counts settled
// entries, so when the older of two batches sent at once fails and the
// newer one (logged after Flush began) is delivered, the newer one's
// entries must not count for Flush until the older one's do.
func TestTwoInFlightFlushWaitsForTheOlderBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		r1 := &recorder{gate: gate, fail: func(n int, _ *exporter.Batch) error {
			if n == 2 {
				return errors.New("503")
			}
			return nil
		}}
		r2 := &recorder{}
		b := mustNew(t, Config{Exporter: r1, Exporter2: r2, BatchSize: 1})
		add(t, b, "", `{a="b"}`, "x")
		synctest.Wait() // "x" waits at the gate
		add(t, b, "", `{a="b"}`, "0")
		flushed := make(chan error, 1)
		go func() { flushed <- b.Flush(context.Background()) }()
		synctest.Wait() // Flush waits for "x" and "0"
		add(t, b, "", `{a="b"}`, "1")
		close(gate) // "x"; then "0" (fails) with "1" (delivered); "0" again
		if err := <-flushed; err != nil {
			t.Fatal(err)
		}
		if got := sentLines(r1); !slices.Contains(got, "0") {
			t.Errorf("Flush returned with %q delivered through Exporter, %q through Exporter2: \"0\" was not", got, sentLines(r2))
		}
		flushAndShutdown(t, b)
		if s := b.Stats(); s.Exported != 3 || len(s.Dropped) != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}
