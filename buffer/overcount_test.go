package buffer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
)

// holdFirst holds its first Export until release is closed; started is
// closed when that call began.
type holdFirst struct {
	recorder
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (h *holdFirst) Export(ctx context.Context, b *exporter.Batch) error {
	first := false
	h.once.Do(func() { first = true })
	if first {
		close(h.started)
		select {
		case <-h.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return h.recorder.Export(ctx, b)
}

// TestAlwaysInFlightSegmentDroppedNotOvercounted: in "always" mode a batch
// is sent from memory while later entries fill the spool past
// MaxSpoolBytes, so the segment holding the batch's records is deleted
// (spool_full) before Loki answers. The batch is then delivered from
// memory: its entries must not be counted as dropped as well (seed 205 of
// TestChaos, "758 accepted entries neither delivered nor rejected, 759
// counted as dropped").
func TestAlwaysInFlightSegmentDroppedNotOvercounted(t *testing.T) {
	h := &holdFirst{started: make(chan struct{}), release: make(chan struct{})}
	b := mustNew(t, Config{Exporter: h, SpoolDir: t.TempDir(), SpoolMode: SpoolAlways, SpoolSync: "never",
		MaxSpoolBytes: 8 << 10, SpoolSegmentSize: 1 << 10, MaxBufferBytes: 1 << 10, BatchSize: 256,
		BatchWait: time.Millisecond, RetryInterval: time.Millisecond})
	line := func(i int) string { return fmt.Sprintf("entry %04d %s", i, strings.Repeat("x", 40)) }
	i := 0
	for ; i < 8; i++ {
		add(t, b, "t", `{a="b"}`, line(i))
	}
	select {
	case <-h.started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch was not exported")
	}
	// Far more than MaxSpoolBytes: the first segments are deleted while
	// the first batch is in flight.
	for ; i < 600; i++ {
		add(t, b, "t", `{a="b"}`, line(i))
	}
	close(h.release)
	flushAndShutdown(t, b)
	got := h.lines()[`t|{a="b"}`]
	seen := map[string]bool{}
	for _, l := range got {
		if seen[l] {
			t.Errorf("%q delivered twice", l)
		}
		seen[l] = true
	}
	if !seen[line(0)] {
		t.Fatalf("the batch held in flight was not delivered (%d lines delivered)", len(got))
	}
	st := b.Stats()
	if st.Dropped[ReasonSpoolFull] == 0 {
		t.Fatalf("no spool_full drops: the spool never deleted a segment (stats %+v)", st)
	}
	var dropped uint64
	for _, n := range st.Dropped {
		dropped += n
	}
	if uint64(len(got))+dropped != st.Enqueued {
		t.Errorf("%d delivered + %d dropped (%v) != %d enqueued", len(got), dropped, st.Dropped, st.Enqueued)
	}
}
