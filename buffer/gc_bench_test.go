package buffer

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
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
