package handler

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
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

// TestMemoryOnlySendsTwoPushesAtOnce: without a spool, while batches
// queue up behind a slow Loki, the handler has two pushes in flight (its
// two clients), and Stats counts the requests of both.
func TestMemoryOnlySendsTwoPushesAtOnce(t *testing.T) {
	loki := lokitest.NewTestServer(t)
	loki.SetDelay(50 * time.Millisecond)
	d := &peakDoer{underlying: &http.Client{}}
	defer d.underlying.CloseIdleConnections()
	h, err := New(Config{URL: loki.URL(), HTTPClient: d, BatchSize: 2 << 10, BatchWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	l := slog.New(h)
	const n = 400 // some 30 batches of 2 KiB
	for i := range n {
		l.Info("request handled", "i", i, "pad", strings.Repeat("x", 100))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
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
	loki := lokitest.NewTestServer(t)
	loki.SetDelay(20 * time.Millisecond)
	d := &peakDoer{underlying: &http.Client{}}
	defer d.underlying.CloseIdleConnections()
	h, err := New(Config{URL: loki.URL(), HTTPClient: d, BatchSize: 2 << 10, BatchWait: time.Hour, SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	l := slog.New(h)
	const n = 200
	for i := range n {
		l.Info("request handled", "i", i, "pad", strings.Repeat("x", 100))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(loki.Entries()); got != n || d.peak != 1 {
		t.Errorf("Loki has %d entries (want %d), %d pushes in flight at most (want 1)", got, n, d.peak)
	}
}
