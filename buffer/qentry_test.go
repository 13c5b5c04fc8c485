package buffer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// BenchmarkGCFullBuffer measures one garbage collection (runtime.GC, an
// op) while a memory-only buffer is full because Loki does not answer, as
// in issue 4's outage: most of the cycle is the mark workers going over
// what the buffer holds, and a logging goroutine that starts a cycle
// waits for them. entries is what the buffer held, live-MB the heap the
// cycles found live.
func BenchmarkGCFullBuffer(b *testing.B) {
	r := &recorder{gate: make(chan struct{})}
	buf, err := New(Config{Exporter: r, ErrorHandler: func(error) {}})
	if err != nil {
		b.Fatal(err)
	}
	line := []byte(`level=INFO msg="request handled" service=checkout env=prod method=GET path=/api/v1/users/42 status=200 duration=1.234567ms request_id=00000000000000000000 user_id=42`)
	n := 0
	for ; ; n++ {
		copy(line[len(line)-31:], fmt.Sprintf("%020d", n))
		if buf.Add("", `{service_name="bench"}`, time.Now().UnixNano(), line, nil) != nil {
			break
		}
	}
	runtime.GC()
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.StopTimer()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(n), "entries")
	b.ReportMetric(float64(ms.HeapAlloc)/1e6, "live-MB")
	if got := buf.Stats().BufferedEntries; got != int64(n) {
		b.Errorf("buffer holds %d entries, %d were added", got, n)
	}
	close(r.gate)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := buf.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
}

// TestLineTooLongToIndex checks that a line longer than a queued entry
// can index (4 GiB) is refused as too large and counted, even when the
// memory bound would let it in: with the limit lowered to 100 bytes, as a
// 4 GiB line cannot be made here. The limit is the largest value of the
// entry's length field.
func TestLineTooLongToIndex(t *testing.T) {
	var e qentry
	if got := uint64(1)<<(8*unsafe.Sizeof(e.n)) - 1; maxLine != got {
		t.Fatalf("maxLine %d, want %d: the largest length a qentry holds", maxLine, got)
	}
	defer func(m uint64) { maxLine = m }(maxLine)
	maxLine = 100

	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, MaxBufferBytes: 1 << 20})
	if err := b.Add("", `{a="b"}`, time.Now().UnixNano(), []byte(strings.Repeat("x", 101)), nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Add of a line over the limit: %v, want ErrTooLarge", err)
	}
	if got := b.Stats().Dropped[ReasonTooLarge]; got != 1 {
		t.Errorf("dropped as too large: %d, want 1", got)
	}
	if err := b.Add("", `{a="b"}`, time.Now().UnixNano(), []byte(strings.Repeat("y", 100)), nil); err != nil {
		t.Errorf("Add of a line at the limit: %v", err)
	}
	flushAndShutdown(t, b)
	if got := r.lines(); len(got) != 1 || len(got[`|{a="b"}`]) != 1 || got[`|{a="b"}`][0] != strings.Repeat("y", 100) {
		t.Errorf("exported %q, want the one line at the limit", got)
	}
}
