package buffer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/spool"
)

// ErrClosed is returned by [Buffer.Add] and [Buffer.Flush] after
// [Buffer.Shutdown] was called.
var ErrClosed = errors.New("buffer: closed")

// ErrFull is returned by [Buffer.Add] when the memory bound is reached and no
// spool can take the data. The entry is counted as dropped with
// [ReasonBufferFull].
var ErrFull = errors.New("buffer: memory full")

// ErrTooLarge is returned by [Buffer.Add] for an entry bigger than the
// memory bound itself, or with a line of 4 GiB or more; it is counted with
// [ReasonTooLarge].
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
	// DefaultSpoolMaxBufferBytes is MaxBufferBytes' default with a
	// SpoolDir: the spool holds what memory does not.
	DefaultSpoolMaxBufferBytes = 4 << 20
	DefaultMaxAge              = 7 * 24 * time.Hour
)

// Config configures a [Buffer]. The zero value (with an Exporter) works.
type Config struct {
	// Exporter receives the batches. Required.
	Exporter exporter.Exporter
	// Exporter2, when set, is a second exporter to the same Loki (a
	// second exporter.Client) through which a memory-only buffer (no
	// SpoolDir) sends the next queued batch while one is in flight through
	// Exporter: two pushes at a time while batches queue up, as in a
	// burst. A batch that fails is queued again ahead of those after it:
	// after the head failed, one at a time until an export succeeds; when
	// only the second failed, it is sent again at once as the head (the
	// handler's second client makes one attempt per push and leaves the
	// retrying to the first). Each exporter is still called by one
	// goroutine at a time. Loki takes entries out of order within an
	// hour. Shutdown shuts it down too.
	Exporter2 exporter.Exporter
	// BatchWait is the longest an entry waits in an open batch before the
	// batch is sent. Default 1s.
	BatchWait time.Duration
	// BatchSize is the size in bytes at which a batch is sent without
	// waiting for BatchWait. Default 1 MiB.
	BatchSize int
	// MaxBufferBytes bounds the memory held by entries not yet delivered
	// (open, queued and in-flight batches): each counts its line, its
	// metadata and its Entry and LabelPair structs (48 and 32 bytes on
	// 64-bit platforms), and each stream its labels once a batch. Default
	// 8 MiB, or 4 MiB with a SpoolDir.
	MaxBufferBytes int
	// ErrorHandler receives asynchronous errors (export failures, spool
	// problems, a *DropError at most once a second), from a goroutine of
	// the buffer's, one at a time, never while a lock is held. Default: a
	// rate-limited line on stderr.
	ErrorHandler func(error)
	// RetryInterval is the first pause after an export failed with a
	// retryable error before the batch is tried again; it doubles up to
	// 30s. Default 1s.
	RetryInterval time.Duration

	// SpoolDir is the directory of the on-disk spool. Empty (the default)
	// means memory only. See docs/SPOOL.md.
	SpoolDir string
	// SpoolMode is "spill" (default: memory first; batches go to disk when
	// memory passes three quarters of its bound, when an export fails or
	// takes longer than SpillAfter, and at Shutdown) or "always" (every
	// entry is written to the spool before Add returns, so a crash loses
	// nothing Add returned for).
	SpoolMode string
	// SpoolSync is "interval" (default: fsync every SpoolSyncInterval),
	// "batch" (fsync every write) or "never" (leave it to the OS).
	SpoolSync string
	// SpoolSyncInterval is the fsync period of "interval". Default 1s.
	SpoolSyncInterval time.Duration
	// MaxSpoolBytes bounds the spool on disk; when full the oldest segment
	// is deleted and its entries counted as dropped. Default 256 MiB.
	MaxSpoolBytes int64
	// SpoolSegmentSize is the size of one spool segment file. Default
	// min(8 MiB, MaxSpoolBytes/4).
	SpoolSegmentSize int64
	// MaxAge drops, at replay, entries older than this (Loki rejects
	// them). Default 7 days (Loki's reject_old_samples_max_age).
	MaxAge time.Duration
	// SpillAfter is how long an export may run or keep failing before the
	// batches in memory are written to the spool. Default 5s.
	SpillAfter time.Duration

	spoolFS spool.FS // tests inject disk faults here
}

// Spool modes.
const (
	SpoolSpill  = "spill"
	SpoolAlways = "always"
)

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

	// Spilled counts entries written to the spool; Replayed the entries
	// read back from it and delivered.
	Spilled  uint64
	Replayed uint64
	// SpoolBytes and SpoolSegments are the spool's size on disk;
	// SpoolEntries the entries it holds not yet acknowledged.
	SpoolBytes    int64
	SpoolSegments int
	SpoolEntries  int64
	// CorruptSegments counts spool segments set aside as corrupt.
	CorruptSegments int
	// DiskErrors counts failed spool writes.
	DiskErrors uint64
}

// Buffer is a bounded in-memory queue of log entries, grouped into batches by
// tenant and stream, sent by one goroutine (with a second export it starts
// and waits for: memory mode's second batch, "always" mode's read ahead),
// with an optional on-disk spool. It is safe for concurrent use.
type Buffer struct {
	cfg Config
	exp exporter.Exporter
	sp  *spool.Spool // nil when memory only
	// sending is the batch exportSending sends, and sent its outcome
	// ("always" mode's replay: replayStep; memory mode's second batch:
	// run). Owned by the worker.
	sending *exporter.Batch
	sent    chan error

	mu       sync.Mutex
	recycle  recycler              // has its own lock
	open     map[string]*openBatch // by tenant; guarded by mu
	queue    []*sealed             // sealed batches in FIFO order; guarded by mu
	inflight *sealed               // exported from memory now; guarded by mu
	bytes    int                   // bytes held: open + queued + in flight; guarded by mu
	entries  int                   // entries held; guarded by mu
	closed   bool                  // guarded by mu
	// spoolActive is true while the spool is the queue: it holds records
	// not yet delivered, or a spill is under way. Sealed batches then go to
	// the spool behind them. Guarded by mu.
	spoolActive bool
	spilling    bool   // a spill is writing; guarded by mu
	spoolGen    uint64 // incremented on every spool append; guarded by mu
	// unreadBytes and firstUnread describe records appended in "always"
	// mode that the worker has not read yet; guarded by mu.
	unreadBytes int
	firstUnread time.Time
	flushWant   bool      // a Flush wants the spool read now; guarded by mu
	exportStart time.Time // when the export in flight started; guarded by mu
	diskRetryAt time.Time // spill again only after this, the disk failed; guarded by mu
	// diskFallback: in "always" mode a write failed and entries are kept in
	// memory only until the spiller has written them; guarded by mu.
	diskFallback bool
	maxSpool     int64 // the spool's bound in bytes
	// spinLock: lockAdd spins before it yields ("always" spool mode, more
	// than one P; see lockAdd).
	spinLock bool
	// fast: while the spool is the queue in "always" mode, Add appends a
	// record with the spool's AppendFast, without mu; every section under
	// mu starts by counting those appends (lock). Guarded by mu.
	fast bool
	// progress is closed and replaced whenever entries settle; guarded by mu.
	progress chan struct{}

	spillMu  sync.Mutex // serialises spills
	spillBuf []byte     // guarded by spillMu

	wake      chan struct{} // cap 1: work for the worker
	spillWake chan struct{} // cap 1: work for the spiller
	stop      chan struct{} // closed by Shutdown: drain and exit
	// exportCtx is cancelled when Shutdown's ctx (less a margin to spill)
	// ends: stop exporting now.
	exportCtx   context.Context
	abort       context.CancelFunc
	done        chan struct{}  // closed when the worker exits
	refills     sync.WaitGroup // the recycler's refills Add starts (Shutdown waits)
	spillerDone chan struct{}  // closed when the spiller exits
	spillerStop chan struct{}

	shutdownOnce sync.Once
	shutdownErr  error

	// enqueued counts the entries Add accepted; guarded by mu. It is a
	// plain field: an atomic add after Unlock would pull one more shared
	// cache line into every Add.
	enqueued uint64
	// appended counts the entries Add wrote to the spool itself ("always"
	// mode), for Stats.Spilled with the spiller's (spilled); guarded by
	// mu, for the same reason.
	appended  uint64
	recovered uint64 // entries found in the spool at start
	// leftSettled: entries of the records the worker read and left
	// unacknowledged at Shutdown that were already delivered or rejected
	// (replay.settledPart); written by the worker before done is closed.
	leftSettled int
	// spoolFullSettled: of the entries the spool counted as spool_full,
	// those delivered or rejected before (see Shutdown); not counted again.
	spoolFullSettled atomic.Uint64
	exported         atomic.Uint64
	settled          atomic.Uint64 // entries that left the pipeline (any way)
	exportErrors     atomic.Uint64
	spilled          atomic.Uint64 // by the spiller; see appended
	replayed         atomic.Uint64
	diskErrors       atomic.Uint64
	dropMu           sync.Mutex
	dropped          map[string]uint64 // guarded by dropMu
	drops            dropReports       // guarded by dropMu

	// Flush counts settled entries, so the older ones must settle first.
	// When the head batch failed and the second one sent with it (memory
	// only, Exporter2) did not, what the second settled is held in held
	// (while holdSettle is set) and settled once the head is done, or by
	// dropRest at Shutdown. Owned by the worker; dropRest reads held after
	// the worker ended.
	holdSettle bool
	held       int

	errs *errorReporter
}

type openBatch struct {
	tenant  string
	streams []exporter.Stream
	index   map[string]int
	// lastLabels and lastStream: the stream of the last entry added, so
	// that a run of entries of one stream skips the index lookup.
	lastLabels string
	lastStream int
	size       int // what BatchSize counts (exporter.EntrySize)
	mem        int // what MaxBufferBytes counts
	n          int
	created    time.Time
	arena      arena
	metas      []exporter.LabelPair
	// qents are the batch's entries in the order added (streams' Entries
	// stay nil until the batch leaves: sealed.build).
	qents []qentry
	// mark is the spool record of the last entry ("always" mode), when
	// every entry of the batch is on disk (marked).
	mark   spool.Mark
	marked bool
}

// newOpenBatch starts a batch for tenant. Callers hold b.mu.
func (b *Buffer) newOpenBatch(tenant string) *openBatch {
	now := time.Now()
	b.recycle.opened(now)
	return &openBatch{tenant: tenant, index: b.recycle.index(), created: now,
		arena: arena{rec: &b.recycle}, metas: b.recycle.metaSlice(), qents: b.recycle.qentSlice()}
}

// qentry is an entry as a batch holds it until it leaves: without
// pointers, so that a queue of them gives the garbage collector nothing to
// scan (as exporter.Entry values, each line and metadata slice is a pointer
// the collector follows while a logging goroutine may be waiting for it).
// Its line is n bytes at off in the batch's chunk c; its metadata is
// metas[m : m+nm]; it belongs to stream st.
type qentry struct {
	ts                   int64
	c, off, n, m, nm, st uint32
}

type sealed struct {
	batch   *exporter.Batch
	size    int // what it counts in Buffer.bytes (openBatch.mem)
	n       int
	created time.Time
	onDisk  bool // written to the spool; guarded by mu
	// marked: every entry was written to the spool as its own record
	// ("always" mode), the last one at mark. Released after delivery.
	mark   spool.Mark
	marked bool
	// recyclable: chunks, metas, index and the entry slices of batch are
	// the batch's own, to be recycled once it left (see recycler.put).
	recyclable bool
	chunks     [][]byte
	metas      []exporter.LabelPair
	index      map[string]int
	// qents are the entries until build fills batch's streams from them
	// (built); nil for a batch read back from the spool.
	qents   []qentry
	buildMu sync.Mutex
	built   bool
}

// New starts a Buffer and its goroutines; with SpoolDir it opens (and locks)
// the spool and queues what an earlier process left there before any new
// entry. It does not contact Loki.
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
	case cfg.MaxAge < 0:
		return nil, fmt.Errorf("buffer: negative max age %v", cfg.MaxAge)
	case cfg.SpillAfter < 0:
		return nil, fmt.Errorf("buffer: negative spill after %v", cfg.SpillAfter)
	case cfg.MaxSpoolBytes < 0:
		return nil, fmt.Errorf("buffer: negative max spool bytes %d", cfg.MaxSpoolBytes)
	}
	switch cfg.SpoolMode {
	case "":
		cfg.SpoolMode = SpoolSpill
	case SpoolSpill, SpoolAlways:
	default:
		return nil, fmt.Errorf("buffer: unknown spool mode %q (want spill or always)", cfg.SpoolMode)
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = DefaultBatchWait
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MaxBufferBytes == 0 {
		cfg.MaxBufferBytes = DefaultMaxBufferBytes
		if cfg.SpoolDir != "" {
			cfg.MaxBufferBytes = DefaultSpoolMaxBufferBytes
		}
	}
	if cfg.BatchSize > cfg.MaxBufferBytes {
		cfg.BatchSize = cfg.MaxBufferBytes
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = time.Second
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.SpillAfter == 0 {
		cfg.SpillAfter = 5 * time.Second
	}
	b := &Buffer{
		cfg:         cfg,
		spinLock:    cfg.SpoolDir != "" && cfg.SpoolMode == SpoolAlways && runtime.GOMAXPROCS(0) > 1,
		exp:         cfg.Exporter,
		open:        make(map[string]*openBatch),
		progress:    make(chan struct{}),
		wake:        make(chan struct{}, 1),
		sent:        make(chan error, 1),
		spillWake:   make(chan struct{}, 1),
		stop:        make(chan struct{}),
		done:        make(chan struct{}),
		spillerDone: make(chan struct{}),
		spillerStop: make(chan struct{}),
		dropped:     make(map[string]uint64),
		errs:        newErrorReporter(cfg.ErrorHandler),
	}
	b.recycle.lastPut.Store(time.Now().UnixNano()) // nothing is starving yet
	if cfg.SpoolDir != "" {
		sp, err := spool.Open(spool.Options{
			Dir:          cfg.SpoolDir,
			MaxBytes:     cfg.MaxSpoolBytes,
			SegmentSize:  cfg.SpoolSegmentSize,
			Sync:         spool.SyncMode(cfg.SpoolSync),
			SyncInterval: cfg.SpoolSyncInterval,
			ErrorHandler: b.errs.report,
			FS:           cfg.spoolFS,
			PrepareFirst: cfg.SpoolMode == SpoolAlways, // the first record is written at once
			// "spill" mode appends whole batches: one write(2) each is
			// faster than the mapping (no pages zeroed and faulted in
			// ahead) and keeps no mapped pages in RSS (docs/DESIGN.md).
			NoMmap: cfg.SpoolMode == SpoolSpill,
		})
		if err != nil {
			return nil, fmt.Errorf("buffer: %w", err)
		}
		b.sp = sp
		b.maxSpool = cfg.MaxSpoolBytes
		if b.maxSpool == 0 {
			b.maxSpool = spool.DefaultMaxBytes
		}
		st := sp.Stats()
		b.recovered = uint64(st.RecoveredEntries)
		if st.Records > 0 {
			b.spoolActive = true
			b.unreadBytes = cfg.BatchSize // read the backlog at once
		}
		b.setFastLocked(true) // no goroutine runs yet
	}
	b.exportCtx, b.abort = context.WithCancel(context.Background())
	b.errs.start()
	go b.run() // stopped by Shutdown
	if b.sp != nil {
		go b.spiller() // stopped by Shutdown
	} else {
		close(b.spillerDone)
	}
	return b, nil
}

// Add queues one entry. It copies line and the metadata strings; tenant and
// labels are kept as given and must not change afterwards (callers intern
// them). Add never waits on Loki: when memory is full (and no spool can take
// the data) it drops the entry, counts it and returns [ErrFull]. In "always"
// spool mode it writes the entry to the spool (the OS page cache) before it
// returns.
func (b *Buffer) Add(tenant, labels string, ts int64, line []byte, meta []exporter.LabelPair) error {
	var enc *[]byte // "always": the entry's spool record, encoded before locking
	if b.sp != nil && b.cfg.SpoolMode == SpoolAlways {
		enc = encodeOne(tenant, labels, ts, line, meta)
		defer putEnc(enc)
		if c, ok := b.sp.AppendFast(*enc); ok {
			// The spool is the queue: wake the worker when the records
			// it has not taken reach a batch (the rest wait for
			// BatchWait, as below).
			u := unreadOf(c)
			if u >= b.cfg.BatchSize && u-frameUnread(len(*enc)) < b.cfg.BatchSize {
				b.signal()
			}
			return nil
		}
	}
	size := len(line) + 16 // exporter.EntrySize: what BatchSize counts
	for i := range meta {
		size += len(meta[i].Name) + len(meta[i].Value) + 4
	}
	structs := entryMem + pairMem*len(meta) // MaxBufferBytes counts them, BatchSize does not
	spills := 0                             // batches this call wrote to the spool itself
	b.lockAdd()
	b.foldFastLocked()
again:
	if b.closed {
		b.mu.Unlock()
		b.drop(ReasonClosed, 1)
		return ErrClosed
	}
	var mark spool.Mark
	marked := false
	if enc != nil && !b.diskFallback && (b.diskRetryAt.IsZero() || time.Now().After(b.diskRetryAt)) {
		m, err := b.appendOneLocked(*enc)
		switch {
		case err == nil && b.spoolActive:
			// The spool is the queue: nothing in memory.
			wake := b.unreadBytes >= b.cfg.BatchSize
			b.enqueued++
			b.appended++
			b.mu.Unlock()
			if wake {
				b.signal()
			}
			return nil
		case err == nil && m.SpoolBytes+2*int64(b.cfg.MaxBufferBytes) > b.maxSpool:
			// The spool may soon drop its oldest segments to make room:
			// memory copies could then outlive their records and a drop be
			// counted for an entry still delivered. Let the spool be the
			// queue alone.
			b.switchToSpoolLocked()
			b.enqueued++
			b.appended++
			b.mu.Unlock()
			b.signal()
			return nil
		case err == nil:
			// Keep a copy in memory to send from; the spool's record is
			// released once Loki has the batch. Batches must leave in the
			// order their records were written: another tenant's open
			// batch is sealed first.
			mark, marked = m, true
			b.appended++
			if len(b.open) > 1 || len(b.open) == 1 && b.open[tenant] == nil {
				for t, ob := range b.open {
					if t != tenant {
						b.sealLocked(ob)
					}
				}
			}
		case errors.Is(err, spool.ErrTooLarge):
			b.mu.Unlock()
			b.drop(ReasonTooLarge, 1)
			return ErrTooLarge
		default:
			// The disk failed: keep entries in memory only, in batches of
			// their own, until the spiller has written them.
			b.diskFallback = true
			b.setFastLocked(true)
			for _, ob := range b.open {
				b.sealLocked(ob)
			}
		}
	}
	ob := b.open[tenant]
	newBatch := false
	if ob == nil {
		ob = b.newOpenBatch(tenant)
		b.open[tenant] = ob
		newBatch = true // the worker must time its BatchWait
	}
	si, ok := ob.lastStream, ob.n > 0 && ob.lastLabels == labels
	if !ok {
		si, ok = ob.index[labels]
	}
	extra := size
	if !ok {
		extra += len(labels)
	}
	if (extra+structs > b.cfg.MaxBufferBytes || uint64(len(line)) > maxLine) && !marked {
		b.mu.Unlock()
		b.drop(ReasonTooLarge, 1)
		return ErrTooLarge
	}
	// A marked entry larger than memory is on disk already: the spool
	// becomes the queue below (it is sent from there, never refused).
	if b.bytes+extra+structs > b.cfg.MaxBufferBytes && marked {
		// Memory is full but the entry is on disk: let the spool be the
		// queue and drop the memory copies.
		b.switchToSpoolLocked()
		b.enqueued++
		b.mu.Unlock()
		b.signal()
		return nil
	}
	if b.bytes+extra+structs > b.cfg.MaxBufferBytes && b.sp != nil && spills < maxInlineSpills && time.Now().After(b.diskRetryAt) {
		// The spiller fell behind: rather than drop, write the oldest
		// batch to disk here (one batch: a page-cache write of at most
		// BatchSize bytes) and look again.
		b.sealLocked(ob)
		b.mu.Unlock()
		done, _ := b.spillOne(false)
		spills++
		if done {
			spills = maxInlineSpills + 1 // nothing in memory left to write
		}
		b.lock()
		goto again
	}
	if b.bytes+extra+structs > b.cfg.MaxBufferBytes && spills > maxInlineSpills && enc == nil &&
		len(b.queue) == 0 && ob.n == 0 && (b.inflight == nil || b.inflight.onDisk) {
		// Nothing was left to spill and memory holds no entry that is
		// not on disk (the batch in flight is): the entry goes to the
		// spool after them, as in "always" mode, rather than being
		// refused. (Its encoding buffer is not pooled again: a rare path.)
		enc = encodeOne(tenant, labels, ts, line, meta)
		goto again
	}
	if b.bytes+extra+structs > b.cfg.MaxBufferBytes {
		reason := ReasonBufferFull
		if b.sp != nil && time.Now().Before(b.diskRetryAt) {
			reason = ReasonDiskError
		}
		b.mu.Unlock()
		b.drop(reason, 1)
		if b.sp != nil {
			b.signalSpill()
		}
		return ErrFull
	}
	sealedOne := false
	if ob.n > 0 && ob.size+extra > b.cfg.BatchSize {
		b.sealLocked(ob)
		sealedOne = true
		ob = b.newOpenBatch(tenant)
		b.open[tenant] = ob
		si, ok = 0, false
		extra = size + len(labels)
	}
	if !ok {
		si = len(ob.streams)
		ob.index[labels] = si
		ob.streams = append(ob.streams, exporter.Stream{Labels: labels})
	}
	ob.lastStream, ob.lastLabels = si, labels
	e := qentry{ts: ts, n: uint32(len(line)), m: uint32(len(ob.metas)), nm: uint32(len(meta)), st: uint32(si)}
	e.c, e.off = ob.arena.put(line)
	for _, m := range meta {
		ob.metas = append(ob.metas, exporter.LabelPair{Name: ob.arena.strs(m.Name), Value: ob.arena.strs(m.Value)})
	}
	ob.qents = append(ob.qents, e)
	if marked {
		ob.mark, ob.marked = mark, true
	}
	ob.size += extra
	ob.mem += extra + structs
	ob.n++
	b.bytes += extra + structs
	b.entries++
	if ob.size >= b.cfg.BatchSize {
		b.sealLocked(ob)
		sealedOne = true
	}
	spill := b.sp != nil && (sealedOne && b.spoolActive || b.bytes > b.cfg.MaxBufferBytes/4*3)
	b.enqueued++
	if b.recycle.low() && b.recycle.refilling.CompareAndSwap(false, true) {
		// Started under mu, the buffer open: Shutdown, which closes it
		// under mu, waits for every refill it did not see start.
		b.refills.Go(b.recycle.refill)
	}
	b.mu.Unlock()
	if sealedOne || newBatch {
		b.signal()
	}
	if spill {
		b.signalSpill()
	}
	return nil
}

// lockAdd takes b.mu for Add. Add's critical section is short (a copy and
// an append), but sync.Mutex parks a goroutine in the kernel as soon as
// other goroutines are runnable, which is the normal state when more
// goroutines log than there are CPUs: every handoff then costs a futex wait
// and wake-up, and the CPUs go idle meanwhile. Yielding to the scheduler a
// few times first lets the holder finish; the blocking Lock remains the
// fallback, so a long hold never spins.
//
// In "always" spool mode (b.spinLock) it first spins for up to lockSpin:
// the section holds the copy into the spool's mapping, longer than the
// memory-only one, and the holder is normally running on another CPU and
// done within a microsecond or two. A yield hands this P to another
// goroutine (the export worker may run for hundreds of microseconds before
// it yields), and a parked waiter on a VM is woken up to a millisecond
// later, while the CPU it left stays idle. Spinning is kept to "always"
// mode: there the export worker rarely needs b.mu (it reads the spool),
// while from memory it takes b.mu for every batch and spinning loggers,
// winning the lock over it, starved it (memory mode dropped 45-79 % of a
// burst instead of 0-16 %).
func (b *Buffer) lockAdd() {
	if b.mu.TryLock() {
		return
	}
	if b.spinLock {
		start := time.Now()
		for i := 1; ; i++ {
			for range 32 {
				spinDelay.Load() // a pause that the compiler keeps
			}
			if b.mu.TryLock() {
				return
			}
			if i%16 == 0 && time.Since(start) > lockSpin {
				break
			}
		}
	}
	for range 4 {
		runtime.Gosched()
		if b.mu.TryLock() {
			return
		}
	}
	b.mu.Lock()
}

// lockSpin is how long lockAdd spins (b.spinLock) before it yields.
const lockSpin = 20 * time.Microsecond

// spinDelay is only loaded: lockAdd's pause between attempts.
var spinDelay atomic.Int32

// entryMem and pairMem are what an entry and each of its metadata pairs
// count in MaxBufferBytes beyond what exporter.EntrySize counts: the rest
// of their Entry and LabelPair structs (48 and 32 bytes on 64-bit
// platforms), which BatchSize leaves out.
const (
	entryMem = int(unsafe.Sizeof(exporter.Entry{})) - 16
	pairMem  = int(unsafe.Sizeof(exporter.LabelPair{})) - 4
)

// maxInlineSpills bounds the batches one Add writes to the spool itself
// when memory is full.
const maxInlineSpills = 8

// encPool holds encoding buffers of "always" mode records.
var encPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// encodeOne encodes one entry as a framed spool record (a one-entry
// batch), checksum included, so that the append under the lock is a copy.
func encodeOne(tenant, labels string, ts int64, line []byte, meta []exporter.LabelPair) *[]byte {
	entries := [1]exporter.Entry{{Timestamp: ts, Line: unsafe.String(unsafe.SliceData(line), len(line)), Metadata: meta}}
	streams := [1]exporter.Stream{{Labels: labels, Entries: entries[:]}}
	one := exporter.Batch{Tenant: tenant, Streams: streams[:]}
	p := encPool.Get().(*[]byte)
	*p, _ = spool.AppendBatchFrame((*p)[:0], &one, 1, ts) // cannot fail: one entry, a payload under 4 GiB (MaxLineSize)
	return p
}

func putEnc(p *[]byte) {
	if cap(*p) <= 64<<10 {
		encPool.Put(p)
	}
}

// appendOneLocked writes one framed entry (encodeOne) to the spool
// ("always" mode).
func (b *Buffer) appendOneLocked(frame []byte) (spool.Mark, error) {
	m, err := b.sp.AppendFrameMark(frame)
	if err != nil {
		if !errors.Is(err, spool.ErrTooLarge) {
			b.diskErrors.Add(1)
			b.diskRetryAt = time.Now().Add(time.Second)
			b.setFastLocked(true)
			b.errs.report(fmt.Errorf("spool write (keeping entries in memory): %w", err))
		}
		return m, err
	}
	if b.unreadBytes == 0 {
		b.firstUnread = time.Now()
	}
	b.unreadBytes += frameUnread(len(frame))
	b.spoolGen++
	if !b.fast && b.spoolActive {
		b.setFastLocked(true) // after a disk error, once its pause is over
	}
	return m, nil
}

// lock takes mu and counts the spool's fast appends (see fast).
func (b *Buffer) lock() {
	b.mu.Lock()
	b.foldFastLocked()
}

// foldFastLocked counts the fast appends made since the last look.
func (b *Buffer) foldFastLocked() {
	if b.fast {
		b.addFastLocked(b.sp.TakeFast())
	}
}

// addFastLocked counts fast appends as Add counts the others.
func (b *Buffer) addFastLocked(c spool.FastCounts) {
	if c.Records == 0 {
		return
	}
	n := uint64(c.Records)
	b.enqueued += n
	b.appended += n
	b.spoolGen += n
	if b.unreadBytes == 0 {
		b.firstUnread = c.First
	}
	b.unreadBytes += unreadOf(c)
}

// frameUnread is what a record framed in n bytes adds to unreadBytes: its
// payload plus 16, as exporter.EntrySize counts an entry.
func frameUnread(n int) int { return n - spool.FrameHeaderSize + 16 }

// unreadOf is what the records c counts add to unreadBytes.
func unreadOf(c spool.FastCounts) int {
	return int(c.Bytes) - int(c.Records)*(spool.FrameHeaderSize-16)
}

// setFastLocked turns the spool's fast appends on while the spool is the
// queue in "always" mode and nothing else stands in the way (and allow),
// off otherwise. A section that decides from the appends it counted (the
// spool drained, the buffer closed) turns them off first (allow false):
// once off, none is made until they are turned on again.
func (b *Buffer) setFastLocked(allow bool) {
	want := allow && b.sp != nil && b.cfg.SpoolMode == SpoolAlways && !b.closed && b.spoolActive && !b.diskFallback &&
		(b.diskRetryAt.IsZero() || time.Now().After(b.diskRetryAt))
	if want == b.fast {
		return
	}
	b.fast = want
	b.addFastLocked(b.sp.SetFast(want))
}

// sealLocked closes ob and queues it for export.
func (b *Buffer) sealLocked(ob *openBatch) {
	delete(b.open, ob.tenant)
	if ob.n == 0 {
		return
	}
	b.recycle.sealed(len(ob.qents))
	b.queue = append(b.queue, &sealed{
		batch:      &exporter.Batch{Tenant: ob.tenant, Streams: ob.streams},
		size:       ob.mem,
		n:          ob.n,
		created:    ob.created,
		onDisk:     ob.marked,
		mark:       ob.mark,
		marked:     ob.marked,
		recyclable: true,
		chunks:     ob.arena.chunks,
		metas:      ob.metas,
		qents:      ob.qents,
		index:      ob.index,
	})
}

// build fills the entries of s's streams from its qents, once, when s
// leaves: to be exported or written to the spool. The worker and the
// spiller may both build the batch in flight.
func (b *Buffer) build(s *sealed) *exporter.Batch {
	s.buildMu.Lock()
	if !s.built && s.qents != nil {
		s.built = true
		st := s.batch.Streams
		for _, e := range s.qents {
			x := &st[e.st]
			if x.Entries == nil {
				x.Entries = b.recycle.entrySlice()
			}
			var md []exporter.LabelPair
			if e.nm > 0 {
				md = s.metas[e.m : e.m+e.nm : e.m+e.nm]
			}
			x.Entries = append(x.Entries, exporter.Entry{Timestamp: e.ts, Line: at(s.chunks, e.c, e.off, e.n), Metadata: md})
		}
	}
	s.buildMu.Unlock()
	return s.batch
}

func (b *Buffer) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Buffer) signalSpill() {
	select {
	case b.spillWake <- struct{}{}:
	default:
	}
}

// admitted returns how many entries entered the pipeline so far. The
// caller holds b.mu.
func (b *Buffer) admitted() uint64 { return b.enqueued + b.recovered }

// settle records n entries leaving the pipeline and wakes Flush waiters.
func (b *Buffer) settle(n int) {
	if n <= 0 {
		return
	}
	if b.holdSettle {
		b.held += n
		return
	}
	b.settled.Add(uint64(n))
	b.lock()
	close(b.progress)
	b.progress = make(chan struct{})
	b.mu.Unlock()
}

func (b *Buffer) settledNow() uint64 {
	n := b.settled.Load()
	if b.sp != nil {
		st := b.sp.Stats()
		n += st.DroppedFullEntries + st.DroppedCorruptEntries
	}
	return n
}

// Flush sends every entry added before the call and waits until each was
// delivered or dropped, or ctx ends.
func (b *Buffer) Flush(ctx context.Context) error {
	b.lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	for _, ob := range b.open {
		b.sealLocked(ob)
	}
	b.flushWant = true
	active := b.spoolActive
	target := b.admitted()
	b.mu.Unlock()
	b.signal()
	if active {
		b.signalSpill()
	}
	return b.waitFor(ctx, target)
}

func (b *Buffer) waitFor(ctx context.Context, target uint64) error {
	for {
		b.lock()
		ch := b.progress
		b.mu.Unlock()
		if b.settledNow() >= target {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			// Spool drops settle without a signal; look again.
		case <-b.done:
			if b.settledNow() >= target {
				return nil
			}
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("flush: %w", ctx.Err())
		}
	}
}

// Shutdown stops accepting entries and sends what is queued until ctx ends.
// With a spool, exporting stops a little before ctx's deadline (a fifth of
// the time left, at most 500 ms) and what was not delivered is written to the
// spool for the next start; without one, it is counted as dropped with
// [ReasonShutdown]. Then the exporter is shut down. Shutdown is idempotent:
// later calls wait for the first to finish and return its result.
func (b *Buffer) Shutdown(ctx context.Context) error {
	b.shutdownOnce.Do(func() {
		b.lock()
		b.closed = true
		b.setFastLocked(true)
		for _, ob := range b.open {
			b.sealLocked(ob)
		}
		b.mu.Unlock()
		close(b.stop)
		exportDone := ctx.Done()
		if dl, ok := ctx.Deadline(); ok && b.sp != nil {
			margin := min(time.Until(dl)/5, 500*time.Millisecond)
			t := time.NewTimer(max(time.Until(dl)-margin, 0))
			defer t.Stop()
			c := make(chan struct{})
			go func() { // ends with Shutdown
				select {
				case <-t.C:
				case <-ctx.Done():
				case <-b.done:
				}
				close(c)
			}()
			exportDone = c
		}
		var errs []error
		select {
		case <-b.done:
		case <-exportDone:
			b.abort()
			<-b.done
		}
		b.abort()
		close(b.spillerStop)
		<-b.spillerDone
		if b.sp != nil {
			if err := b.spill(true); err != nil {
				errs = append(errs, err)
			}
		}
		if n := b.dropRest(); n > 0 {
			errs = append(errs, fmt.Errorf("shutdown: %d entries not delivered: %w", n, context.DeadlineExceeded))
		}
		if b.sp != nil {
			// The worker may have left a batch read from the spool and not
			// acknowledged; what of it was in segments deleted since
			// (MaxSpoolBytes) is gone: Rewind counts it (spool_full).
			before := b.sp.Stats().DroppedFullEntries
			if err := b.sp.Rewind(); err != nil {
				errs = append(errs, fmt.Errorf("shutdown: %w", err))
			}
			// Those records may have been answered in part (a
			// PartialError): that part is delivered or counted already.
			if lost := b.sp.Stats().DroppedFullEntries - before; lost > 0 && b.leftSettled > 0 {
				b.spoolFullSettled.Add(min(lost, uint64(b.leftSettled)))
			}
			if err := b.sp.Close(); err != nil {
				errs = append(errs, fmt.Errorf("shutdown: close spool: %w", err))
			}
		}
		for _, e := range [2]exporter.Exporter{b.exp, b.cfg.Exporter2} {
			if e == nil {
				continue
			}
			if err := e.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("shutdown exporter: %w", err))
			}
		}
		b.dropMu.Lock()
		b.drops.closed = true
		if b.drops.timer != nil {
			b.drops.timer.Stop()
		}
		last := b.dropErrorLocked()
		b.dropMu.Unlock()
		if last != nil {
			b.errs.report(last)
		}
		b.refills.Wait() // two allocations at most
		b.errs.close(ctx)
		b.shutdownErr = errors.Join(errs...)
	})
	<-b.done
	return b.shutdownErr
}

// Stats returns a snapshot of the counters.
func (b *Buffer) Stats() Stats {
	b.lock()
	enqueued, appended := b.enqueued, b.appended
	b.mu.Unlock()
	s := Stats{
		Enqueued:     enqueued,
		Exported:     b.exported.Load(),
		ExportErrors: b.exportErrors.Load(),
		Spilled:      b.spilled.Load() + appended,
		Replayed:     b.replayed.Load(),
		DiskErrors:   b.diskErrors.Load(),
		Dropped:      make(map[string]uint64),
	}
	b.dropMu.Lock()
	for k, v := range b.dropped {
		s.Dropped[k] = v
	}
	b.dropMu.Unlock()
	var oldest time.Time
	b.lock()
	s.BufferedBytes = int64(b.bytes)
	s.BufferedEntries = int64(b.entries)
	if b.inflight != nil {
		oldest = b.inflight.created
	} else if len(b.queue) > 0 {
		oldest = b.queue[0].created
	}
	for _, ob := range b.open {
		if ob.n > 0 && (oldest.IsZero() || ob.created.Before(oldest)) {
			oldest = ob.created
		}
	}
	b.mu.Unlock()
	if b.sp != nil {
		st := b.sp.Stats()
		s.SpoolBytes = st.Bytes
		s.SpoolSegments = st.Segments
		s.SpoolEntries = st.Entries
		s.CorruptSegments = st.CorruptSegments
		if n := st.DroppedFullEntries - b.spoolFullSettled.Load(); n > 0 {
			s.Dropped[ReasonSpoolFull] += n
		}
		if st.DroppedCorruptEntries > 0 {
			s.Dropped[ReasonCorrupt] += st.DroppedCorruptEntries
		}
		if st.OldestTimestamp != 0 {
			if t := time.Unix(0, st.OldestTimestamp); oldest.IsZero() || t.Before(oldest) {
				oldest = t
			}
		}
	}
	if !oldest.IsZero() {
		s.Lag = max(time.Since(oldest), 0)
	}
	return s
}

func (b *Buffer) drop(reason string, n int) {
	b.dropCause(reason, n, nil)
}

// Drop counts n entries that the caller dropped before they reached Add
// (the handler counts records whose encoding panicked this way), under
// reason: they appear in Stats.Dropped and are reported to the
// ErrorHandler like the buffer's own drops. cause, when not nil, is kept
// as the reason's latest cause for the next report.
func (b *Buffer) Drop(reason string, n int, cause error) {
	b.dropCause(reason, n, cause)
}

// dropReports is what the ErrorHandler was last told about drops. Drops
// happen on the logging path, sometimes millions a second: each one is
// counted there, and a timer reports them, at most once a second, from a
// goroutine of its own. A report made from the logging goroutine could
// come back into it: an ErrorHandler that logs through this handler would
// log while memory is full, drop, and report again.
type dropReports struct {
	reported map[string]uint64 // counts in the last report
	causes   map[string]error  // latest cause by reason, since the last report
	last     time.Time         // of the last report
	timer    *time.Timer
	armed    bool // the timer will report
	closed   bool // Shutdown made its last report
}

func (b *Buffer) dropCause(reason string, n int, cause error) {
	if n <= 0 {
		return
	}
	b.dropMu.Lock()
	b.dropped[reason] += uint64(n)
	d := &b.drops
	if cause != nil {
		if d.causes == nil {
			d.causes = make(map[string]error)
		}
		d.causes[reason] = cause
	}
	if !d.armed && !d.closed {
		d.armed = true
		wait := max(time.Second-time.Since(d.last), 0)
		if d.timer == nil {
			d.timer = time.AfterFunc(wait, b.reportDrops)
		} else {
			d.timer.Reset(wait)
		}
	}
	b.dropMu.Unlock()
}

// reportDrops sends the ErrorHandler a [*DropError] with what was dropped
// since the last report, if anything was.
func (b *Buffer) reportDrops() {
	b.dropMu.Lock()
	d := &b.drops
	d.armed = false
	if d.closed {
		b.dropMu.Unlock()
		return
	}
	err := b.dropErrorLocked()
	b.dropMu.Unlock()
	if err != nil {
		b.errs.report(err)
	}
}

// dropErrorLocked returns the drops since the last report and makes them
// reported; nil when there are none. Callers hold dropMu.
func (b *Buffer) dropErrorLocked() *DropError {
	d := &b.drops
	var total uint64
	var fresh map[string]uint64
	for r, n := range b.dropped {
		total += n
		if n > d.reported[r] {
			if fresh == nil {
				fresh = make(map[string]uint64)
			}
			fresh[r] = n - d.reported[r]
		}
	}
	if fresh == nil {
		return nil
	}
	if d.reported == nil {
		d.reported = make(map[string]uint64)
	}
	for r := range fresh {
		d.reported[r] = b.dropped[r]
	}
	e := &DropError{Dropped: fresh, Total: total, Causes: d.causes}
	d.causes, d.last = nil, time.Now()
	return e
}

// DropError is what Config.ErrorHandler receives about dropped entries:
// at most one a second while entries are dropped, and a last one from
// Shutdown. The same counts are in Stats.Dropped. Nothing is reported after
// Shutdown.
type DropError struct {
	// Dropped counts the entries dropped since the previous DropError, by
	// reason ([ReasonBufferFull], ...).
	Dropped map[string]uint64
	// Total counts the entries dropped since New, for every reason.
	Total uint64
	// Causes holds, for the reasons that have one, the error behind the
	// latest of these drops (a record's encoding panic, say).
	Causes map[string]error
}

func (e *DropError) Error() string {
	var n uint64
	var reasons, causes []string
	for r, v := range e.Dropped {
		n += v
		reasons = append(reasons, r)
	}
	for r := range e.Causes {
		causes = append(causes, r)
	}
	slices.Sort(reasons)
	slices.Sort(causes)
	var sb strings.Builder
	fmt.Fprintf(&sb, "buffer: dropped %d entries (", n)
	for i, r := range reasons {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s %d", r, e.Dropped[r])
	}
	fmt.Fprintf(&sb, "), %d since start", e.Total)
	for _, r := range causes {
		fmt.Fprintf(&sb, "; %s: %v", r, e.Causes[r])
	}
	return sb.String()
}

// run is the export goroutine: it owns every Export call. Started by New,
// stopped by Shutdown (stop, then abort).
func (b *Buffer) run() {
	defer close(b.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var retry time.Duration
	// rp is the batch read from the spool, kept across retries; its
	// arena's chunks come from the recycler and go back (settledReplay).
	// ahead ("always" mode) is the next one, read while rp is sent
	// (replayStep); logged is Add's count when the worker last looked.
	rp0, rp1 := replay{arena: arena{rec: &b.recycle}}, replay{arena: arena{rec: &b.recycle}}
	rp, ahead, logged := &rp0, (*replay)(nil), uint64(0)
	if b.sp != nil && b.cfg.SpoolMode == SpoolAlways {
		ahead = &rp1
	}
	defer func() { b.leftSettled = rp.settledPart }() // read by Shutdown after done
	pause := func() {
		if retry == 0 {
			retry = b.cfg.RetryInterval
		} else if retry < 30*time.Second {
			retry = min(retry*2, 30*time.Second)
		}
		timer.Reset(retry)
		select {
		case <-timer.C:
		case <-b.exportCtx.Done():
			if !timer.Stop() {
				<-timer.C
			}
		}
	}
	for {
		if b.exportCtx.Err() != nil {
			return
		}
		b.lock()
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
		if b.spoolActive && b.cfg.SpoolMode == SpoolSpill && len(b.queue) > 0 {
			b.mu.Unlock()
			b.signalSpill()
			b.lock()
		}
		quiet := b.enqueued == logged // nothing logged since the last look
		logged = b.enqueued
		fromSpool := b.spoolActive || rp.batch != nil
		var head, second *sealed
		readNow := false
		if fromSpool {
			readNow = rp.batch != nil || stopping || b.flushWant || b.unreadBytes >= b.cfg.BatchSize ||
				b.cfg.SpoolMode == SpoolSpill || !now.Before(b.firstUnread.Add(b.cfg.BatchWait))
			if !readNow {
				if due := b.firstUnread.Add(b.cfg.BatchWait); next.IsZero() || due.Before(next) {
					next = due
				}
			}
		} else if len(b.queue) > 0 {
			head = b.queue[0]
			b.queue[0] = nil
			b.queue = b.queue[1:]
			b.inflight = head
			b.exportStart = now
			if b.cfg.Exporter2 != nil && b.sp == nil && retry == 0 && len(b.queue) > 0 {
				second = b.queue[0]
				b.queue[0] = nil
				b.queue = b.queue[1:]
			}
		}
		b.mu.Unlock()

		switch {
		case readNow:
			st, swap := b.replayStep(rp, ahead, quiet)
			if swap {
				rp, ahead = ahead, rp
			}
			switch st {
			case stepDone:
				retry = 0
				continue
			case stepEmpty:
				// Nothing to read (spill mode: maybe the spool just drained).
			case stepFailed:
				pause()
				continue
			}
		case head != nil:
			// With a second batch (memory only, Exporter2), the two are
			// sent at once; the second's outcome is handled first, so
			// that a head that failed is queued again ahead of it.
			ok := true
			if second != nil {
				b.sending = b.build(second)
				go b.exportSending(b.cfg.Exporter2)
			}
			err := b.exp.Export(b.exportCtx, b.build(head))
			if second != nil {
				b.holdSettle = err != nil
				ok = b.exportedMemory(second, rp, <-b.sent)
				b.holdSettle = false
			}
			done := b.exportedMemory(head, rp, err)
			if done {
				b.settle(b.held)
				b.held = 0
			}
			// When only the second failed, Loki took the head: the
			// second, now the queue's head, is sent again at once.
			switch {
			case !done:
				pause()
			case ok:
				retry = 0
			}
			continue
		}
		if stopping {
			b.lock()
			idle := len(b.queue) == 0 && b.inflight == nil && !b.spoolActive && rp.batch == nil
			b.mu.Unlock()
			if idle {
				return
			}
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		if stopping {
			wait = min(wait, 10*time.Millisecond)
		}
		stopCh := b.stop
		if stopping {
			stopCh = nil // already seen
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
		case <-stopCh:
		case <-b.exportCtx.Done():
			return
		}
	}
}

// exportedMemory handles err, the outcome of exporting s, taken from the
// memory queue. It returns false when the export failed and should be
// tried again after a pause. When s is also on disk and Loki took part of
// it (a *exporter.PartialError), the rest goes to rp, the worker's batch
// read from the spool, with the positions of s's records: it is resent
// from there and the records are acknowledged once it is settled, so that
// the part delivered or rejected is not sent (and counted) again.
func (b *Buffer) exportedMemory(s *sealed, rp *replay, err error) bool {
	// Recycle s's memory only after a clean export: an error might hold on
	// to the batch (PartialError.Remaining, or another Exporter's own).
	reuse := err == nil
	done, delivered, rejected := b.classify(err, s.batch, s.n)
	b.exported.Add(uint64(delivered))
	// Wait for a spill under way: it may be writing s right now.
	b.spillMu.Lock()
	b.lock()
	onDisk := s.onDisk
	if done || onDisk {
		b.inflight = nil // no later spill may write it
	}
	b.mu.Unlock()
	b.spillMu.Unlock()
	if done && s.marked {
		if err := b.sp.Release(s.mark); err != nil {
			b.errs.report(fmt.Errorf("spool release: %w", err))
		}
		b.release(s, reuse)
		b.settle(delivered + rejected)
		return true
	}
	if s.marked {
		// Loki failed: the spool, which has every entry from the first
		// one not released, becomes the queue. After a partial success
		// the worker reads past s's records (the first ones not released:
		// batches are released in the order of their records) and keeps
		// the Remaining batch to send before them.
		rem := remainingOf(err)
		var last spool.Pos
		skipped := rem != nil && delivered+rejected > 0 && b.skipTo(s.mark, &last)
		b.lock()
		b.switchToSpoolLocked()
		b.mu.Unlock()
		if skipped {
			rp.batch, rp.n, rp.last, rp.hasLast, rp.settledPart = rem, rem.Len(), last, true, delivered+rejected
			rp.failed = true // rem is the error's: never recycled
			b.settle(delivered + rejected)
		}
		b.release(s, false)
		return false
	}
	if done {
		if onDisk {
			// The spiller wrote it while it was in flight: it is the
			// spool's oldest record. Acknowledge it.
			rec, err := b.sp.Next()
			if err == nil {
				b.ack(rec.Pos)
			} else {
				b.errs.report(fmt.Errorf("spool: acknowledge a batch delivered from memory: %w", err))
			}
			b.lock()
			b.unreadBytes = 0
			b.mu.Unlock()
		}
		b.release(s, reuse)
		b.settle(delivered + rejected)
		return true
	}
	if onDisk {
		// The spool has it: read it back from there. After a partial
		// success only the Remaining batch is sent again: s's record is
		// the spool's oldest (see the done case); read past it and
		// acknowledge it once the rest is settled.
		if rem := remainingOf(err); rem != nil && delivered+rejected > 0 {
			if rec, err := b.sp.NextView(); err == nil && rec.Entries == s.n {
				rp.batch, rp.n, rp.last, rp.hasLast, rp.settledPart = rem, rem.Len(), rec.Pos, true, delivered+rejected
				rp.failed = true // rem is the error's: never recycled
				b.settle(delivered + rejected)
				b.release(s, false)
				return false
			} else if err == nil {
				b.sp.Rewind() // not s's record after all: read it again
			}
		}
		b.release(s, false)
		return true
	}
	if rem := remainingOf(err); rem != nil {
		b.lock()
		b.entries -= s.n - rem.Len() // delivered or rejected: no longer held
		s.batch = rem
		s.n = rem.Len()
		s.recyclable = false // rem is the exporter's, and the error may live on
		b.mu.Unlock()
		b.settle(delivered + rejected)
	}
	if b.sp != nil && b.exportCtx.Err() == nil {
		// Do not hold a failing batch in memory: the spool keeps it, in
		// order, ahead of everything queued after it.
		if b.spill(false) == nil {
			b.lock()
			on := s.onDisk
			b.mu.Unlock()
			if on {
				b.release(s, false)
				return false
			}
		}
	}
	// Put it back at the head of the queue (memory only: a second batch,
	// which is not b.inflight, too).
	b.lock()
	if b.inflight == s || b.sp == nil {
		b.inflight = nil
		b.queue = append([]*sealed{s}, b.queue...)
	}
	b.mu.Unlock()
	return false
}

// skipTo reads the spool's records up to the one m marks, which must
// come next, and sets last to its position (to acknowledge later). When the
// records are not the expected ones it rewinds the reader and reports
// false.
func (b *Buffer) skipTo(m spool.Mark, last *spool.Pos) bool {
	for {
		rec, err := b.sp.NextView()
		if err != nil {
			b.sp.Rewind()
			return false
		}
		end := rec.Pos.Offset + spool.FrameHeaderSize + int64(len(rec.Payload))
		if rec.Pos.Segment == m.Segment && end == m.End {
			*last = rec.Pos
			return true
		}
		if rec.Pos.Segment > m.Segment || rec.Pos.Segment == m.Segment && end > m.End {
			b.sp.Rewind()
			return false
		}
	}
}

// release forgets the in-flight batch s and frees its memory; with reuse,
// for the next batches (recycler).
func (b *Buffer) release(s *sealed, reuse bool) {
	if reuse {
		b.recycle.put(s) // outside mu: clearing a batch's slices takes a while
	}
	b.lock()
	if b.inflight == s {
		b.inflight = nil
	}
	b.bytes -= s.size
	b.entries -= s.n
	if b.entries <= 0 {
		b.entries = 0
		b.bytes = max(b.bytes, 0)
	}
	s.size, s.n = 0, 0
	b.mu.Unlock()
}

func remainingOf(err error) *exporter.Batch {
	var part *exporter.PartialError
	if errors.As(err, &part) {
		return part.Remaining
	}
	return nil
}

// classify interprets an Export result for a batch of n entries: whether
// the batch is settled (nothing left to send), and how many entries were
// delivered and permanently rejected.
func (b *Buffer) classify(err error, batch *exporter.Batch, n int) (done bool, delivered, rejected int) {
	if err == nil {
		return true, n, 0
	}
	b.exportErrors.Add(1)
	var perm *exporter.PermanentError
	var part *exporter.PartialError
	switch {
	case errors.As(err, &part):
		if part.Rejected != nil {
			rejected = min(part.Rejected.Entries, n)
			b.drop(ReasonRejected, rejected)
		}
		remaining := part.Remaining.Len()
		b.errs.report(err)
		if remaining == 0 {
			return true, max(0, n-rejected), rejected
		}
		return false, max(0, n-remaining-rejected), rejected
	case errors.As(err, &perm):
		rejected = n
		if perm.Entries > 0 {
			rejected = min(perm.Entries, n)
		}
		b.drop(ReasonRejected, rejected)
		b.errs.report(err)
		return true, n - rejected, rejected
	}
	if b.exportCtx.Err() == nil {
		b.errs.report(fmt.Errorf("export %d entries: %w", n, err))
	}
	return false, 0, 0
}

// dropRest counts every entry still held in memory as dropped at shutdown.
func (b *Buffer) dropRest() int {
	b.lock()
	for _, ob := range b.open {
		b.sealLocked(ob)
	}
	q := b.queue
	b.queue = nil
	n := 0
	for _, s := range q {
		if !s.onDisk {
			n += s.n
		}
	}
	if b.inflight != nil && !b.inflight.onDisk {
		n += b.inflight.n
	}
	b.inflight = nil
	b.bytes, b.entries = 0, 0
	b.mu.Unlock()
	if n > 0 {
		b.drop(ReasonShutdown, n)
	}
	b.settle(n + b.held) // held: delivered after a head that failed (see holdSettle)
	if n > 0 {
		b.errs.report(fmt.Errorf("shutdown deadline: %d entries not delivered", n))
	}
	return n
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
	ci  uint32 // cur is chunks[ci]
	// Chunks come from the recycler and go back to it; a line over
	// bigLine is a chunk of its own (not recycled).
	rec    *recycler
	chunks [][]byte
}

const (
	chunkSize = 64 << 10
	bigLine   = chunkSize / 8
)

// maxLine is the longest line a qentry can index (its n); a variable so
// that a test can lower it.
var maxLine uint64 = math.MaxUint32

// put copies p into the arena and returns where: chunk c at off.
func (a *arena) put(p []byte) (c, off uint32) {
	if len(p) > bigLine {
		a.chunks = append(a.chunks, bytes.Clone(p))
		return uint32(len(a.chunks) - 1), 0
	}
	if cap(a.cur)-len(a.cur) < len(p) {
		a.cur = a.rec.chunk()
		a.ci = uint32(len(a.chunks))
		a.chunks = append(a.chunks, a.cur)
	}
	off = uint32(len(a.cur))
	a.cur = append(a.cur, p...)
	return a.ci, off
}

func (a *arena) str(p []byte) string {
	c, off := a.put(p)
	return at(a.chunks, c, off, uint32(len(p)))
}

// at returns the n bytes at off in chunks[c] as a string.
func at(chunks [][]byte, c, off, n uint32) string {
	if n == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(chunks[c])), off)), n)
}

func (a *arena) strs(s string) string {
	return a.str(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// errorReporter passes asynchronous errors to the configured handler, or
// writes at most one line a second to stderr. It does so from a goroutine
// of its own, one error at a time: never on a logging goroutine and never
// while a lock is held. A handler that logs through this same pipeline
// would otherwise wait for the buffer's lock held by its own caller (a
// disk error in "always" mode is found under it), or recurse. Errors that
// find its queue full are counted and reported as one.
type errorReporter struct {
	fn      func(error)
	ch      chan error
	missed  atomic.Int64
	stop    chan struct{}
	done    chan struct{}
	started bool

	last    time.Time // of the last stderr line; the loop's
	skipped int       // errors not written to stderr since; the loop's
}

func newErrorReporter(fn func(error)) *errorReporter {
	return &errorReporter{fn: fn, ch: make(chan error, 64), stop: make(chan struct{}), done: make(chan struct{})}
}

// start starts the goroutine; errors reported before wait in the queue.
func (r *errorReporter) start() {
	r.started = true
	go r.loop() // stopped by close
}

func (r *errorReporter) report(err error) {
	if err == nil {
		return
	}
	select {
	case r.ch <- err:
	default:
		r.missed.Add(1)
	}
}

func (r *errorReporter) loop() {
	defer close(r.done)
	for {
		select {
		case err := <-r.ch:
			r.deliver(err)
		case <-r.stop:
			for {
				select {
				case err := <-r.ch:
					r.deliver(err)
				default:
					return
				}
			}
		}
	}
}

func (r *errorReporter) deliver(err error) {
	if n := r.missed.Swap(0); n > 0 {
		r.deliver1(fmt.Errorf("buffer: %d errors not reported: the error handler fell behind", n))
	}
	r.deliver1(err)
}

func (r *errorReporter) deliver1(err error) {
	if r.fn != nil {
		r.fn(err)
		return
	}
	now := time.Now()
	if now.Sub(r.last) < time.Second {
		r.skipped++
		return
	}
	r.last = now
	if r.skipped > 0 {
		fmt.Fprintf(os.Stderr, "lokislog: %v (and %d more errors)\n", err, r.skipped)
		r.skipped = 0
		return
	}
	fmt.Fprintf(os.Stderr, "lokislog: %v\n", err)
}

// close reports what is queued and stops the goroutine. It waits for that
// until ctx ends, then 100 ms more at most: an ErrorHandler that blocks
// does not hold Shutdown.
func (r *errorReporter) close(ctx context.Context) {
	if !r.started {
		return
	}
	close(r.stop)
	select {
	case <-r.done:
	case <-ctx.Done():
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-r.done:
		case <-t.C:
		}
		t.Stop() // not deferred: a deferred call is a wrapper function of its own
	}
}

// switchToSpoolLocked makes the spool the queue in "always" mode: the
// memory copies of entries on disk are dropped, and the worker reads from
// the first record not released. Callers hold mu.
func (b *Buffer) switchToSpoolLocked() {
	for _, ob := range b.open {
		if ob.marked {
			delete(b.open, ob.tenant)
			b.bytes -= ob.mem
			b.entries -= ob.n
		}
	}
	q := b.queue[:0]
	for _, s := range b.queue {
		if s.marked {
			b.bytes -= s.size
			b.entries -= s.n
			continue
		}
		q = append(q, s)
	}
	clear(b.queue[len(q):])
	b.queue = q
	b.spoolActive = true
	b.unreadBytes = b.cfg.BatchSize // read now
	b.setFastLocked(true)
}
