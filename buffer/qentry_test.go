package buffer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
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

// TestLineTooLongToIndex checks that a line of 4 GiB, more than a queued
// entry can index, is refused as too large and counted, even when the
// memory bound would let it in. The line is a slice header over one byte:
// Add must refuse it before reading it.
func TestLineTooLongToIndex(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("a 4 GiB slice length needs a 64-bit int")
	}
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, MaxBufferBytes: 5 << 30})
	var x byte
	huge := unsafe.Slice(&x, uint64(maxLine)+1)
	if err := b.Add("", `{a="b"}`, time.Now().UnixNano(), huge, nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Add of a 4 GiB line: %v, want ErrTooLarge", err)
	}
	if got := b.Stats().Dropped[ReasonTooLarge]; got != 1 {
		t.Errorf("dropped as too large: %d, want 1", got)
	}
	if err := b.Add("", `{a="b"}`, time.Now().UnixNano(), []byte("fits"), nil); err != nil {
		t.Errorf("Add after it: %v", err)
	}
	flushAndShutdown(t, b)
	if got := r.lines(); len(got) != 1 || len(got[`|{a="b"}`]) != 1 || got[`|{a="b"}`][0] != "fits" {
		t.Errorf("exported %q, want the one line that fits", got)
	}
}
