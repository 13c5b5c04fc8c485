package buffer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lokislog/lokislog/exporter"
)

// ErrClosed is returned by [Buffer.Add] and [Buffer.Flush] after
// [Buffer.Shutdown] was called.
var ErrClosed = errors.New("buffer: closed")

// ErrFull is returned by [Buffer.Add] when the memory bound is reached and no
// spool can take the data. The entry is counted as dropped with
// [ReasonBufferFull].
var ErrFull = errors.New("buffer: memory full")

// ErrTooLarge is returned by [Buffer.Add] for an entry bigger than the
// memory bound itself; it is counted with [ReasonTooLarge].
var ErrTooLarge = errors.New("buffer: entry larger than the memory bound")

// Drop reasons, the keys of [Stats].Dropped.
const (
	// ReasonBufferFull: memory was full (and no spool could take the entry).
	ReasonBufferFull = "buffer_full"
	// ReasonClosed: Add was called after Shutdown.
	ReasonClosed = "closed"
	// ReasonRejected: Loki rejected the entry permanently (a 4xx other than 408 and 429).
	ReasonRejected = "rejected"
	// ReasonTooOld: the entry was older than MaxAge when it was replayed.
	ReasonTooOld = "too_old"
	// ReasonSpoolFull: the oldest spool segment was deleted to make room.
	ReasonSpoolFull = "spool_full"
	// ReasonCorrupt: the entry was in a corrupt part of the spool.
	ReasonCorrupt = "corrupt"
	// ReasonShutdown: the entry could be neither sent nor spooled before
	// Shutdown's deadline.
	ReasonShutdown = "shutdown"
	// ReasonDiskError: the spool could not be written and memory was full.
	ReasonDiskError = "disk_error"
	// ReasonTooLarge: the entry alone was larger than the memory bound.
	ReasonTooLarge = "too_large"
)

// Defaults of [Config].
const (
	DefaultBatchWait      = time.Second
	DefaultBatchSize      = 1 << 20
	DefaultMaxBufferBytes = 8 << 20
	DefaultMaxAge         = 7 * 24 * time.Hour
)

// Config configures a [Buffer]. The zero value (with an Exporter) works.
type Config struct {
	// Exporter receives the batches. Required.
	Exporter exporter.Exporter
	// BatchWait is the longest an entry waits in an open batch before the
	// batch is sent. Default 1s.
	BatchWait time.Duration
	// BatchSize is the size in bytes at which a batch is sent without
	// waiting for BatchWait. Default 1 MiB.
	BatchSize int
	// MaxBufferBytes bounds the memory held by entries not yet delivered
	// (open, queued and in-flight batches). Default 8 MiB.
	MaxBufferBytes int
	// ErrorHandler receives asynchronous errors (export failures, drops).
	// Default: a rate-limited line on stderr.
	ErrorHandler func(error)
	// RetryInterval is the first pause after an export failed with a
	// retryable error before the batch is tried again; it doubles up to
	// 30s. Default 1s.
	RetryInterval time.Duration
}

// Stats are the buffer's counters. Counts are in entries.
type Stats struct {
	// Enqueued is the number of entries accepted by Add.
	Enqueued uint64
	// Exported is the number of entries Loki accepted.
	Exported uint64
	// Dropped counts entries lost, by reason (the Reason constants).
	Dropped map[string]uint64
	// BufferedBytes and BufferedEntries are what memory holds now.
	BufferedBytes   int64
	BufferedEntries int64
	// ExportErrors counts failed Export calls (each batch attempt).
	ExportErrors uint64
	// Lag is the age of the oldest entry not yet delivered.
	Lag time.Duration
}

// Buffer is a bounded in-memory queue of log entries, grouped into batches by
// tenant and stream, sent by one goroutine. It is safe for concurrent use.
type Buffer struct {
	cfg Config
	exp exporter.Exporter

	mu      sync.Mutex
	open    map[string]*openBatch // by tenant; guarded by mu
	queue   []*sealed             // sealed batches in FIFO order; guarded by mu
	bytes   int                   // bytes held: open + queued + in flight; guarded by mu
	entries int                   // entries held; guarded by mu
	closed  bool                  // guarded by mu
	seq     uint64                // sequence of the last sealed batch; guarded by mu
	doneSeq uint64                // sequence of the last finished batch; guarded by mu
	// progress is closed and replaced whenever a batch finishes; guarded by mu.
	progress chan struct{}

	wake chan struct{} // cap 1: work is available
	stop chan struct{} // closed by Shutdown: drain and exit
	// abort is cancelled when Shutdown's ctx ends: stop exporting now.
	abortCtx context.Context
	abort    context.CancelFunc
	done     chan struct{} // closed when the worker goroutine exits

	shutdownOnce sync.Once
	shutdownErr  error

	enqueued     atomic.Uint64
	exported     atomic.Uint64
	exportErrors atomic.Uint64
	dropMu       sync.Mutex
	dropped      map[string]uint64 // guarded by dropMu

	errs *errorReporter
}

type openBatch struct {
	tenant  string
	streams []exporter.Stream
	index   map[string]int
	size    int
	n       int
	created time.Time
	arena   arena
	metas   []exporter.LabelPair
}

type sealed struct {
	batch   *exporter.Batch
	size    int
	n       int
	seq     uint64
	created time.Time
}

// New starts a Buffer and its export goroutine. It does not contact Loki.
func New(cfg Config) (*Buffer, error) {
	if cfg.Exporter == nil {
		return nil, errors.New("buffer: no exporter")
	}
	switch {
	case cfg.BatchWait < 0:
		return nil, fmt.Errorf("buffer: negative batch wait %v", cfg.BatchWait)
	case cfg.BatchSize < 0:
		return nil, fmt.Errorf("buffer: negative batch size %d", cfg.BatchSize)
	case cfg.MaxBufferBytes < 0:
		return nil, fmt.Errorf("buffer: negative max buffer bytes %d", cfg.MaxBufferBytes)
	case cfg.RetryInterval < 0:
		return nil, fmt.Errorf("buffer: negative retry interval %v", cfg.RetryInterval)
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = DefaultBatchWait
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MaxBufferBytes == 0 {
		cfg.MaxBufferBytes = DefaultMaxBufferBytes
	}
	if cfg.BatchSize > cfg.MaxBufferBytes {
		cfg.BatchSize = cfg.MaxBufferBytes
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = time.Second
	}
	b := &Buffer{
		cfg:      cfg,
		exp:      cfg.Exporter,
		open:     make(map[string]*openBatch),
		progress: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		dropped:  make(map[string]uint64),
		errs:     newErrorReporter(cfg.ErrorHandler),
	}
	b.abortCtx, b.abort = context.WithCancel(context.Background())
	go b.run() // stopped by Shutdown
	return b, nil
}

// Add queues one entry. It copies line and the metadata strings; tenant and
// labels are kept as given and must not change afterwards (callers intern
// them). Add never blocks on Loki: when memory is full it drops the entry,
// counts it and returns [ErrFull].
func (b *Buffer) Add(tenant, labels string, ts int64, line []byte, meta []exporter.LabelPair) error {
	size := len(line) + 16
	for i := range meta {
		size += len(meta[i].Name) + len(meta[i].Value) + 4
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.drop(ReasonClosed, 1)
		return ErrClosed
	}
	ob := b.open[tenant]
	if ob == nil {
		ob = &openBatch{tenant: tenant, index: make(map[string]int), created: time.Now()}
		b.open[tenant] = ob
	}
	si, ok := ob.index[labels]
	extra := size
	if !ok {
		extra += len(labels)
	}
	if extra > b.cfg.MaxBufferBytes {
		b.mu.Unlock()
		b.drop(ReasonTooLarge, 1)
		return ErrTooLarge
	}
	if b.bytes+extra > b.cfg.MaxBufferBytes {
		b.mu.Unlock()
		b.drop(ReasonBufferFull, 1)
		return ErrFull
	}
	sealedOne := false
	if ob.n > 0 && ob.size+extra > b.cfg.BatchSize {
		b.sealLocked(ob)
		sealedOne = true
		ob = &openBatch{tenant: tenant, index: make(map[string]int), created: time.Now()}
		b.open[tenant] = ob
		si, ok = 0, false
		extra = size + len(labels)
	}
	if !ok {
		si = len(ob.streams)
		ob.index[labels] = si
		ob.streams = append(ob.streams, exporter.Stream{Labels: labels})
	}
	e := exporter.Entry{Timestamp: ts, Line: ob.arena.str(line)}
	if len(meta) > 0 {
		start := len(ob.metas)
		for _, m := range meta {
			ob.metas = append(ob.metas, exporter.LabelPair{Name: ob.arena.strs(m.Name), Value: ob.arena.strs(m.Value)})
		}
		e.Metadata = ob.metas[start:len(ob.metas):len(ob.metas)]
	}
	st := &ob.streams[si]
	st.Entries = append(st.Entries, e)
	ob.size += extra
	ob.n++
	b.bytes += extra
	b.entries++
	if ob.size >= b.cfg.BatchSize {
		b.sealLocked(ob)
		sealedOne = true
	}
	b.mu.Unlock()
	b.enqueued.Add(1)
	if sealedOne {
		b.signal()
	}
	return nil
}

// sealLocked closes ob and queues it for export.
func (b *Buffer) sealLocked(ob *openBatch) {
	delete(b.open, ob.tenant)
	if ob.n == 0 {
		return
	}
	b.seq++
	b.queue = append(b.queue, &sealed{
		batch:   &exporter.Batch{Tenant: ob.tenant, Streams: ob.streams},
		size:    ob.size + 0,
		n:       ob.n,
		seq:     b.seq,
		created: ob.created,
	})
}

func (b *Buffer) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Flush sends every entry added before the call and waits until each was
// delivered or dropped, or ctx ends.
func (b *Buffer) Flush(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	for _, ob := range b.open {
		b.sealLocked(ob)
	}
	target := b.seq
	b.mu.Unlock()
	b.signal()
	return b.waitFor(ctx, target)
}

func (b *Buffer) waitFor(ctx context.Context, target uint64) error {
	for {
		b.mu.Lock()
		if b.doneSeq >= target {
			b.mu.Unlock()
			return nil
		}
		ch := b.progress
		b.mu.Unlock()
		select {
		case <-ch:
		case <-b.done:
			b.mu.Lock()
			ok := b.doneSeq >= target
			b.mu.Unlock()
			if ok {
				return nil
			}
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("flush: %w", ctx.Err())
		}
	}
}

// Shutdown stops accepting entries, sends what is queued until ctx ends,
// then shuts the exporter down. Entries that could not be sent before ctx
// ended are counted as dropped with [ReasonShutdown]. It is idempotent: later
// calls wait for the first to finish and return its result.
func (b *Buffer) Shutdown(ctx context.Context) error {
	b.shutdownOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		for _, ob := range b.open {
			b.sealLocked(ob)
		}
		b.mu.Unlock()
		close(b.stop)
		var errs []error
		select {
		case <-b.done:
		case <-ctx.Done():
			b.abort()
			<-b.done
			errs = append(errs, fmt.Errorf("shutdown: %w", ctx.Err()))
		}
		b.abort()
		if err := b.exp.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown exporter: %w", err))
		}
		b.errs.close()
		b.shutdownErr = errors.Join(errs...)
	})
	<-b.done
	return b.shutdownErr
}

// Stats returns a snapshot of the counters.
func (b *Buffer) Stats() Stats {
	s := Stats{
		Enqueued:     b.enqueued.Load(),
		Exported:     b.exported.Load(),
		ExportErrors: b.exportErrors.Load(),
		Dropped:      make(map[string]uint64),
	}
	b.dropMu.Lock()
	for k, v := range b.dropped {
		s.Dropped[k] = v
	}
	b.dropMu.Unlock()
	b.mu.Lock()
	s.BufferedBytes = int64(b.bytes)
	s.BufferedEntries = int64(b.entries)
	var oldest time.Time
	if len(b.queue) > 0 {
		oldest = b.queue[0].created
	}
	for _, ob := range b.open {
		if ob.n > 0 && (oldest.IsZero() || ob.created.Before(oldest)) {
			oldest = ob.created
		}
	}
	if !oldest.IsZero() {
		s.Lag = time.Since(oldest)
	}
	b.mu.Unlock()
	return s
}

func (b *Buffer) drop(reason string, n int) {
	if n <= 0 {
		return
	}
	b.dropMu.Lock()
	b.dropped[reason] += uint64(n)
	b.dropMu.Unlock()
}

// run is the export goroutine: it owns every Export call. Started by New,
// stopped by Shutdown (stop, then abort).
func (b *Buffer) run() {
	defer close(b.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	retry := time.Duration(0)
	for {
		b.mu.Lock()
		stopping := isClosed(b.stop)
		now := time.Now()
		var next time.Time
		for _, ob := range b.open {
			due := ob.created.Add(b.cfg.BatchWait)
			if stopping || !now.Before(due) {
				b.sealLocked(ob)
			} else if next.IsZero() || due.Before(next) {
				next = due
			}
		}
		var head *sealed
		if len(b.queue) > 0 {
			head = b.queue[0]
		}
		b.mu.Unlock()

		if head != nil {
			if b.abortCtx.Err() != nil {
				b.dropRest()
				return
			}
			ok := b.export(head)
			if ok {
				retry = 0
				continue
			}
			// Retryable failure: wait, then try the same batch again.
			if retry == 0 {
				retry = b.cfg.RetryInterval
			} else if retry < 30*time.Second {
				retry *= 2
			}
			timer.Reset(retry)
			select {
			case <-timer.C:
			case <-b.abortCtx.Done():
			}
			continue
		}
		if stopping {
			return
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
		select {
		case <-b.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		case <-b.stop:
		}
	}
}

// export sends s and settles it. It returns false when s stays queued for a
// retry.
func (b *Buffer) export(s *sealed) bool {
	err := b.exp.Export(b.abortCtx, s.batch)
	if err == nil {
		b.exported.Add(uint64(s.n))
		b.finish(s)
		return true
	}
	b.exportErrors.Add(1)
	var perm *exporter.PermanentError
	var part *exporter.PartialError
	switch {
	case errors.As(err, &part):
		rejected := 0
		if part.Rejected != nil {
			rejected = part.Rejected.Entries
			b.drop(ReasonRejected, rejected)
			b.errs.report(part.Rejected)
		}
		remaining := part.Remaining.Len()
		b.exported.Add(uint64(max(0, s.n-remaining-rejected)))
		b.mu.Lock()
		s.batch = part.Remaining
		// The memory of delivered entries is released when s finishes.
		s.n = remaining
		b.mu.Unlock()
		b.errs.report(err)
		return false
	case errors.As(err, &perm):
		rejected := min(perm.Entries, s.n)
		if perm.Entries == 0 {
			rejected = s.n
		}
		b.drop(ReasonRejected, rejected)
		b.exported.Add(uint64(s.n - rejected))
		b.errs.report(err)
		b.finish(s)
		return true
	}
	if b.abortCtx.Err() != nil {
		return false
	}
	b.errs.report(fmt.Errorf("export %d entries: %w", s.n, err))
	return false
}

// finish removes the head batch s and releases its memory.
func (b *Buffer) finish(s *sealed) {
	b.mu.Lock()
	if len(b.queue) > 0 && b.queue[0] == s {
		b.queue[0] = nil
		b.queue = b.queue[1:]
	}
	b.bytes -= s.size
	b.entries -= s.n
	if b.entries <= 0 {
		b.entries = 0
	}
	b.doneSeq = s.seq
	close(b.progress)
	b.progress = make(chan struct{})
	b.mu.Unlock()
}

// dropRest counts every entry still held as dropped at shutdown.
func (b *Buffer) dropRest() {
	b.mu.Lock()
	for _, ob := range b.open {
		b.sealLocked(ob)
	}
	q := b.queue
	b.queue = nil
	n := 0
	for _, s := range q {
		n += s.n
	}
	b.bytes, b.entries = 0, 0
	b.doneSeq = b.seq
	close(b.progress)
	b.progress = make(chan struct{})
	b.mu.Unlock()
	if n > 0 {
		b.drop(ReasonShutdown, n)
		b.errs.report(fmt.Errorf("shutdown deadline: %d entries not delivered", n))
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// arena hands out strings copied into shared chunks, so an entry costs no
// allocation of its own. A chunk lives as long as any string in it.
type arena struct {
	cur []byte
}

const chunkSize = 64 << 10

func (a *arena) str(p []byte) string {
	if len(p) == 0 {
		return ""
	}
	if len(p) > chunkSize/8 {
		c := make([]byte, len(p))
		copy(c, p)
		return unsafe.String(&c[0], len(c))
	}
	if cap(a.cur)-len(a.cur) < len(p) {
		a.cur = make([]byte, 0, chunkSize)
	}
	start := len(a.cur)
	a.cur = append(a.cur, p...)
	return unsafe.String(&a.cur[start], len(p))
}

func (a *arena) strs(s string) string {
	return a.str(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// errorReporter passes asynchronous errors to the configured handler, or
// writes at most one line a second to stderr.
type errorReporter struct {
	fn     func(error)
	mu     sync.Mutex
	last   time.Time
	missed int
	closed bool
}

func newErrorReporter(fn func(error)) *errorReporter { return &errorReporter{fn: fn} }

func (r *errorReporter) report(err error) {
	if err == nil {
		return
	}
	if r.fn != nil {
		r.fn(err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if now.Sub(r.last) < time.Second {
		r.missed++
		return
	}
	r.last = now
	if r.missed > 0 {
		fmt.Fprintf(os.Stderr, "lokislog: %v (and %d more errors)\n", err, r.missed)
		r.missed = 0
		return
	}
	fmt.Fprintf(os.Stderr, "lokislog: %v\n", err)
}

func (r *errorReporter) close() {}
