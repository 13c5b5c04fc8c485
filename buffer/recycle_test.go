package buffer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
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
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := b.Flush(ctx); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if err := b.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
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
