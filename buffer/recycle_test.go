package buffer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lokislog/lokislog/exporter"
)

// TestRecycledMemoryIntact checks that memory recycled from delivered and
// spilled batches never changes an entry still queued, in flight or read
// back: many small batches, several streams and metadata, from parallel
// goroutines, with an outage in the middle so that batches are spilled
// (and recycled) while others wait. Every line arrives exactly once with
// its own metadata.
func TestRecycledMemoryIntact(t *testing.T) {
	for _, spoolMode := range []string{"", SpoolSpill, SpoolAlways} {
		t.Run("mode="+spoolMode, func(t *testing.T) {
			var down atomic.Bool
			r := &recorder{fail: func(int, *exporter.Batch) error {
				if down.Load() {
					return errors.New("down")
				}
				return nil
			}}
			cfg := Config{Exporter: r, BatchSize: 4 << 10, BatchWait: time.Millisecond, MaxBufferBytes: 1 << 20, SpillAfter: 10 * time.Millisecond}
			if spoolMode != "" {
				cfg.SpoolDir, cfg.SpoolMode = t.TempDir(), spoolMode
			}
			b := mustNew(t, cfg)
			const workers, per = 4, 3000
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range per {
						if w == 0 && i == per/3 {
							down.Store(true)
						}
						if w == 0 && i == 2*per/3 {
							down.Store(false)
						}
						id := fmt.Sprintf("w%d-%05d", w, i)
						line := []byte("line " + id + " " + strings.Repeat(id[len(id)-1:], i%300))
						meta := []exporter.LabelPair{{Name: "id", Value: id}}
						labels := fmt.Sprintf(`{stream="%d"}`, i%3)
						err := b.Add("", labels, time.Now().UnixNano(), line, meta)
						if errors.Is(err, ErrFull) && spoolMode == "" {
							continue // counted in Stats.Dropped
						}
						if err != nil {
							t.Errorf("Add %s: %v", id, err)
							return
						}
					}
				})
			}
			wg.Wait()
			down.Store(false)
			flushAndShutdown(t, b)
			var dropped uint64
			for _, n := range b.Stats().Dropped {
				dropped += n
			}
			if spoolMode != "" && dropped != 0 {
				t.Fatalf("dropped %d entries with a spool: %v", dropped, b.Stats().Dropped)
			}
			seen := map[string]int{}
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, bt := range r.batches {
				for _, st := range bt.Streams {
					for _, e := range st.Entries {
						f := strings.Fields(e.Line)
						if len(f) < 2 || len(e.Metadata) != 1 || e.Metadata[0].Value != f[1] {
							t.Fatalf("entry %q with metadata %v: changed after Add", e.Line, e.Metadata)
						}
						id := f[1]
						var w, i int
						fmt.Sscanf(id, "w%d-%d", &w, &i)
						want := "line " + id + " " + strings.Repeat(id[len(id)-1:], i%300)
						if e.Line != strings.TrimSpace(want) && e.Line != want {
							t.Fatalf("entry %s: line %q, want %q", id, e.Line, want)
						}
						if st.Labels != fmt.Sprintf(`{stream="%d"}`, i%3) {
							t.Fatalf("entry %s in stream %s", id, st.Labels)
						}
						seen[id]++
					}
				}
			}
			if uint64(len(seen))+dropped != workers*per {
				t.Fatalf("%d distinct entries delivered and %d dropped, want %d in all; stats %+v", len(seen), dropped, workers*per, b.Stats())
			}
			for id, n := range seen {
				if n != 1 {
					t.Fatalf("entry %s delivered %d times", id, n)
				}
			}
		})
	}
}

// TestAlwaysDiskAndLokiFlappingLoseNothing runs "always" mode while both
// the disk (every write fails with ENOSPC) and Loki (every push fails)
// come and go, with four goroutines logging: entries kept only in memory
// during a disk failure, memory copies dropped when the spool becomes the
// queue, batches spilled one at a time. Every entry Add accepted arrives;
// every refused one is counted.
func TestAlwaysDiskAndLokiFlappingLoseNothing(t *testing.T) {
	var broken, down atomic.Bool
	r := &recorder{fail: switchable(&down)}
	b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), SpoolMode: SpoolAlways, spoolFS: faultyFS{broken: &broken},
		BatchWait: time.Millisecond, BatchSize: 2 << 10, MaxBufferBytes: 256 << 10, RetryInterval: time.Millisecond})
	// The spool is retried a second after a failure: 3 s see a few
	// failures and recoveries of the disk, many of Loki.
	const run = 3 * time.Second
	start := time.Now()
	stop := make(chan struct{})
	var flap sync.WaitGroup
	flap.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(13 * time.Millisecond):
			}
			broken.Store(i%40 >= 30) // 130 ms broken every 520 ms
			down.Store(i%3 == 0)
		}
	})
	const workers = 4
	var accepted [workers][]bool
	var refused atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; time.Since(start) < run; i++ {
				err := b.Add("", `{a="b"}`, time.Now().UnixNano(), fmt.Appendf(nil, "w%d-%06d", w, i), nil)
				switch {
				case err == nil:
					accepted[w] = append(accepted[w], true)
				case errors.Is(err, ErrFull):
					accepted[w] = append(accepted[w], false)
					refused.Add(1)
				default:
					t.Errorf("Add: %v", err)
					return
				}
				if i%20 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flap.Wait()
	broken.Store(false)
	down.Store(false)
	flushAndShutdown(t, b)
	got := map[string]bool{}
	for _, lines := range r.lines() {
		for _, l := range lines {
			got[l] = true
		}
	}
	missing, total := 0, 0
	for w := range workers {
		for i, ok := range accepted[w] {
			total++
			if ok && !got[fmt.Sprintf("w%d-%06d", w, i)] {
				missing++
			}
		}
	}
	st := b.Stats()
	var dropped uint64
	for _, n := range st.Dropped {
		dropped += n
	}
	if missing > 0 || dropped != uint64(refused.Load()) {
		t.Fatalf("of %d entries, %d accepted ones missing; %d refused, %d counted dropped (%v)", total, missing, refused.Load(), dropped, st.Dropped)
	}
	if st.DiskErrors == 0 || st.ExportErrors == 0 {
		t.Fatalf("the disk (%d errors) or Loki (%d errors) never failed", st.DiskErrors, st.ExportErrors)
	}
	t.Logf("%d entries, %d refused, %d disk errors, %d export errors", total, refused.Load(), st.DiskErrors, st.ExportErrors)
}

// flushAndShutdown flushes b and shuts it down, failing the test on an
// error of either.
func flushAndShutdown(t *testing.T, b *Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestMemoryMadeAheadWhileNothingReturns checks that when nothing comes
// back to the recycler for a while (Loki never answers, memory fills up),
// Add has the next batches' chunks and entry slices made on a goroutine of
// their own, sized after the batches sealed so far: an Add under the lock
// then finds them ready instead of allocating there, and no logging
// goroutine makes them. While batches do come back, nothing is made ahead
// (they bring their memory).
func TestMemoryMadeAheadWhileNothingReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{gate: make(chan struct{})} // Loki does not answer until the end
		b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour, BatchSize: 16 << 10, MaxBufferBytes: 1 << 20})
		line := []byte(strings.Repeat("x", 100))
		add := func(n int) {
			t.Helper()
			for range n {
				if err := b.Add("", `{a="b"}`, 1, line, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc := &b.recycle
		add(1000) // 116 bytes an entry: about 7 batches
		synctest.Wait()
		if n := rc.nChunks.Load() + rc.nEntries.Load(); n != 0 {
			t.Fatalf("%d chunks and entry slices made ahead right after start, want none yet", n)
		}
		time.Sleep(2 * starveAfter) // nothing came back meanwhile
		add(1000)
		synctest.Wait() // the refill goroutine is done
		if rc.nChunks.Load() < spareChunks || rc.nEntries.Load() < spareEntries {
			t.Fatalf("nothing came back for %v: the recycler holds %d chunks and %d entry slices, want %d and %d ready",
				2*starveAfter, rc.nChunks.Load(), rc.nEntries.Load(), spareChunks, spareEntries)
		}
		// A batch of 16 KiB holds 141 entries of 116 bytes; the slices made
		// ahead have room for twice the entries of the last batch sealed.
		rc.mu.Lock()
		if n := len(rc.qents); n != spareEntries {
			t.Errorf("%d entry slices kept, want %d", n, spareEntries)
		} else if c := cap(rc.qents[0]); c < 2*140 || c > 2*142+8 {
			t.Errorf("entry slice made ahead has room for %d entries, want about %d", c, 2*141)
		}
		for _, c := range rc.chunks {
			if len(c) != 0 || cap(c) != chunkSize {
				t.Errorf("chunk made ahead: len %d cap %d", len(c), cap(c))
			}
		}
		rc.mu.Unlock()
		close(r.gate)
		flushAndShutdown(t, b)
	})
}

// A batch read back from the spool gives its memory back to the recycler
// once delivered at its first export; one whose export failed keeps it
// (the error may refer to the batch) and is left as it was.
func TestReplayMemoryRecycled(t *testing.T) {
	b := mustNew(t, Config{Exporter: &recorder{}})
	defer flushAndShutdown(t, b)
	fill := func(rp *replay) {
		rp.arena.rec = &b.recycle
		line := rp.arena.strs("a line read back from the spool")
		entries := append(b.recycle.entrySlice(), exporter.Entry{Timestamp: 1, Line: line})
		rp.batch = &exporter.Batch{Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: entries}}}
		rp.n, rp.index = 1, map[string]int{`{a="b"}`: 0}
	}
	chunks := func() int {
		b.recycle.mu.Lock()
		defer b.recycle.mu.Unlock()
		return len(b.recycle.chunks)
	}

	var rp replay
	fill(&rp)
	before := chunks()
	b.settledReplay(&rp, nil)
	if got := chunks(); got != before+1 {
		t.Errorf("delivered replay batch: recycler holds %d chunks, want %d", got, before+1)
	}
	if rp.batch != nil || rp.arena.chunks != nil || rp.index != nil || rp.failed {
		t.Errorf("replay state not reset: %+v", rp)
	}

	fill(&rp)
	kept := rp.batch
	rp.failed = true
	before = chunks()
	b.settledReplay(&rp, nil)
	if got := chunks(); got != before {
		t.Errorf("replay batch whose export failed: recycler went from %d to %d chunks", before, got)
	}
	if e := kept.Streams[0].Entries; len(e) != 1 || e[0].Line != "a line read back from the spool" {
		t.Errorf("failed replay batch changed: %+v", e)
	}
}

// TestShutdownWaitsForRefill checks that the goroutine Add starts to make
// memory ahead (nothing came back for a while) is over when Shutdown
// returns, as every goroutine of the buffer is: Shutdown follows the Add
// that started it at once. The goroutine makes two allocations, so a
// Shutdown that did not wait for it is caught only when it is still
// making them (about one run in ten here, with the wait removed).
func TestShutdownWaitsForRefill(t *testing.T) {
	r := &recorder{gate: make(chan struct{})} // Loki does not answer
	b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour, BatchSize: 16 << 10, MaxBufferBytes: 1 << 20})
	line := []byte(strings.Repeat("x", 100))
	for range 200 {
		if err := b.Add("", `{a="b"}`, 1, line, nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * starveAfter)                    // nothing came back meanwhile
	for i := 0; !b.recycle.refilling.Load(); i++ { // until an Add starts a refill
		if err := b.Add("", `{a="b"}`, 1, line, nil); err != nil || i > 1000 {
			t.Fatalf("no refill started after %d Adds with nothing coming back: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	b.Shutdown(ctx) // Loki never answers: what is left is dropped, reported
	stacks := make([]byte, 1<<20)
	stacks = stacks[:runtime.Stack(stacks, true)]
	if strings.Contains(string(stacks), "recycler).refill") {
		t.Fatalf("a refill goroutine still runs after Shutdown:\n%s", stacks)
	}
}
