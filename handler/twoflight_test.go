package handler

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lokislog/lokislog/exporter/lokitest"
)

// peakDoer passes requests on and records the most in flight at once.
type peakDoer struct {
	mu         sync.Mutex
	now, peak  int
	underlying *http.Client
}

func (d *peakDoer) Do(req *http.Request) (*http.Response, error) {
	d.mu.Lock()
	d.now++
	d.peak = max(d.peak, d.now)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.now--
		d.mu.Unlock()
	}()
	return d.underlying.Do(req)
}

// pushThrough logs n records through a handler with cfg's spool settings
// and a Doer that records the pushes in flight, to a fake Loki that
// answers after delay, and flushes and shuts it down.
func pushThrough(t *testing.T, cfg Config, delay time.Duration, n int) (*lokitest.Server, *peakDoer, *Handler) {
	t.Helper()
	loki := lokitest.NewTestServer(t)
	loki.SetDelay(delay)
	d := &peakDoer{underlying: &http.Client{}}
	t.Cleanup(d.underlying.CloseIdleConnections)
	cfg.URL, cfg.HTTPClient, cfg.BatchSize, cfg.BatchWait = loki.URL(), d, 2<<10, time.Hour
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := slog.New(h)
	for i := range n {
		l.Info("request handled", "i", i, "pad", strings.Repeat("x", 100)) // 2 KiB batches of some 13
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	return loki, d, h
}

// TestMemoryOnlySendsTwoPushesAtOnce: without a spool, while batches
// queue up behind a slow Loki, the handler has two pushes in flight (its
// two clients), and Stats counts the requests of both.
func TestMemoryOnlySendsTwoPushesAtOnce(t *testing.T) {
	const n = 400
	loki, d, h := pushThrough(t, Config{}, 50*time.Millisecond, n)
	if got := len(loki.Entries()); got != n {
		t.Errorf("Loki has %d entries, want %d", got, n)
	}
	if d.peak != 2 {
		t.Errorf("at most %d pushes in flight at once, want 2", d.peak)
	}
	if s := h.Stats(); s.Requests != uint64(loki.Pushes()) || s.Exported != n {
		t.Errorf("Stats: %d requests, %d exported; Loki saw %d pushes, %d entries", s.Requests, s.Exported, loki.Pushes(), n)
	}
}

// TestSpoolSendsOnePushAtATime: with a spool the handler keeps one push in
// flight.
func TestSpoolSendsOnePushAtATime(t *testing.T) {
	const n = 200
	loki, d, _ := pushThrough(t, Config{SpoolDir: t.TempDir()}, 20*time.Millisecond, n)
	if got := len(loki.Entries()); got != n || d.peak != 1 {
		t.Errorf("Loki has %d entries (want %d), %d pushes in flight at most (want 1)", got, n, d.peak)
	}
}

// scriptDoer answers pushes without a network: 503 to the first push that
// holds failLine, 204 to the others; the first push waits for gate.
type scriptDoer struct {
	gate     chan struct{}
	failLine string
	mu       sync.Mutex
	n        int
	failed   bool
}

func (d *scriptDoer) Do(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.n++
	first := d.n == 1
	fail := !d.failed && bytes.Contains(body, []byte(d.failLine))
	d.failed = d.failed || fail
	d.mu.Unlock()
	if first {
		<-d.gate
	}
	status := http.StatusNoContent
	if fail {
		status = http.StatusServiceUnavailable
	}
	return &http.Response{StatusCode: status, Body: http.NoBody, Header: http.Header{}, Request: req}, nil
}

// TestSecondPushIsNotRetriedByItsClient: the handler's second client
// makes one attempt per push. When the push it sends fails while the other
// is delivered, the batch goes again at once through the first client,
// instead of after the second client's backoff (10 s here, on the
// bubble's clock).
func TestSecondPushIsNotRetriedByItsClient(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := &scriptDoer{gate: make(chan struct{}), failLine: "msg=r1"}
		h, err := New(Config{URL: "http://loki.invalid:3100", HTTPClient: d, Protocol: "json", Compression: "none",
			BatchSize: 1, BatchWait: time.Hour, MinBackoff: 10 * time.Second, MaxBackoff: 10 * time.Second, ErrorHandler: func(error) {}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		l := slog.New(h)
		l.Info("x")
		synctest.Wait() // the first push waits at the gate
		for _, m := range []string{"r0", "r1", "r2"} {
			l.Info(m)
		}
		close(d.gate) // "r0" and "r1" at once; "r1" fails
		ctx := context.Background()
		if err := h.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := h.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if !d.failed {
			t.Fatal("no push failed: the scenario did not happen")
		}
		if took := time.Since(start); took >= time.Second { // the backoff: 5 to 10 s
			t.Errorf("delivery took %v on the bubble's clock: a client waited out its backoff", took)
		}
		if s := h.Stats(); s.Exported != 4 || s.Requests != 5 {
			t.Errorf("exported %d in %d requests, want 4 in 5", s.Exported, s.Requests)
		}
	})
}
