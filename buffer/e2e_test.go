package buffer

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/exporter/lokitest"
)

// These tests run the buffer with the real Loki client against the fake
// Loki, which applies Loki's rules (ordering window, max age).

func newClient(t *testing.T, url string) *exporter.Client {
	t.Helper()
	c, err := exporter.NewClient(exporter.Config{URL: url, MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, MaxRetryTime: 100 * time.Millisecond, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkLoki checks that the fake Loki holds "<stream>-<i>" for i in [0, n)
// exactly once per stream, in order, and rejected nothing.
func checkLoki(t *testing.T, loki *lokitest.Server, streams, n int) {
	t.Helper()
	per := map[string][]string{}
	for _, e := range loki.Entries() {
		per[e.LabelString] = append(per[e.LabelString], e.Line)
	}
	if len(per) != streams {
		t.Fatalf("got %d streams, want %d", len(per), streams)
	}
	for k, lines := range per {
		for i, l := range lines {
			j, _ := strconv.Atoi(l[strings.IndexByte(l, '-')+1:])
			if j != i {
				pushes := map[string][]int{}
				for _, e := range loki.Entries() {
					if e.LabelString == k {
						pushes[e.Line] = append(pushes[e.Line], e.Push)
					}
				}
				for _, r := range loki.Requests() {
					t.Logf("push %d status %d fault %q accepted %d", r.Push, r.Status, r.Fault, r.Accepted)
				}
				t.Fatalf("stream %s: entry %d is %q (pushes of it: %v)", k, i, l, pushes[l])
			}
		}
	}
	for k, lines := range per {
		if len(lines) != n {
			t.Fatalf("stream %s: %d entries, want %d", k, len(lines), n)
		}
	}
	for _, r := range loki.Requests() {
		if r.Rejected > 0 {
			t.Fatalf("Loki rejected entries: %+v", r.Rejections)
		}
	}
}

func TestOutageAgainstFakeLoki(t *testing.T) {
	for _, mode := range []string{SpoolSpill, SpoolAlways} {
		t.Run(mode, func(t *testing.T) {
			loki := lokitest.NewTestServer(t)
			b := mustNew(t, Config{Exporter: newClient(t, loki.URL()), SpoolDir: t.TempDir(), SpoolMode: mode,
				BatchWait: 10 * time.Millisecond, BatchSize: 8 << 10, MaxBufferBytes: 32 << 10,
				RetryInterval: 5 * time.Millisecond, SpillAfter: 50 * time.Millisecond,
				ErrorHandler: func(err error) { t.Logf("%s error: %v", time.Now().Format("05.000000"), err) }})
			const streams, n = 3, 4000
			phase := func(from, to int) {
				for i := from; i < to; i++ {
					for s := range streams {
						line := fmt.Sprintf("%d-%d", s, i)
						if err := b.Add("", fmt.Sprintf(`{s="%d"}`, s), time.Now().UnixNano(), []byte(line), nil); err != nil {
							t.Fatalf("add %s: %v", line, err)
						}
					}
					if i%200 == 0 {
						time.Sleep(2 * time.Millisecond)
					}
				}
			}
			phase(0, 500)
			// Answer 503 first, so that no push is cut between being
			// stored and answered (that would be a legitimate duplicate).
			loki.FailFor(503, lokitest.RetryAfter("0"))
			// The exporter sends one push at a time: once one was answered
			// 503, every earlier answer has reached it.
			i := 500
			for ; !answered503(loki) && i < 1400; i++ {
				phase(i, i+1)
				time.Sleep(time.Millisecond)
			}
			loki.Stop() // connection refused
			phase(i, 1500)
			if err := loki.Restart(); err != nil {
				t.Fatal(err)
			}
			phase(1500, 2500) // 503
			loki.ClearFaults()
			phase(2500, n)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := b.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			s := b.Stats()
			if len(s.Dropped) != 0 || s.Spilled == 0 || s.SpoolEntries != 0 || s.Exported != streams*n {
				t.Fatalf("stats %+v", s)
			}
			if err := b.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			checkLoki(t, loki, streams, n)
		})
	}
}

func TestBacklogOverAnHourReplaysWithoutRejection(t *testing.T) {
	dir := t.TempDir()
	loki := lokitest.NewTestServer(t)
	loki.Stop()
	b1 := mustNew(t, Config{Exporter: newClient(t, loki.URL()), SpoolDir: dir, SpoolMode: SpoolAlways,
		RetryInterval: 5 * time.Millisecond})
	// Three hours of logs, one entry a second per stream.
	start := time.Now().Add(-3 * time.Hour)
	const streams, n = 2, 3 * 3600
	for i := range n {
		for s := range streams {
			ts := start.Add(time.Duration(i) * time.Second).UnixNano()
			if err := b1.Add("", fmt.Sprintf(`{s="%d"}`, s), ts, fmt.Appendf(nil, "%d-%d", s, i), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := b1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := loki.Restart(); err != nil {
		t.Fatal(err)
	}
	b2 := mustNew(t, Config{Exporter: newClient(t, loki.URL()), SpoolDir: dir, BatchSize: 64 << 10})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel2()
	if err := b2.Flush(ctx2); err != nil {
		t.Fatal(err)
	}
	if err := b2.Shutdown(ctx2); err != nil {
		t.Fatal(err)
	}
	checkLoki(t, loki, streams, n)
	if s := b2.Stats(); s.Dropped[ReasonRejected] != 0 || s.Replayed != streams*n {
		t.Fatalf("stats %+v", s)
	}
}

func answered503(loki *lokitest.Server) bool {
	for _, r := range loki.Requests() {
		if r.Status == 503 {
			return true
		}
	}
	return false
}
