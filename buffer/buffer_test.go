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

	"go.uber.org/goleak"

	"github.com/lokislog/lokislog/exporter"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a fake exporter that copies every batch it accepts.
type recorder struct {
	mu      sync.Mutex
	batches []exporter.Batch
	calls   int
	// fail, when set, decides the answer to call n (1-based).
	fail     func(n int, b *exporter.Batch) error
	gate     chan struct{} // when non-nil, Export waits for a token or ctx
	shutdown atomic.Int32
}

func (r *recorder) Export(ctx context.Context, b *exporter.Batch) error {
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	r.calls++
	n := r.calls
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		if err := fail(n, b); err != nil {
			var part *exporter.PartialError
			if errors.As(err, &part) {
				// The part before Remaining was delivered.
				r.keep(firstPart(b, part.Remaining))
			}
			return err
		}
	}
	r.keep(b)
	return nil
}

func firstPart(b, rest *exporter.Batch) *exporter.Batch {
	n := b.Len() - rest.Len()
	out := &exporter.Batch{Tenant: b.Tenant}
	for _, s := range b.Streams {
		if n <= 0 {
			break
		}
		k := min(n, len(s.Entries))
		out.Streams = append(out.Streams, exporter.Stream{Labels: s.Labels, Entries: s.Entries[:k]})
		n -= k
	}
	return out
}

func (r *recorder) keep(b *exporter.Batch) {
	c := exporter.Batch{Tenant: strings.Clone(b.Tenant)}
	for _, s := range b.Streams {
		cs := exporter.Stream{Labels: strings.Clone(s.Labels)}
		for _, e := range s.Entries {
			ce := exporter.Entry{Timestamp: e.Timestamp, Line: strings.Clone(e.Line)}
			for _, m := range e.Metadata {
				ce.Metadata = append(ce.Metadata, exporter.LabelPair{Name: strings.Clone(m.Name), Value: strings.Clone(m.Value)})
			}
			cs.Entries = append(cs.Entries, ce)
		}
		c.Streams = append(c.Streams, cs)
	}
	r.mu.Lock()
	r.batches = append(r.batches, c)
	r.mu.Unlock()
}

func (r *recorder) Shutdown(context.Context) error { r.shutdown.Add(1); return nil }

// lines returns every delivered line per stream, in delivery order.
func (r *recorder) lines() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]string{}
	for _, b := range r.batches {
		for _, s := range b.Streams {
			k := b.Tenant + "|" + s.Labels
			for _, e := range s.Entries {
				out[k] = append(out[k], e.Line)
			}
		}
	}
	return out
}

func (r *recorder) count() int {
	n := 0
	for _, v := range r.lines() {
		n += len(v)
	}
	return n
}

func mustNew(t *testing.T, cfg Config) *Buffer {
	t.Helper()
	if cfg.ErrorHandler == nil {
		cfg.ErrorHandler = func(error) {}
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func add(t *testing.T, b *Buffer, tenant, labels, line string) {
	t.Helper()
	if err := b.Add(tenant, labels, time.Now().UnixNano(), []byte(line), nil); err != nil {
		t.Fatalf("add %q: %v", line, err)
	}
}

func TestConfigValidation(t *testing.T) {
	cases := map[string]Config{
		"no exporter":          {},
		"negative batch wait":  {Exporter: &recorder{}, BatchWait: -1},
		"negative batch size":  {Exporter: &recorder{}, BatchSize: -1},
		"negative max bytes":   {Exporter: &recorder{}, MaxBufferBytes: -1},
		"negative retry pause": {Exporter: &recorder{}, RetryInterval: -1},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if b, err := New(cfg); err == nil {
				b.Shutdown(context.Background())
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestBatchesGroupByTenantAndStreamInOrder(t *testing.T) {
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour})
	for i := range 30 {
		add(t, b, fmt.Sprintf("t%d", i%2), fmt.Sprintf(`{s="%d"}`, i%3), fmt.Sprint(i))
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := r.lines()
	if len(got) != 6 {
		t.Fatalf("got %d streams, want 6: %v", len(got), got)
	}
	for i := range 30 {
		k := fmt.Sprintf(`t%d|{s="%d"}`, i%2, i%3)
		var want []string
		for j := i % 6; j < 30; j += 6 {
			want = append(want, fmt.Sprint(j))
		}
		if fmt.Sprint(got[k]) != fmt.Sprint(want) {
			t.Errorf("%s: got %v want %v", k, got[k], want)
		}
	}
	r.mu.Lock()
	for _, bt := range r.batches {
		if bt.Tenant != "t0" && bt.Tenant != "t1" {
			t.Errorf("batch with tenant %q", bt.Tenant)
		}
	}
	r.mu.Unlock()
	if s := b.Stats(); s.Enqueued != 30 || s.Exported != 30 || s.BufferedBytes != 0 || s.BufferedEntries != 0 {
		t.Errorf("stats %+v", s)
	}
	if r.shutdown.Load() != 1 {
		t.Errorf("exporter shut down %d times", r.shutdown.Load())
	}
}

func TestBatchSizeCutsBatches(t *testing.T) {
	r := &recorder{}
	line := strings.Repeat("x", 84) // 100 bytes with overhead
	b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour, BatchSize: 1000})
	for range 25 {
		add(t, b, "", `{a="b"}`, line)
	}
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Shutdown(context.Background())
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for i, bt := range r.batches {
		if sz := bt.Size(); sz > 1000 {
			t.Errorf("batch %d has %d bytes, over BatchSize", i, sz)
		}
		total += bt.Len()
	}
	if total != 25 || len(r.batches) < 3 {
		t.Errorf("got %d entries in %d batches", total, len(r.batches))
	}
}

func TestBatchWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		b := mustNew(t, Config{Exporter: r, BatchWait: 2 * time.Second})
		add(t, b, "", `{a="b"}`, "one")
		time.Sleep(1900 * time.Millisecond)
		synctest.Wait()
		if n := r.count(); n != 0 {
			t.Fatalf("sent %d entries before BatchWait", n)
		}
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		if n := r.count(); n != 1 {
			t.Fatalf("sent %d entries after BatchWait, want 1", n)
		}
		if err := b.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestBatchWaitAfterIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		b := mustNew(t, Config{Exporter: r, BatchWait: 50 * time.Millisecond})
		time.Sleep(10 * time.Second) // the worker goes idle
		add(t, b, "", `{a="b"}`, "after idle")
		time.Sleep(60 * time.Millisecond)
		synctest.Wait()
		if n := r.count(); n != 1 {
			t.Fatalf("sent %d entries one BatchWait after an idle period, want 1", n)
		}
		b.Shutdown(context.Background())
	})
}

func TestMemoryFullDropsNewestAndCounts(t *testing.T) {
	r := &recorder{gate: make(chan struct{})}
	b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour, BatchSize: 1000, MaxBufferBytes: 4000})
	line := strings.Repeat("y", 84)
	accepted, full := 0, 0
	for i := range 100 {
		err := b.Add("", `{a="b"}`, int64(i), []byte(line), nil)
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrFull):
			full++
		default:
			t.Fatal(err)
		}
	}
	if full == 0 || accepted == 0 {
		t.Fatalf("accepted %d, full %d", accepted, full)
	}
	s := b.Stats()
	if s.Dropped[ReasonBufferFull] != uint64(full) || s.Enqueued != uint64(accepted) {
		t.Fatalf("stats %+v, want %d dropped and %d enqueued", s, full, accepted)
	}
	if s.BufferedBytes > 4000 {
		t.Fatalf("buffered %d bytes over the bound", s.BufferedBytes)
	}
	close(r.gate)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Shutdown(context.Background())
	if got := r.count(); got != accepted {
		t.Fatalf("delivered %d, want %d", got, accepted)
	}
	// The oldest entries are the ones kept.
	lines := r.lines()[`|{a="b"}`]
	if len(lines) != accepted {
		t.Fatalf("got %d lines", len(lines))
	}
}

func TestEntryLargerThanBound(t *testing.T) {
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, MaxBufferBytes: 100})
	defer b.Shutdown(context.Background())
	if err := b.Add("", "{}", 1, make([]byte, 200), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
	if b.Stats().Dropped[ReasonTooLarge] != 1 {
		t.Fatal("not counted")
	}
}

func TestRetryableErrorsAreRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{fail: func(n int, _ *exporter.Batch) error {
			if n <= 3 {
				return errors.New("connection refused")
			}
			return nil
		}}
		var reported atomic.Int32
		b := mustNew(t, Config{Exporter: r, BatchWait: time.Second, ErrorHandler: func(error) { reported.Add(1) }})
		for i := range 10 {
			add(t, b, "", `{a="b"}`, fmt.Sprint(i))
		}
		if err := b.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := r.count(); got != 10 {
			t.Fatalf("delivered %d", got)
		}
		s := b.Stats()
		if s.ExportErrors != 3 || s.Exported != 10 || len(s.Dropped) != 0 {
			t.Fatalf("stats %+v", s)
		}
		if reported.Load() != 3 {
			t.Fatalf("reported %d errors", reported.Load())
		}
		b.Shutdown(context.Background())
	})
}

func TestPermanentRejectionIsDroppedAndCounted(t *testing.T) {
	r := &recorder{fail: func(n int, b *exporter.Batch) error {
		if n == 1 {
			return &exporter.PermanentError{Status: 400, Reason: "bad", Entries: b.Len()}
		}
		return nil
	}}
	b := mustNew(t, Config{Exporter: r})
	for i := range 5 {
		add(t, b, "", `{a="b"}`, fmt.Sprint(i))
	}
	b.Flush(context.Background())
	add(t, b, "", `{a="b"}`, "later")
	b.Flush(context.Background())
	b.Shutdown(context.Background())
	s := b.Stats()
	if s.Dropped[ReasonRejected] != 5 || s.Exported != 1 || r.count() != 1 {
		t.Fatalf("stats %+v, delivered %d", s, r.count())
	}
}

func TestPartialErrorResendsOnlyRemaining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{fail: func(n int, b *exporter.Batch) error {
			if n == 1 {
				_, second, _ := exporter.Split(b)
				return &exporter.PartialError{Remaining: second, Err: errors.New("503")}
			}
			return nil
		}}
		b := mustNew(t, Config{Exporter: r})
		for i := range 10 {
			add(t, b, "", `{a="b"}`, fmt.Sprint(i))
		}
		if err := b.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		b.Shutdown(context.Background())
		got := r.lines()[`|{a="b"}`]
		if fmt.Sprint(got) != "[0 1 2 3 4 5 6 7 8 9]" {
			t.Fatalf("got %v", got)
		}
		if s := b.Stats(); s.Exported != 10 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestShutdownDeadlineCountsUndelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{fail: func(int, *exporter.Batch) error { return errors.New("down") }}
		b := mustNew(t, Config{Exporter: r})
		for i := range 7 {
			add(t, b, "", `{a="b"}`, fmt.Sprint(i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("shutdown: %v", err)
		}
		s := b.Stats()
		if s.Dropped[ReasonShutdown] != 7 || s.BufferedEntries != 0 {
			t.Fatalf("stats %+v", s)
		}
		if err := b.Add("", "{}", 1, []byte("x"), nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("add after shutdown: %v", err)
		}
		if err := b.Flush(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("flush after shutdown: %v", err)
		}
		if b.Stats().Dropped[ReasonClosed] != 1 {
			t.Fatal("add after shutdown not counted")
		}
		// Idempotent.
		if err := b.Shutdown(context.Background()); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second shutdown: %v", err)
		}
	})
}

func TestShutdownSendsQueued(t *testing.T) {
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour})
	for i := range 100 {
		add(t, b, "", `{a="b"}`, fmt.Sprint(i))
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.count() != 100 {
		t.Fatalf("delivered %d", r.count())
	}
}

func TestMetadataIsCopied(t *testing.T) {
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r})
	line := []byte("hello")
	val := []byte("abc")
	meta := []exporter.LabelPair{{Name: "trace_id", Value: string(val)}}
	if err := b.Add("", "{}", 42, line, meta); err != nil {
		t.Fatal(err)
	}
	copy(line, "XXXXX")
	b.Shutdown(context.Background())
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.batches[0].Streams[0].Entries[0]
	if e.Line != "hello" || e.Timestamp != 42 || len(e.Metadata) != 1 || e.Metadata[0] != (exporter.LabelPair{Name: "trace_id", Value: "abc"}) {
		t.Fatalf("got %+v", e)
	}
}

func TestBufferConcurrentSafe(t *testing.T) {
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, BatchSize: 2000, BatchWait: time.Millisecond, MaxBufferBytes: 20000})
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				err := b.Add(fmt.Sprint(g%2), fmt.Sprintf(`{g="%d"}`, g), int64(i), []byte(fmt.Sprintf("%d-%d", g, i)), nil)
				if err == nil {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
				if i%500 == 0 {
					b.Flush(context.Background())
					b.Stats()
				}
			}
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(5 * time.Millisecond)
		b.Shutdown(context.Background())
	}()
	wg.Wait()
	b.Shutdown(context.Background())
	s := b.Stats()
	var dropped uint64
	for _, v := range s.Dropped {
		dropped += v
	}
	if s.Enqueued != uint64(ok.Load()) || dropped != uint64(failed.Load()) {
		t.Fatalf("stats %+v; ok %d failed %d", s, ok.Load(), failed.Load())
	}
	if uint64(r.count()) != s.Exported || s.Exported != s.Enqueued {
		t.Fatalf("delivered %d exported %d enqueued %d", r.count(), s.Exported, s.Enqueued)
	}
	// Per-stream order holds.
	for k, lines := range r.lines() {
		last := -1
		for _, l := range lines {
			var g, i int
			fmt.Sscanf(l, "%d-%d", &g, &i)
			if i <= last {
				t.Fatalf("%s out of order: %d after %d", k, i, last)
			}
			last = i
		}
	}
}

func TestAddAllocations(t *testing.T) {
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour, MaxBufferBytes: 1 << 30, BatchSize: 1 << 30})
	defer b.Shutdown(context.Background())
	line := []byte(`level=INFO msg="request handled" method=GET path=/api/users status=200`)
	meta := []exporter.LabelPair{{Name: "trace_id", Value: "0123456789abcdef0123456789abcdef"}}
	add(t, b, "", `{a="b"}`, "warm")
	allocs := testing.AllocsPerRun(1000, func() {
		b.Add("", `{a="b"}`, 1, line, meta)
	})
	if allocs > 0 {
		t.Fatalf("Add allocates %v times per call", allocs)
	}
}

// counting is an Exporter that only counts entries (benchmarks).
type counting struct{ n atomic.Uint64 }

func (c *counting) Export(_ context.Context, b *exporter.Batch) error {
	c.n.Add(uint64(b.Len()))
	return nil
}
func (c *counting) Shutdown(context.Context) error { return nil }

// BenchmarkAdd measures Add from parallel goroutines (the issue-4 workload:
// 4 goroutines on this machine's cores) with an exporter that only counts,
// so that what is measured is Add and the hand-over of batches.
func BenchmarkAdd(b *testing.B) {
	c := &counting{}
	buf, _ := New(Config{Exporter: c, ErrorHandler: func(error) {}, MaxBufferBytes: 64 << 20})
	line := []byte(`level=INFO msg="request handled" method=GET path=/api/users status=200 duration=1.2ms request_id=abc user_id=42`)
	b.ReportAllocs()
	b.SetParallelism(2) // 2 × GOMAXPROCS goroutines
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := buf.Add("", `{service_name="api"}`, 1, line, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if err := buf.Shutdown(context.Background()); err != nil {
		b.Fatal(err)
	}
	if got := c.n.Load(); got != uint64(b.N) {
		b.Fatalf("exported %d entries, want %d", got, b.N)
	}
}

// TestMemoryBoundCountsEntries checks that MaxBufferBytes bounds the
// memory entries take, their Entry structs included: a full buffer of
// short lines holds less than twice its bound on the heap (counting 16
// bytes an entry instead of the struct's 48 let it hold about three
// times its bound). And that the default bound is halved with a spool.
func TestMemoryBoundCountsEntries(t *testing.T) {
	const bound = 4 << 20
	r := &recorder{gate: make(chan struct{})} // Loki does not answer
	line := []byte("0123456789")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour, MaxBufferBytes: bound})
	n := 0
	for ; b.Add("", `{a="b"}`, int64(n), line, nil) == nil; n++ {
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if held > 2*bound || n*(len(line)+16+entryMem) > bound {
		t.Errorf("%d entries of %d bytes take %d bytes of heap with MaxBufferBytes %d", n, len(line), held, bound)
	}
	t.Logf("%d entries, %d bytes of heap, bound %d", n, held, bound)
	close(r.gate)
	flushAndShutdown(t, b)

	for dir, want := range map[string]int{"": DefaultMaxBufferBytes, t.TempDir(): DefaultSpoolMaxBufferBytes} {
		b := mustNew(t, Config{Exporter: &recorder{}, SpoolDir: dir})
		if b.cfg.MaxBufferBytes != want {
			t.Errorf("SpoolDir %q: MaxBufferBytes %d, want %d", dir, b.cfg.MaxBufferBytes, want)
		}
		flushAndShutdown(t, b)
	}
}
