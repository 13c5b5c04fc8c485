package handler

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lokislog/lokislog/buffer"
	"github.com/lokislog/lokislog/exporter"
)

// entry is what the fake sink recorded for one Add.
type entry struct {
	tenant, labels string
	ts             int64
	line           string
	meta           []exporter.LabelPair
}

func (e entry) metaMap() map[string]string {
	m := make(map[string]string)
	for _, p := range e.meta {
		m[p.Name] = p.Value
	}
	return m
}

// fakeSink records entries like the buffer would take them: it copies the
// line and metadata strings (the handler reuses their memory).
type fakeSink struct {
	mu        sync.Mutex
	entries   []entry
	closed    bool
	full      bool // Add answers ErrFull
	dropped   map[string]uint64
	flushes   int
	shutdowns int
	discard   bool // count only (benchmarks)
	n         uint64
	discarded atomic.Uint64
}

func (f *fakeSink) Add(tenant, labels string, ts int64, line []byte, meta []exporter.LabelPair) error {
	if f.discard { // benchmarks: no lock, so the sink adds no contention
		f.discarded.Add(1)
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		f.drop(buffer.ReasonClosed)
		return buffer.ErrClosed
	}
	if f.full {
		f.drop(buffer.ReasonBufferFull)
		return buffer.ErrFull
	}
	f.n++
	e := entry{tenant: tenant, labels: labels, ts: ts, line: string(line)}
	for _, m := range meta {
		e.meta = append(e.meta, exporter.LabelPair{Name: strings.Clone(m.Name), Value: strings.Clone(m.Value)})
	}
	f.entries = append(f.entries, e)
	return nil
}

func (f *fakeSink) drop(reason string) {
	if f.dropped == nil {
		f.dropped = make(map[string]uint64)
	}
	f.dropped[reason]++
}

func (f *fakeSink) Drop(reason string, n int, _ error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.drop(reason)
	}
}

func (f *fakeSink) Flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushes++
	if f.closed {
		return buffer.ErrClosed
	}
	return nil
}

func (f *fakeSink) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdowns++
	f.closed = true
	return nil
}

func (f *fakeSink) Stats() buffer.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := make(map[string]uint64)
	for k, v := range f.dropped {
		d[k] = v
	}
	return buffer.Stats{Enqueued: f.n, Dropped: d}
}

func (f *fakeSink) all() []entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]entry(nil), f.entries...)
}

func (f *fakeSink) last(t *testing.T) entry {
	t.Helper()
	es := f.all()
	if len(es) == 0 {
		t.Fatal("no entry recorded")
	}
	return es[len(es)-1]
}

// newTest builds a handler on a fresh fake sink.
func newTest(t testing.TB, cfg Config) (*Handler, *fakeSink) {
	t.Helper()
	f := &fakeSink{}
	h, err := newHandler(cfg, f)
	if err != nil {
		t.Fatalf("newHandler: %v", err)
	}
	return h, f
}
