package spool

import (
	"errors"
	"io"
	"math"
	"os"
	"runtime"
	"time"
)

// maxKeptFrame is the largest frame buffer kept between Appends.
const maxKeptFrame = 2 << 20

// Append adds a record at the tail. payload is copied; entries is how many
// log entries it holds and ts the timestamp (Unix ns) of its oldest entry,
// both kept for Stats and returned by Next.
//
// The record is in the OS (page cache) when Append returns nil: copied
// into the segment's mapping (mmap writer, Linux), or with one write
// system call; in SyncBatch mode it is also flushed. When MaxBytes
// would be passed, the oldest segments are deleted first and what they held
// is counted (Stats.DroppedFull*); Append never waits for the consumer.
//
// On a disk error (ENOSPC, EACCES, EROFS, ...) Append returns it wrapped,
// counts it, and leaves the spool as it was: a partial frame is cut off, or
// the segment is abandoned and the next Append starts a new one. Appends
// succeed again once the disk does. With the mmap writer the only disk
// error is at segment creation (preallocation), a failed flush
// (SyncBatch) or a fault on the mapping; the last two abandon the segment.
func (s *Spool) Append(payload []byte, entries int, ts int64) error {
	if int64(len(payload)) > s.o.MaxRecordSize {
		return errorf("spool: append %d bytes (limit %d): %w", len(payload), s.o.MaxRecordSize, ErrTooLarge)
	}
	if entries < 0 || uint64(entries) > math.MaxUint32 {
		return errorf("spool: append: entry count %d out of range", entries)
	}
	s.muLock()
	err := s.appendLocked(payload, entries, ts)
	errs := s.takeErrs()
	s.muUnlock()
	s.handle(errs)
	return err
}

func (s *Spool) appendLocked(payload []byte, entries int, ts int64) error {
	frameLen := int64(frameHeaderSize + len(payload))
	if err := s.makeTail(frameLen); err != nil {
		return err
	}
	if s.wmap != nil {
		return s.appendMapped(payload, entries, ts, frameLen)
	}
	if cap(s.frame) < int(frameLen) {
		s.frame = make([]byte, frameLen)
	}
	b := s.frame[:frameLen]
	copy(b[frameHeaderSize:], payload)
	putFrameHeader(b, uint32(entries), ts)
	if cap(s.frame) > maxKeptFrame {
		defer func() { s.frame = nil }()
	}
	return s.writeFrame(b, entries, ts)
}

// makeTail readies the writer for a frame of frameLen bytes: rolls to a
// new segment when it does not fit, and deletes the oldest segments when
// MaxBytes would be passed. Callers hold s.mu.
func (s *Spool) makeTail(frameLen int64) error {
	if s.closed {
		return ErrClosed
	}
	if s.wseg != nil && (s.wseg.records > 0 && s.wseg.size+frameLen > s.o.SegmentSize ||
		s.wmap != nil && s.wseg.size+frameLen > int64(len(s.wmap))) {
		s.roll()
	}
	if s.wseg == nil && !s.takePrepared(frameLen) {
		if err := s.create(frameLen); err != nil {
			s.st.WriteErrors++
			return errorf("spool: append: %w", err)
		}
	}
	// Make room: delete the oldest segments, never the one written to.
	for s.bytes+frameLen > s.o.MaxBytes && len(s.segs) > 1 {
		s.drop()
	}
	return nil
}

// writeFrame writes a whole frame b with the write path. Callers hold
// s.mu and made room (makeTail).
func (s *Spool) writeFrame(b []byte, entries int, ts int64) error {
	frameLen := int64(len(b))
	g := s.wseg
	n, err := writeYielding(s.w, b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err == nil && s.o.Sync == SyncBatch {
		if err = s.w.Sync(); err != nil {
			s.st.SyncErrors++
			// The flush failed: the page may never reach the disk. Take
			// the record back and leave the file, whose state is unknown.
			s.undo(g, true)
			s.st.WriteErrors++
			return errorf("spool: append: sync segment %d: %w", g.num, err)
		}
	}
	if err != nil {
		s.undo(g, false)
		s.st.WriteErrors++
		return errorf("spool: append to segment %d: %w", g.num, err)
	}
	s.appended(g, frameLen, entries, ts)
	return nil
}

// writeStep is the most bytes one write system call of a large frame
// carries. The P stays with a goroutine in a system call until sysmon takes
// it back (20 µs to 10 ms later): a logging goroutine waiting for that P
// (every one with GOMAXPROCS=1) would wait for a whole 1 MiB batch's
// write. Between pieces the writer yields (runtime.Gosched).
const writeStep = 256 << 10

// writeYielding writes b to w in pieces of writeStep bytes, yielding
// between them. A failure leaves a partial frame, which the caller cuts
// off as it does after a short write.
func writeYielding(w io.Writer, b []byte) (n int, err error) {
	inPieces(b, writeStep, func(p []byte) bool {
		var m int
		m, err = w.Write(p)
		n += m
		return err == nil && m == len(p)
	})
	return n, err
}

// inPieces calls f on b in order, in pieces of at most step bytes, and
// yields the P (runtime.Gosched) between pieces: the spool's long stretches
// of work that Go cannot preempt (a copy into the mapping, a system call)
// are cut into steps a logging goroutine waiting for the same P can run
// between. It stops when f returns false.
func inPieces(b []byte, step int, f func([]byte) bool) {
	for len(b) > 0 {
		p := b[:min(len(b), step)]
		if !f(p) {
			return
		}
		b = b[len(p):]
		if len(b) > 0 {
			runtime.Gosched()
		}
	}
}

// appendMapped writes a frame through the writer's mapping: a copy into
// the page cache, no system call. frame is the whole frame when the caller
// built it (AppendFrameMark), else nil and the frame is built from payload.
// Callers hold s.mu and made room.
func (s *Spool) appendMapped(payload []byte, entries int, ts int64, frameLen int64) error {
	return s.appendMappedFrame(nil, payload, entries, ts, frameLen)
}

func (s *Spool) appendMappedFrame(frame, payload []byte, entries int, ts int64, frameLen int64) error {
	g := s.wseg
	end := g.size + frameLen
	b := s.wmap[g.size:end:end]
	var err error
	if frame != nil {
		err = writeMapped(b, func(b []byte) { copyYielding(b, frame) })
	} else {
		err = putFrameMapped(b, payload, uint32(entries), ts)
	}
	if err != nil {
		s.undo(g, true)
		s.st.WriteErrors++
		return errorf("spool: append to segment %d: %w", g.num, err)
	}
	if s.o.Sync == SyncBatch {
		// fsync of the file flushes the pages written through the mapping.
		if err := s.w.Sync(); err != nil {
			s.st.SyncErrors++
			// Take the record back (the tail stays zeros) and leave the
			// file, as the write path does.
			writeMapped(b, func(b []byte) { clear(b) })
			s.undo(g, true)
			s.st.WriteErrors++
			return errorf("spool: append: sync segment %d: %w", g.num, err)
		}
	}
	s.appended(g, frameLen, entries, ts)
	if s.pr != nil && g.size >= s.pr.nextWin {
		s.moveWindow()
	}
	return nil
}

// appended counts a record written to g. Callers hold s.mu.
func (s *Spool) appended(g *segment, frameLen int64, entries int, ts int64) {
	if g.records == 0 {
		g.firstTS = ts
	}
	g.size += frameLen
	g.records++
	g.entries += int64(entries)
	s.bytes += frameLen
	s.pendingR++
	s.pendingE += int64(entries)
	s.st.Appended++
	s.dirty = true
}

// undo cuts a failed write off the writer's segment. When that fails too,
// or abandon is set, the writer is closed so the next Append starts a new
// segment instead of writing after garbage. Callers hold s.mu.
func (s *Spool) undo(g *segment, abandon bool) {
	if s.wmap != nil {
		abandon = true // a mapping that failed is not written to again
		if err := s.unmapWriter(); err != nil {
			s.cleanupError(errorf("spool: cut segment %d to %d bytes: %w", g.num, g.size, err))
		}
	} else if err := s.w.Truncate(g.size); err != nil {
		abandon = true
	}
	if abandon {
		s.w.Close()
		s.w, s.wseg = nil, nil
		if g.records == 0 {
			s.removeEmpty(g)
		}
	}
}

// removeEmpty deletes a segment without records. Callers hold s.mu.
func (s *Spool) removeEmpty(g *segment) {
	for i, h := range s.segs {
		if h == g {
			s.segs = append(s.segs[:i], s.segs[i+1:]...)
			s.bytes -= g.size
			break
		}
	}
	if s.rseg == g {
		s.rseg, s.roff = nil, 0
	}
	if err := s.fs.Remove(s.path(segmentName(g.num))); err != nil {
		s.cleanupError(errorf("spool: remove empty segment %d: %w", g.num, err)) // Open removes it later
	}
}

// roll stops writing to the current segment. Its file is flushed by the
// sync goroutine (SyncInterval) or closed now. Callers hold s.mu.
//
// A mapped segment is unmapped and cut to its valid size first, and that
// cut is flushed like the data: now in SyncBatch, by the sync goroutine in
// SyncInterval.
func (s *Spool) roll() {
	mapped := s.wmap != nil
	if err := s.unmapWriter(); err != nil {
		// At the next Open the segment is older than the newest one with
		// a zero tail: set aside as corrupt, its records delivered.
		s.cleanupError(errorf("spool: cut segment %d to %d bytes: %w", s.wseg.num, s.wseg.size, err))
	}
	switch {
	case s.o.Sync == SyncInterval && (s.dirty || mapped):
		s.toSync = append(s.toSync, pendingSync{num: s.wseg.num, f: s.w})
	case s.o.Sync == SyncBatch && mapped:
		if err := s.w.Sync(); err != nil {
			s.st.SyncErrors++
			s.cleanupError(errorf("spool: sync segment %d: %w", s.wseg.num, err))
		}
		s.w.Close()
	default:
		s.w.Close()
	}
	s.w, s.wseg, s.dirty = nil, nil, false
}

// create starts a new segment for a first frame of frameLen bytes and
// makes it the writer's: mapped (see useMmap) with room for SegmentSize
// bytes or the frame, else written with write(2). Callers hold s.mu.
func (s *Spool) create(frameLen int64) error {
	num := s.next
	s.next++ // never reuse a number, even after a failure
	if s.pr != nil {
		// Never a segment prepared before this one after it.
		s.pr.minNum = num + 1
		if p := s.pr.ready; p != nil {
			s.pr.ready = nil
			s.dropPrepared(p)
		}
	}
	name := s.path(segmentName(num))
	if s.useMmap() {
		ok, err := s.createMapped(num, name, max(s.o.SegmentSize, headerSize+frameLen))
		if ok || err != nil {
			return err
		}
	}
	f, err := s.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return errorf("create segment %d: %w", num, err)
	}
	var hdr [headerSize]byte
	putHeader(hdr[:], num, time.Now().UnixNano(), 0)
	n, err := f.Write(hdr[:])
	if err == nil && n != headerSize {
		err = io.ErrShortWrite
	}
	if err == nil && s.o.Sync == SyncBatch {
		if err = f.Sync(); err == nil {
			err = s.fs.SyncDir(s.o.Dir)
		}
	}
	if err != nil {
		f.Close()
		if rerr := s.fs.Remove(name); rerr != nil {
			// A torn header: Open removes it or sets it aside.
			s.cleanupError(errorf("spool: remove failed segment %d: %w", num, rerr))
		}
		return errorf("create segment %d: %w", num, err)
	}
	g := &segment{num: num, size: headerSize, ackOff: headerSize}
	s.segs = append(s.segs, g)
	s.bytes += headerSize
	s.w, s.wseg = f, g
	s.dirDirty = true
	return nil
}

// drop deletes the oldest segment to make room, counting its unread
// records as dropped. Records of it that Next already returned stay the
// consumer's: acknowledging them is a no-op. Callers hold s.mu.
func (s *Spool) drop() {
	g := s.segs[0]
	s.st.DroppedFullRecords += uint64(g.records - g.readR)
	s.st.DroppedFullEntries += uint64(g.entries - g.readE)
	if g.records > g.readR && len(s.fullDrops) < maxFullDrops {
		s.fullDrops = append(s.fullDrops, fullDrop{num: g.num, readR: g.readR, readE: g.readE, records: g.records, entries: g.entries})
	}
	// The preparer, when it runs, removes the file: unlinking a segment
	// whose pages are in the page cache takes milliseconds (about 4 for
	// 8 MiB here), which the append, and in "always" mode every logging
	// call behind the buffer's lock, would wait for.
	s.deleteOldest(s.pr != nil)
	s.kickPreparer()
}

// deleteOldest removes segs[0] from the state and the disk. With later,
// the file is only queued (s.toRemove), to be removed once s.mu is
// released (removeQueued): unlinking a large file can take milliseconds,
// which appends should not wait for. Callers hold s.mu.
func (s *Spool) deleteOldest(later bool) {
	g := s.segs[0]
	s.segs[0] = nil
	s.segs = s.segs[1:]
	s.bytes -= g.size
	s.pendingR -= g.records - g.ackedR
	s.pendingE -= g.entries - g.ackedE
	if s.rseg == g || s.rseg == nil {
		s.rseg, s.roff = nil, 0
		if len(s.segs) > 0 {
			s.rseg, s.roff = s.segs[0], s.segs[0].ackOff
		}
	}
	if s.rf != nil && s.rfNum == g.num {
		s.rf.Close()
		s.rf = nil
	}
	if s.ra.num == g.num {
		s.ra.drop()
	}
	if s.wseg == g {
		s.dropMapping() // the file is removed below
		s.w.Close()
		s.w, s.wseg, s.dirty = nil, nil, false
	}
	for i, p := range s.toSync {
		if p.num == g.num {
			p.f.Close()
			s.toSync = append(s.toSync[:i], s.toSync[i+1:]...)
			break
		}
	}
	if later {
		s.toRemove = append(s.toRemove, g.num)
	} else {
		s.removeSegment(g.num)
	}
	if s.o.Sync != SyncNever {
		s.dirDirty = true
	}
}

// removeSegment deletes a segment's file. A file that cannot be removed
// comes back at the next Open: duplicates, not loss (an acknowledged
// segment is below the cursor and deleted by Open).
func (s *Spool) removeSegment(num uint64) {
	if err := s.removeSegmentFile(num); err != nil {
		s.cleanupError(err)
	}
}

// removeSegmentFile deletes a segment's file; one already gone is no
// error. It uses no state s.mu guards.
func (s *Spool) removeSegmentFile(num uint64) error {
	if err := s.fs.Remove(s.path(segmentName(num))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return errorf("spool: remove segment %d: %w", num, err)
	}
	return nil
}

// removeQueued deletes the files deleteOldest queued: acknowledge's after
// it (holding s.ackMu), drop's in the preparer. Callers do not hold s.mu.
func (s *Spool) removeQueued() {
	s.muLock()
	nums := s.toRemove
	s.toRemove = nil
	s.muUnlock()
	if len(nums) == 0 {
		return
	}
	var errs []error
	for _, num := range nums {
		if err := s.removeSegmentFile(num); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		s.muLock()
		s.st.CleanupErrors += uint64(len(errs))
		s.muUnlock()
		s.handle(errs)
	}
}
