package buffer

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestFirstSpillAllocatesOneBuffer: the first batch spilled is encoded
// into a buffer made once, about the batch's size, not one grown by
// append from nothing (which allocated about three times the batch in
// steps: garbage that started a collection cycle at the onset of an
// outage, each step's tail cleared in a call that cannot be preempted).
func TestFirstSpillAllocatesOneBuffer(t *testing.T) {
	r := &recorder{gate: make(chan struct{})} // the first push waits: the batch stays in flight
	const batchSize = 256 << 10
	b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), BatchWait: time.Hour, BatchSize: batchSize,
		MaxBufferBytes: 4 << 20, SpillAfter: time.Hour})
	line := []byte(strings.Repeat("l", 200))
	for i := 0; ; i++ {
		copy(line, fmt.Sprintf("%06d", i))
		if err := b.Add("", `{s="0"}`, time.Now().UnixNano(), line, nil); err != nil {
			t.Fatal(err)
		}
		b.mu.Lock()
		s := b.inflight
		b.mu.Unlock()
		if s != nil {
			s.buildMu.Lock()
			built := s.built // the worker builds its entries before it exports
			s.buildMu.Unlock()
			if built {
				break
			}
		}
		if i > 10*batchSize/len(line) {
			t.Fatal("no batch went in flight")
		}
		if i > batchSize/len(line) {
			time.Sleep(time.Millisecond) // sealed: the worker takes it
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	done, err := b.spillOne(false) // the batch in flight, the first spill
	runtime.ReadMemStats(&after)
	if done || err != nil {
		t.Fatalf("spillOne: done %v, %v", done, err)
	}
	written := b.Stats().SpoolBytes
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("first spill wrote %d bytes, allocated %d", written, allocated)
	if written < batchSize/2 {
		t.Fatalf("spilled %d bytes, want a batch of about %d", written, batchSize)
	}
	if allocated > uint64(written)*3/2 {
		t.Errorf("the first spill allocated %d bytes for a %d-byte record: more than one buffer of its size", allocated, written)
	}
	close(r.gate)
	flushAndShutdown(t, b)
	if st := b.Stats(); len(st.Dropped) != 0 || st.Exported != st.Enqueued {
		t.Errorf("after shutdown: %+v", st)
	}
}
