package buffer

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/waitprobe"
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

// BenchmarkWaitWhileSpilling measures, with GOMAXPROCS=1 (a container
// limited to one CPU or less), how long a goroutine that wakes every
// 100 µs, as a logging goroutine does, waits for the P while the spiller
// writes memory's batches to the spool and the preparer readies its
// pages. Each op fills memory past the spill mark with Loki down and waits
// until the spiller has written the queue; the waits are measured during the
// spilling only. late-max-µs is the longest wait beyond the 100 µs over
// the run: the longest stretch of background work that did not yield the
// P; late-mean-µs the mean wait and late>1ms/op the waits over 1 ms.
func BenchmarkWaitWhileSpilling(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	buf, err := New(Config{Exporter: down{}, SpoolDir: b.TempDir(), MaxBufferBytes: 8 << 20, ErrorHandler: func(error) {}})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		buf.Shutdown(ctx)
	}()
	line := []byte(`level=INFO msg="request handled" service=checkout env=prod method=GET path=/api/v1/users/42 status=200 duration=1.234567ms request_id=7f3c2a9e-1b4d-4c8e-9f0a-000000000042 user_id=42`)
	ts := time.Now().UnixNano()
	// phase counts the spill phases: odd while the spiller works (the Adds
	// before it keep the P for milliseconds and are not what is measured);
	// a wait counts when the same phase covered all of it.
	var phase atomic.Int64
	probe := waitprobe.Start(100*time.Microsecond, &phase)
	b.ResetTimer()
	for range b.N {
		// Past the spill mark (three quarters of the bound): the spiller
		// writes every queued batch; wait until it has.
		for range buf.cfg.MaxBufferBytes / 8 * 7 / (len(line) + 16) {
			if err := buf.Add("", `{service_name="bench"}`, ts, line, nil); err != nil {
				b.Fatal(err)
			}
		}
		phase.Add(1)
		for buf.Stats().BufferedBytes > int64(buf.cfg.BatchSize) {
			time.Sleep(50 * time.Microsecond)
		}
		phase.Add(1)
	}
	b.StopTimer()
	probe.Report(b)
}

// flipping fails every export while down is set, and counts the entries
// it took.
type flipping struct {
	down  atomic.Bool
	taken atomic.Int64
}

func (f *flipping) Export(_ context.Context, b *exporter.Batch) error {
	if f.down.Load() {
		return errors.New("down")
	}
	f.taken.Add(int64(b.Len()))
	return nil
}
func (f *flipping) Shutdown(context.Context) error { return nil }

// BenchmarkReplayAfterOutage measures sending what an outage left in the
// spool: per op, 300,000 entries are added while Loki is down and Shutdown
// writes the rest to the spool; the timer runs from New on the same
// directory, with Loki back, until every entry was taken. B/op is what the
// buffer allocated meanwhile: replay takes its memory from the recycler and
// gives it back, so it is far below the 57 MB of lines.
func BenchmarkReplayAfterOutage(b *testing.B) {
	const n = 300_000
	line := []byte(`level=INFO msg="request handled" service=checkout env=prod method=GET path=/api/v1/users/42 status=200 duration=1.234567ms request_id=7f3c2a9e-1b4d-4c8e-9f0a-000000000042 user_id=42`)
	b.SetBytes(int64(n * len(line)))
	b.ReportAllocs()
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		e := &flipping{}
		e.down.Store(true)
		buf, err := New(Config{Exporter: e, SpoolDir: dir, ErrorHandler: func(error) {}})
		if err != nil {
			b.Fatal(err)
		}
		ts := time.Now().UnixNano()
		for range n {
			if err := buf.Add("", `{service_name="bench"}`, ts, line, nil); err != nil {
				b.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = buf.Shutdown(ctx)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		e = &flipping{}
		b.StartTimer()
		buf, err = New(Config{Exporter: e, SpoolDir: dir, ErrorHandler: func(error) {}})
		if err != nil {
			b.Fatal(err)
		}
		for e.taken.Load() < n {
			time.Sleep(100 * time.Microsecond)
		}
		b.StopTimer()
		if err := buf.Shutdown(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
