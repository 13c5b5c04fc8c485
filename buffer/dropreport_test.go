package buffer

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// errorLog collects what the ErrorHandler receives.
type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) handle(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

// drops returns the DropErrors received so far.
func (l *errorLog) drops() []*DropError {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ds []*DropError
	for _, err := range l.errs {
		if d := (*DropError)(nil); errors.As(err, &d) {
			ds = append(ds, d)
		}
	}
	return ds
}

// TestDropReports checks that drops reach the ErrorHandler: counted on the
// logging path, reported by a timer at most once a second with what was
// dropped since the report before, a last report from Shutdown, nothing
// after it; and that the counts add up to Stats.Dropped.
func TestDropReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log := &errorLog{}
		r := &recorder{gate: make(chan struct{})} // Loki never answers
		b := mustNew(t, Config{Exporter: r, BatchWait: time.Hour, BatchSize: 1000, MaxBufferBytes: 4000, ErrorHandler: log.handle})
		line := []byte(strings.Repeat("y", 84))
		fill := func(drops int) {
			t.Helper()
			for n := 0; n < drops; {
				if err := b.Add("", `{a="b"}`, 1, line, nil); errors.Is(err, ErrFull) {
					n++
				} else if err != nil {
					t.Fatal(err)
				}
			}
		}

		// The first report is due at once: its timer fires while Add
		// returns, so a second drop could make it or not. One drop.
		fill(1)
		synctest.Wait()
		ds := log.drops()
		if len(ds) != 1 || ds[0].Dropped[ReasonBufferFull] != 1 || ds[0].Total != 1 {
			t.Fatalf("after a drop: reports %v, want one of 1 buffer_full", ds)
		}

		fill(7)
		b.Drop("encode_panic", 1, errors.New("boom"))
		synctest.Wait()
		if n := len(log.drops()); n != 1 {
			t.Fatalf("%d reports within a second of the first, want still 1", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		ds = log.drops()
		if len(ds) != 2 {
			t.Fatalf("%d reports a second later, want 2", len(ds))
		}
		second := ds[1]
		if second.Dropped[ReasonBufferFull] != 7 || second.Dropped["encode_panic"] != 1 || second.Total != 9 {
			t.Errorf("second report %+v, want 7 buffer_full, 1 encode_panic, 9 in all", second)
		}
		if msg := second.Error(); !strings.Contains(msg, "dropped 8 entries (buffer_full 7, encode_panic 1), 9 since start; encode_panic: boom") {
			t.Errorf("second report reads %q", msg)
		}

		time.Sleep(10 * time.Second) // nothing dropped: nothing reported
		synctest.Wait()
		if n := len(log.drops()); n != 2 {
			t.Fatalf("%d reports after a quiet while, want 2", n)
		}

		fill(1) // more than a second after the last report: reported at once (one drop, as above)
		synctest.Wait()
		ds = log.drops()
		if len(ds) != 3 || ds[2].Dropped[ReasonBufferFull] != 1 || ds[2].Total != 10 {
			t.Fatalf("reports %v, want a third of 1 buffer_full, 10 in all", ds)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		b.Shutdown(ctx) // the queued entries are counted as shutdown drops
		ds = log.drops()
		if len(ds) != 4 {
			t.Fatalf("%d reports after Shutdown, want 4", len(ds))
		}
		last := ds[3]
		st := b.Stats()
		var total uint64
		for _, n := range st.Dropped {
			total += n
		}
		if st.Dropped[ReasonShutdown] == 0 || len(last.Dropped) != 1 || last.Dropped[ReasonShutdown] != st.Dropped[ReasonShutdown] || last.Total != total {
			t.Errorf("last report %+v, want only the %d shutdown drops, %d in all (Stats %v)", last, st.Dropped[ReasonShutdown], total, st.Dropped)
		}

		b.Add("", `{a="b"}`, 1, line, nil) // counted as closed
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if n := len(log.drops()); n != 4 {
			t.Errorf("%d reports after Shutdown and a drop, want still 4", n)
		}
		if n := b.Stats().Dropped[ReasonClosed]; n != 1 {
			t.Errorf("Stats counts %d closed, want 1", n)
		}
	})
}
