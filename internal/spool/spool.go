package spool

import (
	"errors"
	"io"
	"math"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by the spool.
var (
	// ErrLocked is returned (wrapped, with the directory's name) by [Open]
	// when another Spool, in this process or another, has the directory.
	ErrLocked = errors.New("spool: directory is locked by another spool")
	// ErrClosed is returned by every method called after [Spool.Close].
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge is returned (wrapped) by [Spool.Append] for a payload over
	// Options.MaxRecordSize. Nothing is written.
	ErrTooLarge = errors.New("spool: record too large")
	// ErrEmpty is returned by [Spool.Next] when every record on disk has
	// already been returned.
	ErrEmpty = errors.New("spool: no unread record")
	// ErrBadPos is returned (wrapped) by [Spool.Ack] for a position that
	// [Spool.Next] has not returned yet.
	ErrBadPos = errors.New("spool: position not returned by Next")
)

// SyncMode says when appended data is flushed to stable storage (fsync).
type SyncMode string

// Sync modes. Every mode writes each record to the OS (page cache) before
// Append returns, so a process crash loses nothing Append returned nil for;
// they differ in what a power loss or kernel crash can lose.
const (
	// SyncInterval flushes at most every Options.SyncInterval from a
	// goroutine owned by the Spool, never on the appending goroutine. A
	// power loss loses at most the last interval.
	SyncInterval SyncMode = "interval"
	// SyncBatch flushes after every Append, before it returns. A power
	// loss loses nothing Append returned nil for.
	SyncBatch SyncMode = "batch"
	// SyncNever leaves flushing to the OS (on Linux typically within
	// 30 s). A power loss loses what the OS had not written yet.
	SyncNever SyncMode = "never"
)

// Defaults of [Options].
const (
	DefaultMaxBytes      int64 = 256 << 20
	DefaultSegmentSize   int64 = 8 << 20
	DefaultMaxRecordSize int64 = 16 << 20
	DefaultSyncInterval        = time.Second

	minSegmentSize = 64
)

// Options configures [Open]. The zero value of every field but Dir works.
type Options struct {
	// Dir is the spool directory. Required. Open creates it (mode 0700)
	// when it does not exist; files in it are created with mode 0600.
	Dir string

	// MaxBytes bounds the valid bytes of all segment files (Stats.Bytes).
	// An Append that would pass it deletes the oldest segments first, even
	// unacknowledged ones, and counts what they held in
	// Stats.DroppedFull*. The mmap writer preallocates the segment being
	// written to SegmentSize, and the next one ahead of time, so the
	// directory uses up to MaxBytes + 2 × SegmentSize. Default 256 MiB.
	MaxBytes int64

	// SegmentSize is the size at which a segment is closed and the next
	// one started: a record goes into a new segment when it would not fit.
	// A record larger than SegmentSize gets a segment of its own. Must not
	// exceed MaxBytes. Default min(8 MiB, MaxBytes/4), at least 64 bytes.
	SegmentSize int64

	// MaxRecordSize bounds a payload: Append refuses larger ones with
	// ErrTooLarge, and the reader treats a larger length on disk as
	// corruption before allocating anything. Must not exceed
	// MaxBytes - 52 (a segment header and a frame header) nor 2 GiB - 1.
	// Default min(16 MiB, MaxBytes - 52). Records written under a larger limit by
	// an earlier process are treated as corrupt.
	MaxRecordSize int64

	// Sync says when data is flushed to stable storage. Default
	// SyncInterval. An unknown mode is an error.
	Sync SyncMode

	// SyncInterval is the flush period of SyncInterval. Default 1 s.
	SyncInterval time.Duration

	// FS is the filesystem. Default OSFS{}. Tests inject faults here.
	FS FS

	// NoMmap turns off the mmap writer. By default, on Linux with the
	// OS filesystem (FS nil or OSFS), each new segment is preallocated
	// (fallocate) and appended to by copying into a shared mapping, with
	// no system call per record; elsewhere, or with NoMmap, each record is
	// one write(2). Both write the same files with the same guarantees;
	// see the package documentation, "Writing".
	NoMmap bool
	// PrepareFirst prepares the first segment as the spool opens (with the
	// mmap writer), so that the first Append does not create, preallocate
	// and fault in a file itself: Open waits for it, at most
	// firstPrepareWait. By default the first segment is made by the first
	// Append, and a spool that is only read never creates one. Buffer's
	// "always" mode, which writes from the first record on, sets it.
	PrepareFirst bool

	// ErrorHandler receives errors that no call can return: failed
	// background flushes (SyncInterval) and failed clean-up steps. It is
	// called without locks held, possibly from the Spool's goroutine.
	// Default: nil, the errors are only counted in Stats.
	ErrorHandler func(error)
}

// firstPrepareWait bounds how long Open waits for the first segment with
// PrepareFirst.
const firstPrepareWait = time.Second

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("spool: Dir is empty")
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxBytes < 0 {
		return o, errorf("spool: MaxBytes %d is negative", o.MaxBytes)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = max(min(DefaultSegmentSize, o.MaxBytes/4), minSegmentSize)
	}
	if o.SegmentSize < minSegmentSize {
		return o, errorf("spool: SegmentSize %d is under %d bytes", o.SegmentSize, minSegmentSize)
	}
	if o.SegmentSize > o.MaxBytes {
		return o, errorf("spool: SegmentSize %d exceeds MaxBytes %d", o.SegmentSize, o.MaxBytes)
	}
	limit := min(o.MaxBytes-headerSize-frameHeaderSize, math.MaxInt32)
	if o.MaxRecordSize == 0 {
		o.MaxRecordSize = min(DefaultMaxRecordSize, limit)
	}
	if o.MaxRecordSize <= 0 || o.MaxRecordSize > limit {
		return o, errorf("spool: MaxRecordSize %d not in [1, %d]", o.MaxRecordSize, limit)
	}
	switch o.Sync {
	case "":
		o.Sync = SyncInterval
	case SyncInterval, SyncBatch, SyncNever:
	default:
		return o, errorf("spool: unknown Sync mode %q (want interval, batch or never)", o.Sync)
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = DefaultSyncInterval
	}
	if o.SyncInterval < 0 {
		return o, errorf("spool: SyncInterval %v is negative", o.SyncInterval)
	}
	if o.FS == nil {
		o.FS = OSFS{}
	}
	return o, nil
}

// Pos is the position of a record: its segment and the offset of its frame.
// Positions order records: a later record has a greater Pos.
type Pos struct {
	Segment uint64
	Offset  int64
}

// Less reports whether p is before q.
func (p Pos) Less(q Pos) bool {
	return p.Segment < q.Segment || p.Segment == q.Segment && p.Offset < q.Offset
}

// Record is one record returned by [Spool.Next].
type Record struct {
	Pos Pos
	// Payload is the record's bytes. From Next it belongs to the caller;
	// from NextView it aliases the spool's read-ahead block (see
	// [Spool.NextView]).
	Payload []byte
	// Entries is the entry count given to Append.
	Entries int
	// Timestamp is the timestamp given to Append.
	Timestamp int64
}

// Stats is a snapshot of the spool's state and counters.
type Stats struct {
	// Bytes is the valid bytes of all segment files (headers and whole
	// frames; not the preallocated rest of the segment being written) and
	// Segments their number.
	Bytes    int64
	Segments int
	// Records and Entries count the unacknowledged records on disk,
	// including the ones Next returned that are not acknowledged yet.
	Records int64
	Entries int64
	// Unread counts the records Next has not returned yet.
	Unread int64
	// OldestTimestamp is the timestamp given to Append for the oldest
	// unacknowledged record (the head of the queue); 0 when there is none
	// or it is unknown.
	OldestTimestamp int64

	// Appended counts records appended since Open; Acked the records
	// acknowledged since Open.
	Appended uint64
	Acked    uint64
	// RecoveredRecords and RecoveredEntries count the unacknowledged
	// records found by Open.
	RecoveredRecords int64
	RecoveredEntries int64

	// DroppedFullRecords and DroppedFullEntries count records deleted
	// unread because MaxBytes was reached (reason "spool_full"), less
	// those a later Release covered (delivered from the writer's copy).
	DroppedFullRecords uint64
	DroppedFullEntries uint64
	// DroppedCorruptRecords and DroppedCorruptEntries count records
	// skipped because corruption was found after Open, when their counts
	// were known (reason "corrupt"). Corruption found by Open is counted in
	// bytes: the entry counts live in the damaged bytes.
	DroppedCorruptRecords uint64
	DroppedCorruptEntries uint64
	// CorruptSegments counts segments Open set aside as <name>.corrupt,
	// and CorruptBytes the bytes of them that held no valid record.
	CorruptSegments int
	CorruptBytes    int64
	// TruncatedBytes counts bytes of a torn tail (newest segment) that
	// Open removed.
	TruncatedBytes int64
	// CursorResets counts cursor files that were unreadable or pointed
	// inside a record, so their segment is replayed from its start
	// (duplicates rather than loss).
	CursorResets int

	// WriteErrors counts failed Appends; SyncErrors failed flushes;
	// CleanupErrors failed removals and cursor writes.
	WriteErrors   uint64
	SyncErrors    uint64
	CleanupErrors uint64
}

// segment is the in-memory state of one segment file.
type segment struct {
	num     uint64
	size    int64 // bytes of valid data: header and whole frames
	firstTS int64 // timestamp of the first record
	records int64
	entries int64

	// Acknowledged records; only the oldest segment has acks.
	ackedR, ackedE int64
	ackOff         int64 // offset after the last acknowledged record
	ackTS          int64 // timestamp of the record at ackOff, when known

	// Records returned by Next (acknowledged ones included).
	readR, readE int64
}

// fullDrop is what drop counted of a deleted segment: its records and
// entries past readR and readE (the ones Next had returned).
type fullDrop struct {
	num              uint64
	readR, readE     int64
	records, entries int64
}

// maxFullDrops bounds Spool.fullDrops. A writer's copies are bounded by its
// memory and released in order, so only the oldest entries matter.
const maxFullDrops = 256

// inflight is a record returned by Next and not yet acknowledged.
type inflight struct {
	pos     Pos
	end     int64
	entries int64
	ts      int64
}

type pendingSync struct {
	num uint64
	f   File
}

// Spool is a durable, bounded FIFO of records in a directory. All methods
// are safe for concurrent use; Next, Ack and Rewind form one consumer's
// cursor (several goroutines may call them but they share it).
type Spool struct {
	o    Options
	fs   FS
	lock io.Closer // the directory lock, released by Close

	// stop and done belong to the sync goroutine (SyncInterval only):
	// Open starts it, Close closes stop and waits for done.
	stop chan struct{}
	done chan struct{}

	// ackMu serializes Ack and Release, which write the cursor without
	// holding mu. It is taken before mu.
	ackMu sync.Mutex
	// cursorInPlace: the cursor file is known to be a whole, valid cursor
	// (read at Open or written since), so the next write may overwrite it
	// in place. Guarded by ackMu (and Open, before any Ack).
	cursorInPlace bool
	// cursorDirty: the cursor was overwritten in place and not flushed
	// yet (SyncInterval: the sync goroutine flushes it, Close too).
	cursorDirty atomic.Bool

	mu     sync.Mutex // taken with muLock and muUnlock (fast.go)
	ft     fastTail
	closed bool
	segs   []*segment // oldest first
	bytes  int64      // sum of segs[i].size
	next   uint64     // number of the next segment to create

	// Writer: w appends to wseg, the newest segment. nil when there is no
	// writable segment; the next Append creates one.
	w          File
	wseg       *segment
	wmap       []byte // mapping of wseg's file (mmap writer); nil: write path
	noPrealloc bool   // the filesystem cannot preallocate: write path only
	frame      []byte // reused frame buffer
	dirty      bool   // w has data not flushed (SyncInterval)
	// flushedSeg and flushedOff: the writer's segment and offset at the
	// last flush, flushedLen what the interval before it wrote, from
	// which a flush guesses what the next interval will write (flush).
	flushedSeg uint64
	flushedOff int64
	flushedLen int64
	dirDirty   bool          // entries of the directory not flushed (SyncInterval)
	toSync     []pendingSync // rolled writers the sync goroutine flushes and closes

	// Reader: the next unread record is at roff in rseg (nil: the start of
	// segs[0], if any). rf reads rfNum.
	rseg     *segment
	roff     int64
	rf       File
	rfNum    uint64
	inflight []inflight // returned by Next, not acknowledged, oldest first
	// fullDrops: segments drop deleted with records Next had not returned,
	// oldest first. A writer keeping its own copy of records (Release) may
	// still deliver those: Release then takes them out of DroppedFull*.
	// Entries older than a record Next returns, or covered by a Release,
	// are forgotten; at most maxFullDrops are kept.
	fullDrops []fullDrop
	ra        readAhead // read-ahead block; NextView payloads alias it

	pendingR, pendingE int64 // unacknowledged records on disk
	cursorSeg          uint64
	cursorOff          int64 // last cursor written (0: none)

	pr *preparer // prepares mapped segments ahead; nil: none

	toRemove []uint64 // segments deleted by an acknowledgement, files not yet removed

	st   Stats   // counters; the state fields are filled by Stats
	errs []error // for the ErrorHandler, delivered after unlocking
}

// Open opens (creating if needed) the spool in opts.Dir, locks the
// directory, and recovers what earlier processes left: see the package
// documentation.
func Open(opts Options) (*Spool, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := o.FS.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, errorf("spool: create %s: %w", o.Dir, err)
	}
	lk, err := o.FS.Lock(filepath.Join(o.Dir, lockName))
	if err != nil {
		if errors.Is(err, ErrLocked) {
			return nil, errorf("spool: open %s: %w", o.Dir, ErrLocked)
		}
		return nil, errorf("spool: lock %s: %w", o.Dir, err)
	}
	s := &Spool{o: o, fs: o.FS, lock: lk, next: 1, ra: newReadAhead(o.SegmentSize)}
	if runtime.GOMAXPROCS(0) > 1 {
		s.ft.spins = 64
	}
	if err := s.recover(); err != nil {
		s.closeFiles()
		lk.Close()
		return nil, errorf("spool: recover %s: %w", o.Dir, err)
	}
	if o.Sync == SyncInterval {
		s.stop = make(chan struct{})
		s.done = make(chan struct{})
		go s.syncLoop()
	}
	if s.usePreparer() {
		s.startPreparer()
		if o.PrepareFirst {
			// Let Open take the time (a file created, preallocated, mapped
			// and its first windows faulted in: milliseconds) rather than
			// the first Append, which its callers (an "always" mode Add,
			// with the other logging goroutines waiting on its lock) feel.
			// A disk slower than firstPrepareWait leaves it to Append.
			s.kickPreparer()
			t := time.NewTimer(firstPrepareWait)
			select {
			case <-s.pr.first:
			case <-t.C:
			}
			t.Stop()
		}
	}
	return s, nil
}

func (s *Spool) path(name string) string { return filepath.Join(s.o.Dir, name) }

// cleanupError counts err and queues it for the ErrorHandler. Callers hold
// s.mu and pass takeErrs' result to handle after unlocking.
func (s *Spool) cleanupError(err error) {
	s.st.CleanupErrors++
	if s.o.ErrorHandler != nil && len(s.errs) < 16 {
		s.errs = append(s.errs, err)
	}
}

// takeErrs returns the queued errors. Callers hold s.mu.
func (s *Spool) takeErrs() []error {
	if len(s.errs) == 0 {
		return nil
	}
	errs := s.errs
	s.errs = nil
	return errs
}

// handle hands errs to the ErrorHandler. Callers do not hold s.mu.
func (s *Spool) handle(errs []error) {
	if s.o.ErrorHandler == nil {
		return
	}
	for _, err := range errs {
		if err != nil {
			s.o.ErrorHandler(err)
		}
	}
}

// Len returns the number of unacknowledged records.
func (s *Spool) Len() int {
	s.muLockRead()
	n := int(s.pendingR)
	s.muUnlock()
	return n
}

// Empty reports whether every record was acknowledged (or dropped).
func (s *Spool) Empty() bool { return s.Len() == 0 }

// Stats returns a snapshot of the spool's state and counters.
func (s *Spool) Stats() Stats {
	s.muLockRead()
	st := s.st
	st.Bytes = s.bytes
	st.Segments = len(s.segs)
	st.Records = s.pendingR
	st.Entries = s.pendingE
	for _, g := range s.segs {
		st.Unread += g.records - g.readR
	}
	st.OldestTimestamp = s.oldestTS()
	s.muUnlock()
	return st
}

// oldestTS returns the timestamp of the first unacknowledged record.
func (s *Spool) oldestTS() int64 {
	if len(s.segs) == 0 || s.pendingR == 0 {
		return 0
	}
	for _, f := range s.inflight {
		if f.pos.Segment >= s.segs[0].num {
			return f.ts
		}
	}
	for _, g := range s.segs {
		if g.ackedR < g.records {
			if g.ackOff == headerSize {
				return g.firstTS
			}
			return g.ackTS
		}
	}
	return 0
}

// Close flushes (except in SyncNever), closes the files and releases the
// directory lock. Unacknowledged records stay on disk for the next Open.
// Close is idempotent; other methods return ErrClosed after it.
func (s *Spool) Close() error {
	s.ackMu.Lock() // a cursor being written is finished first
	defer s.ackMu.Unlock()
	s.muLock()
	if s.closed {
		s.muUnlock()
		return nil
	}
	s.closed = true
	s.muUnlock()
	if s.stop != nil {
		close(s.stop)
		<-s.done // wait outside the lock: the loop takes it
	}
	s.stopPreparer()
	s.muLock()
	var errs []error
	if s.wmap != nil {
		if err := s.unmapWriter(); err != nil {
			errs = append(errs, errorf("spool: cut segment %d to %d bytes: %w", s.wseg.num, s.wseg.size, err))
		}
	}
	if s.w != nil && s.o.Sync != SyncNever {
		if err := s.w.Sync(); err != nil {
			s.st.SyncErrors++
			errs = append(errs, errorf("spool: sync segment %d: %w", s.wseg.num, err))
		}
	}
	for _, p := range s.toSync {
		if s.o.Sync != SyncNever {
			if err := p.f.Sync(); err != nil {
				s.st.SyncErrors++
				errs = append(errs, errorf("spool: sync segment %d: %w", p.num, err))
			}
		}
	}
	if s.dirDirty {
		if err := s.fs.SyncDir(s.o.Dir); err != nil {
			errs = append(errs, errorf("spool: sync dir: %w", err))
		}
	}
	if err := s.flushCursor(); err != nil {
		s.st.SyncErrors++
		errs = append(errs, err)
	}
	errs = append(errs, s.closeFiles())
	s.muUnlock()
	errs = append(errs, s.lock.Close())
	return errors.Join(errs...)
}

// closeFiles closes every open file. Callers hold s.mu (or own s alone).
func (s *Spool) closeFiles() error {
	var errs []error
	s.dropMapping() // Close cut the file; after a failed Open or a simulated crash it stays as is
	if s.w != nil {
		errs = append(errs, s.w.Close())
		s.w, s.wseg = nil, nil
	}
	for _, p := range s.toSync {
		errs = append(errs, p.f.Close())
	}
	s.toSync = nil
	if s.rf != nil {
		errs = append(errs, s.rf.Close())
		s.rf = nil
	}
	s.ra = readAhead{size: s.ra.size} // frees the block
	return errors.Join(errs...)
}

// syncLoop flushes the writer every SyncInterval when it has new data.
func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.o.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.flush()
		}
	}
}

// flush syncs the dirty writer, the rolled writers and the directory,
// outside the lock so that Append does not wait for the disk.
func (s *Spool) flush() {
	s.muLock()
	var w File
	var wnum uint64
	if s.dirty && s.w != nil {
		w, wnum = s.w, s.wseg.num
	}
	s.dirty = false
	rolled := s.toSync
	s.toSync = nil
	dir := s.dirDirty
	s.dirDirty = false
	s.muUnlock()

	var errs []error
	if err := s.flushCursor(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range rolled {
		if err := p.f.Sync(); err != nil && !errors.Is(err, errFileClosed) {
			errs = append(errs, errorf("spool: sync segment %d: %w", p.num, err))
		}
		p.f.Close()
	}
	if w != nil {
		// Append may close w concurrently (roll, drop); os.File makes that
		// safe and Sync then reports a closed file, which is not a failure:
		// a rolled writer is flushed through toSync.
		if err := w.Sync(); err != nil && !errors.Is(err, errFileClosed) {
			errs = append(errs, errorf("spool: sync segment %d: %w", wnum, err))
		} else if err == nil {
			// Writing the pages back made them read-only: the writer's
			// next copy into each would take a page fault of its own
			// (on ext4, page_mkwrite under a journal handle, now and
			// then milliseconds behind a commit). The preparer faults
			// in again the pages the writer is likely to fill before
			// the next flush, as many as it wrote since the last one,
			// within the windows faulted in ahead (see moveWindow): a
			// page faulted in is dirty, and the next flush writes it.
			s.muLockRead() // changes nothing of the writer's
			if g := s.wseg; s.pr != nil && s.wmap != nil && g != nil && g.num == wnum && !s.closed {
				d := g.size - s.flushedOff
				if s.flushedSeg != g.num { // a roll: at least what the last interval wrote
					d = max(g.size-headerSize, s.flushedLen)
				}
				s.flushedSeg, s.flushedOff, s.flushedLen = g.num, g.size, d
				lo := g.size &^ (touchStep - 1)
				hi := min(g.size+d+touchStep, s.pr.nextWin+(lead-1)*window, int64(len(s.wmap)))
				if lo < hi {
					s.pr.advise = append(s.pr.advise, advice{m: s.wmap[lo:hi], populate: true})
					s.kickPreparer()
				}
			}
			s.muUnlock()
		}
	}
	if dir {
		if err := s.fs.SyncDir(s.o.Dir); err != nil {
			errs = append(errs, errorf("spool: sync dir: %w", err))
		}
	}
	if len(errs) > 0 {
		s.muLock()
		s.st.SyncErrors += uint64(len(errs))
		s.muUnlock()
		s.handle(errs)
	}
}
