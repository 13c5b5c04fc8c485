package buffer

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
)

// down is an Exporter for a Loki that is down: every push fails.
type down struct{}

func (down) Export(context.Context, *exporter.Batch) error { return errors.New("down") }
func (down) Shutdown(context.Context) error                { return nil }

// BenchmarkSpillDown measures the spill path while Loki is down: Add from
// parallel goroutines, batches written to the spool by the spiller. MB/s
// is line bytes added per second, up to the Shutdown that writes what
// memory still holds.
func BenchmarkSpillDown(b *testing.B) {
	for _, mode := range []string{SpoolSpill, SpoolAlways} {
		b.Run(mode, func(b *testing.B) {
			buf, err := New(Config{Exporter: down{}, SpoolDir: b.TempDir(), SpoolMode: mode, ErrorHandler: func(error) {}})
			if err != nil {
				b.Fatal(err)
			}
			const base = `level=INFO msg="request handled" service=checkout env=prod method=GET path=/api/v1/users/42 status=200 duration=1.234567ms request_id=`
			b.SetBytes(int64(len(base) + 26 + len(" user_id=42")))
			var seq atomic.Uint64
			var slowest atomic.Int64 // the longest single Add, ns
			ts := time.Now().UnixNano()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				line := make([]byte, 0, 256)
				for pb.Next() {
					line = strconv.AppendUint(append(line[:0], base...), seq.Add(1)+1e18, 10)
					line = append(line, " user_id=42"...)
					t0 := time.Now()
					if err := buf.Add("", `{service_name="bench"}`, ts, line, nil); err != nil {
						b.Fatal(err)
					}
					for d, m := int64(time.Since(t0)), slowest.Load(); d > m && !slowest.CompareAndSwap(m, d); m = slowest.Load() {
					}
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 0)
			defer cancel()
			buf.Shutdown(ctx)
			b.StopTimer()
			// Past MaxSpoolBytes (256 MiB) the spool drops its oldest
			// records: shown, not an error.
			var drops uint64
			for _, n := range buf.Stats().Dropped {
				drops += n
			}
			b.ReportMetric(float64(drops)/float64(b.N), "drops/op")
			b.ReportMetric(float64(slowest.Load())/1e6, "slowest-ms")
			if drops > 0 {
				b.Logf("dropped: %v", buf.Stats().Dropped)
			}
		})
	}
}
