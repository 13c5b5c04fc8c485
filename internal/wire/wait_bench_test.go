package wire_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/lokislog/lokislog/internal/waitprobe"
	"github.com/lokislog/lokislog/internal/wire"
)

// BenchmarkWaitWhileEncoding measures, with GOMAXPROCS=1 (a container
// limited to one CPU), how long a goroutine that wakes every 100 µs, as a
// logging goroutine does, waits for the P while a push of a 1 MiB batch is
// encoded and compressed (AppendPush, then EncodeSnappy), op after op with
// 200 µs between them. late-max-µs is the longest wait beyond the 100 µs:
// the longest stretch of encoding that did not yield the P; late-mean-µs
// the mean wait and late>1ms/op the waits over 1 ms. The "idle"
// sub-benchmark sleeps instead of encoding: what the machine's timers
// alone add to the waits.
func BenchmarkWaitWhileEncoding(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	batch := bigBatch(1 << 20)
	var raw, out []byte
	encode := func() {
		raw = wire.AppendPush(raw[:0], batch.Streams)
		out = wire.EncodeSnappy(out, raw)
	}
	t0 := time.Now()
	encode()
	took := time.Since(t0)
	for _, bc := range []struct {
		name string
		op   func()
	}{{"encode", encode}, {"idle", func() { time.Sleep(took) }}} {
		b.Run(bc.name, func(b *testing.B) {
			probe := waitprobe.Start(100*time.Microsecond, nil)
			b.ResetTimer()
			for range b.N {
				bc.op()
				time.Sleep(200 * time.Microsecond) // the probe runs here at least
			}
			b.StopTimer()
			probe.Report(b)
		})
	}
}
