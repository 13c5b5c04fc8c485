package spool

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// CorruptionError describes damage found in a segment after Open: the
// records from Offset to the end of the segment are skipped and counted in
// Stats.DroppedCorrupt*. It is reported through Options.ErrorHandler.
type CorruptionError struct {
	Segment uint64
	Offset  int64
	Reason  string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("spool: segment %d corrupt at offset %d: %s", e.Segment, e.Offset, e.Reason)
}

// Next returns the oldest record that Next has not returned yet, or
// ErrEmpty when there is none; it may be called while appends continue.
// Records stay on disk until acknowledged with Ack. A record found corrupt
// is skipped with the rest of its segment (see CorruptionError). Any other
// error is an I/O error (wrapped): nothing was consumed and Next may be
// called again.
//
// Next reads the segment in blocks of up to 256 KiB (one read system call
// serves many small records) and returns a copy of the payload; see
// [Spool.NextView] for the same record without the copy.
func (s *Spool) Next() (Record, error) {
	return s.next1(false)
}

// NextView is [Spool.Next] without the copy: the returned Payload aliases
// the spool's read-ahead block, so reading a small record allocates
// nothing. The Payload is valid only until the next call, by any
// goroutine, of Next, NextView, Rewind or Close, and must not be modified;
// a caller that keeps bytes of it copies them before that call (Append and
// Ack do not disturb it). Everything else (order, Pos, acknowledgement,
// errors, corruption handling) is as for Next.
func (s *Spool) NextView() (Record, error) {
	return s.next1(true)
}

// NextViews is [Spool.NextView] for a run of records: it appends to recs
// the oldest records not returned yet, as many as one lock hold and one
// read-ahead block serve, and returns the extended slice. It stops before
// a record that would need another read, after max records, or before a
// record whose payload would take the run's payloads past maxBytes. With
// first set, a first record larger than maxBytes is appended alone, so
// that the call appends at least one record or returns an error, as
// NextView does; without it, such a record ends the run empty (and a nil
// error): a caller filling a batch of maxBytes more bytes leaves it for
// the next batch. Every payload aliases the read-ahead block and is valid
// until the next call of Next, NextView, NextViews, Rewind or Close.
//
// A consumer of many small records takes the lock once per block instead
// of once per record: appends, which take the same lock, wait less.
func (s *Spool) NextViews(recs []Record, max, maxBytes int, first bool) ([]Record, error) {
	s.muLockRead()
	var err error
	for n, size := 0, 0; n < max && (n == 0 || size < maxBytes); n++ {
		limit := int64(maxBytes - size)
		if n == 0 && first {
			limit = math.MaxInt64
		}
		var rec Record
		if rec, err = s.nextLocked(n > 0, limit); err != nil {
			if n > 0 || err == errNotCached { // at n == 0: over limit
				err = nil // the run ends; the next call meets what ended it
			}
			break
		}
		recs = append(recs, rec)
		size += len(rec.Payload)
	}
	errs := s.takeErrs()
	s.muUnlock()
	s.handle(errs)
	return recs, err
}

func (s *Spool) next1(view bool) (Record, error) {
	s.muLockRead()
	rec, err := s.nextLocked(false, math.MaxInt64)
	if err == nil && !view {
		rec.Payload = append(make([]byte, 0, len(rec.Payload)), rec.Payload...)
	}
	errs := s.takeErrs()
	s.muUnlock()
	s.handle(errs)
	return rec, err
}

// nextLocked returns the next record, its payload aliasing the read-ahead
// block. With cached it reads nothing: a record not whole in the block
// already read is errNotCached, and nothing is consumed. A record whose
// payload is longer than limit is errNotCached too (the run ends there),
// and is not consumed either. Callers hold s.mu.
func (s *Spool) nextLocked(cached bool, limit int64) (Record, error) {
	if s.closed {
		return Record{}, ErrClosed
	}
	for {
		if s.rseg == nil {
			if len(s.segs) == 0 {
				return Record{}, ErrEmpty
			}
			s.rseg, s.roff = s.segs[0], s.segs[0].ackOff
		}
		g := s.rseg
		if s.roff >= g.size {
			i := s.index(g.num)
			if i < 0 || i+1 >= len(s.segs) {
				return Record{}, ErrEmpty
			}
			s.rseg, s.roff = s.segs[i+1], s.segs[i+1].ackOff
			continue
		}
		var f io.ReaderAt // nil: the block only (readAhead.frame)
		if !cached {
			rf, err := s.readFile(g.num)
			if err != nil {
				return Record{}, errorf("spool: next: open segment %d: %w", g.num, err)
			}
			f = rf
		}
		h, p, err := s.ra.frame(f, g.num, s.roff, g.size, s.o.MaxRecordSize)
		if err == errNotCached {
			return Record{}, err
		}
		if err == nil && int64(h.length) > limit {
			return Record{}, errNotCached
		}
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				return Record{}, errorf("spool: next: segment %d: %w", g.num, err)
			}
			ce.Segment = g.num
			s.skipRest(g)
			s.cleanupError(ce)
			continue
		}
		rec := Record{Pos: Pos{Segment: g.num, Offset: s.roff}, Payload: p, Entries: int(h.entries), Timestamp: h.ts}
		end := s.roff + frameHeaderSize + int64(h.length)
		s.inflight = append(s.inflight, inflight{pos: rec.Pos, end: end, entries: int64(h.entries), ts: h.ts})
		g.readR++
		g.readE += int64(h.entries)
		s.roff = end
		if len(s.fullDrops) > 0 {
			s.forgetFullDrops(g.num - 1) // no Release covers them now
		}
		return rec, nil
	}
}

// skipRest gives up the unread records of g after a corruption: they are
// counted as dropped, and g is no longer written to. Callers hold s.mu
// (muLockRead's section included).
func (s *Spool) skipRest(g *segment) {
	if s.wseg == g {
		s.foldFast(true) // count the writer's fast appends, then roll it
	}
	lostR, lostE := g.records-g.readR, g.entries-g.readE
	s.st.DroppedCorruptRecords += uint64(lostR)
	s.st.DroppedCorruptEntries += uint64(lostE)
	g.records, g.entries = g.readR, g.readE
	s.pendingR -= lostR
	s.pendingE -= lostE
	s.roff = g.size
	if s.wseg == g {
		s.roll()
	}
}

// index returns the index of segment num in s.segs, or -1.
func (s *Spool) index(num uint64) int {
	for i, g := range s.segs {
		if g.num == num {
			return i
		}
	}
	return -1
}

// readFile returns a read handle on segment num. Callers hold s.mu.
func (s *Spool) readFile(num uint64) (File, error) {
	if s.rf != nil && s.rfNum == num {
		return s.rf, nil
	}
	if s.rf != nil {
		s.rf.Close()
		s.rf = nil
	}
	f, err := s.fs.OpenFile(s.path(segmentName(num)), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	s.rf, s.rfNum = f, num
	return f, nil
}

// readPos is the position of the next unread record. Callers hold s.mu.
func (s *Spool) readPos() Pos {
	switch {
	case s.rseg != nil:
		return Pos{Segment: s.rseg.num, Offset: s.roff}
	case len(s.segs) > 0:
		return Pos{Segment: s.segs[0].num, Offset: s.segs[0].ackOff}
	default:
		return Pos{Segment: s.next, Offset: headerSize}
	}
}

// Ack acknowledges every record up to and including pos: delivered or
// permanently rejected, they are never returned again, in this process or
// after a restart. pos must be the Pos of a record Next returned
// (ErrBadPos otherwise); acknowledging an already acknowledged position is
// a no-op.
//
// A segment whose records are all acknowledged is deleted. Progress inside
// the oldest remaining segment is written to the cursor file (write a
// temporary file, flush, rename, flush the directory; no flushes in
// SyncNever). When that write fails, Ack returns the error; the records
// stay acknowledged in this process but a restart would send them again.
func (s *Spool) Ack(pos Pos) error {
	return s.acknowledge(func() error { return s.ackLocked(pos) })
}

// acknowledge runs an acknowledgement (ackLocked, releaseLocked) under
// s.ackMu and s.mu, then removes the segment files it completed, without
// s.mu.
func (s *Spool) acknowledge(locked func() error) error {
	s.ackMu.Lock()
	defer s.ackMu.Unlock()
	defer s.removeQueued()
	s.muLock()
	err := locked()
	errs := s.takeErrs()
	s.muUnlock()
	s.handle(errs)
	return err
}

func (s *Spool) ackLocked(pos Pos) error {
	if s.closed {
		return ErrClosed
	}
	if rp := s.readPos(); !pos.Less(rp) {
		return errorf("spool: ack %d/%d (next unread %d/%d): %w", pos.Segment, pos.Offset, rp.Segment, rp.Offset, ErrBadPos)
	}
	k := 0
	for k < len(s.inflight) && !pos.Less(s.inflight[k].pos) {
		k++
	}
	if k == 0 {
		return nil // already acknowledged
	}
	for _, f := range s.inflight[:k] {
		i := s.index(f.pos.Segment)
		if i < 0 {
			continue // its segment was dropped (MaxBytes) or skipped
		}
		g := s.segs[i]
		g.ackedR++
		g.ackedE += f.entries
		g.ackOff = f.end
		s.pendingR--
		s.pendingE -= f.entries
		s.st.Acked++
	}
	n := copy(s.inflight, s.inflight[k:])
	s.inflight = s.inflight[:n]

	return s.settleAcksLocked()
}

// setAckTS learns the timestamp of the first unacknowledged record of g,
// the oldest segment, for Stats.OldestTimestamp. Callers hold s.mu.
func (s *Spool) setAckTS(g *segment) {
	if len(s.inflight) > 0 && s.inflight[0].pos.Segment == g.num {
		g.ackTS = s.inflight[0].ts
		return
	}
	g.ackTS = 0
	if g.ackedR >= g.records || g.ackOff+frameHeaderSize > g.size {
		return
	}
	f, err := s.readFile(g.num)
	if err != nil {
		return
	}
	var b [frameHeaderSize]byte
	if _, err := f.ReadAt(b[:], g.ackOff); err == nil {
		g.ackTS = parseFrameHeader(b[:]).ts
	}
}

// writeCursor records (seg, off) in the cursor file. Callers hold s.ackMu;
// it uses no state s.mu guards.
//
// A valid cursor file is overwritten in place: the cursor is 32 bytes at
// offset 0, inside one disk sector, so the write is whole or not at all in
// practice, and a torn one fails its checksum at Open, which then replays
// the segments kept (duplicates, never loss). Replacing the file instead
// (a new file, fsync, rename, directory fsync) costs a new inode per
// acknowledgement: on ext4 the allocator's search past recently deleted
// inodes took 3 % of the CPU of a benchmark acknowledging a few hundred
// batches a second. The file is replaced when there is none, when the one
// there is not a valid cursor, and when an overwrite fails.
func (s *Spool) writeCursor(seg uint64, off int64) error {
	var b [cursorSize]byte
	putCursor(b[:], seg, off)
	if s.cursorInPlace {
		// Overwritten in place; the directory does not change. In
		// SyncInterval mode the file is flushed by the sync goroutine
		// with the segments (flushCursor), not here: an fsync per
		// acknowledgement (milliseconds each on a busy disk) held the
		// sender between two pushes.
		now := s.o.Sync == SyncBatch
		if err := s.putFile(s.path(cursorName), os.O_WRONLY, b[:], now); err == nil {
			if s.o.Sync == SyncInterval {
				s.cursorDirty.Store(true)
			}
			return nil
		}
		s.cursorInPlace = false // its state is unknown: replace it below
	}
	if err := s.replaceCursor(b[:]); err != nil {
		return err
	}
	s.cursorInPlace = true
	return nil
}

// flushCursor flushes the cursor file when an in-place write left it
// unflushed (cursorDirty). A cursor replaced since is flushed already;
// flushing it again is harmless.
func (s *Spool) flushCursor() error {
	if !s.cursorDirty.Swap(false) {
		return nil
	}
	// putFile with nothing to write: open, flush, close. Its error names
	// the operation and the file ("sync .../cursor: ...").
	if err := s.putFile(s.path(cursorName), os.O_WRONLY, nil, true); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// replaceCursor replaces the cursor file atomically with one holding b:
// a temporary file, flushed, renamed over it, and the directory flushed.
func (s *Spool) replaceCursor(b []byte) error {
	name := s.path(cursorName)
	tmp := name + tmpSuffix
	err := s.putFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, b, s.o.Sync != SyncNever)
	if err == nil {
		err = s.fs.Rename(tmp, name)
	}
	if err != nil {
		s.fs.Remove(tmp)
		return errorf("write cursor: %w", err)
	}
	if s.o.Sync != SyncNever {
		if err := s.fs.SyncDir(s.o.Dir); err != nil {
			return errorf("write cursor: sync dir: %w", err)
		}
	}
	return nil
}

// putFile writes b at the start of the file name opened with flag and,
// with sync, flushes it.
func (s *Spool) putFile(name string, flag int, b []byte, sync bool) error {
	f, err := s.fs.OpenFile(name, flag, 0o600)
	if err != nil {
		return err
	}
	n, err := f.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Rewind makes Next start again at the oldest unacknowledged record, for a
// consumer that let go of records it read without acknowledging them.
// Records it held from segments dropped since (MaxBytes) are gone and are
// counted now as dropped.
func (s *Spool) Rewind() error {
	s.muLock()
	defer s.muUnlock()
	if s.closed {
		return ErrClosed
	}
	for _, f := range s.inflight {
		if s.index(f.pos.Segment) < 0 {
			s.st.DroppedFullRecords++
			s.st.DroppedFullEntries += uint64(f.entries)
		}
	}
	s.inflight = s.inflight[:0]
	for _, g := range s.segs {
		g.readR, g.readE = g.ackedR, g.ackedE
	}
	s.rseg, s.roff = nil, 0
	if len(s.segs) > 0 {
		s.rseg, s.roff = s.segs[0], s.segs[0].ackOff
	}
	return nil
}

// settleAcksLocked writes the cursor for the oldest remaining segment and
// deletes the segments whose records are all acknowledged. Callers hold
// s.ackMu and s.mu; s.mu is released while the cursor file is written and
// synced, so that Append never waits for that disk work.
func (s *Spool) settleAcksLocked() error {
	// Segments completed by this Ack are deleted after the cursor is
	// written, so a crash in between leaves them to the cursor (deleted at
	// Open) rather than an old cursor (replayed).
	done := 0
	for done < len(s.segs) {
		g := s.segs[done]
		if g.ackedR < g.records || g.records == 0 && g == s.wseg {
			break
		}
		done++
	}
	var err error
	if done < len(s.segs) && s.segs[done].ackedR > 0 {
		g := s.segs[done]
		s.setAckTS(g)
		if s.cursorSeg != g.num || s.cursorOff != g.ackOff {
			num, off := g.num, g.ackOff
			s.muUnlock()
			err = s.writeCursor(num, off)
			s.muLock()
			if err != nil {
				s.st.CleanupErrors++
				err = errorf("spool: ack: %w", err)
			} else {
				s.cursorSeg, s.cursorOff = num, off
			}
			if s.closed {
				return err // Open deletes the segments before the cursor
			}
			// Acks are serialized (s.ackMu) and appends only add newer
			// segments, so every segment numbered below the cursor's was
			// complete above, unless MaxBytes dropped it since.
			for len(s.segs) > 0 && s.segs[0].num < num {
				s.deleteOldest(true)
			}
			return err
		}
	}
	// Without acknowledged records in the first remaining segment, no
	// cursor is needed: an older one names a deleted segment and Open
	// ignores it.
	for range done {
		s.deleteOldest(true)
	}
	return err
}
