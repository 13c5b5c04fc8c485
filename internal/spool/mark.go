package spool

import (
	"math"
)

// Mark identifies a record written by [Spool.AppendMark]: the end of its
// frame and the record and entry counts of its segment up to it. A writer
// that keeps its own copy of the records (in memory) uses it to acknowledge
// them with [Spool.Release] without reading them back.
type Mark struct {
	Segment uint64
	End     int64
	Records int64
	Entries int64
	// SpoolBytes is the size of the whole spool right after the append.
	SpoolBytes int64
}

// AppendMark is [Spool.Append] that also returns the record's Mark.
func (s *Spool) AppendMark(payload []byte, entries int, ts int64) (Mark, error) {
	if int64(len(payload)) > s.o.MaxRecordSize {
		return Mark{}, errorf("spool: append %d bytes (limit %d): %w", len(payload), s.o.MaxRecordSize, ErrTooLarge)
	}
	if entries < 0 || uint64(entries) > math.MaxUint32 {
		return Mark{}, errorf("spool: append: entry count %d out of range", entries)
	}
	s.muLock()
	return s.appendMarkedLocked(func() error { return s.appendLocked(payload, entries, ts) })
}

// appendMarkedLocked runs an append with s.mu held, releases s.mu and
// returns the Mark of the record it wrote.
func (s *Spool) appendMarkedLocked(appendLocked func() error) (Mark, error) {
	err := appendLocked()
	var m Mark
	if err == nil {
		g := s.wseg
		m = Mark{Segment: g.num, End: g.size, Records: g.records, Entries: g.entries, SpoolBytes: s.bytes}
	}
	errs := s.takeErrs()
	s.muUnlock()
	s.handle(errs)
	return m, err
}

// Release acknowledges every record up to and including the one m marks,
// whether Next returned it or not, and moves the read position past it: the
// records were delivered from the writer's own copy. Like [Spool.Ack], it
// writes the cursor and deletes completed segments. Records of segments
// already deleted (MaxBytes) are skipped; those deleted unread are taken
// back out of Stats.DroppedFull*, since the writer delivered them: a
// record is never both released and counted as dropped. (This holds for
// deleted records that no later record returned by Next follows, and for
// up to 256 deleted segments.) Releasing an already released
// Mark does nothing.
func (s *Spool) Release(m Mark) error {
	return s.acknowledge(func() error { return s.releaseLocked(m) })
}

func (s *Spool) releaseLocked(m Mark) error {
	if s.closed {
		return ErrClosed
	}
	end := Pos{Segment: m.Segment, Offset: m.End}
	// Records up to m that drop deleted unread and counted as dropped
	// (MaxBytes) were delivered from the writer's copy after all.
	for i := range s.fullDrops {
		d := &s.fullDrops[i]
		if d.num > m.Segment {
			break
		}
		r, e := d.records, d.entries
		if d.num == m.Segment {
			r, e = min(m.Records, r), min(m.Entries, e)
		}
		if r > d.readR {
			s.st.DroppedFullRecords -= uint64(r - d.readR)
			d.readR = r
		}
		if e > d.readE {
			s.st.DroppedFullEntries -= uint64(e - d.readE)
			d.readE = e
		}
	}
	if m.Segment > 0 {
		s.forgetFullDrops(m.Segment - 1) // a later Release may cover more of m.Segment
	}
	for _, g := range s.segs {
		if g.num > m.Segment {
			break
		}
		r, e, off := g.records, g.entries, g.size
		if g.num == m.Segment {
			r, e, off = min(m.Records, g.records), min(m.Entries, g.entries), min(m.End, g.size)
		}
		if r > g.ackedR {
			s.pendingR -= r - g.ackedR
			s.pendingE -= e - g.ackedE
			s.st.Acked += uint64(r - g.ackedR)
			g.ackedR, g.ackedE, g.ackOff = r, e, off
		}
		if r > g.readR {
			g.readR, g.readE = r, e
		}
	}
	// Records Next returned up to m are covered.
	k := 0
	for k < len(s.inflight) && s.inflight[k].pos.Less(end) {
		k++
	}
	n := copy(s.inflight, s.inflight[k:])
	s.inflight = s.inflight[:n]
	// Move the reader past m.
	if rp := s.readPos(); rp.Less(end) {
		s.rseg, s.roff = nil, 0
		for _, g := range s.segs {
			if g.num == m.Segment {
				s.rseg, s.roff = g, min(m.End, g.size)
				break
			}
			if g.num > m.Segment {
				s.rseg, s.roff = g, g.ackOff
				break
			}
		}
		if s.rseg == nil && len(s.segs) > 0 {
			last := s.segs[len(s.segs)-1]
			s.rseg, s.roff = last, last.size
		}
	}
	return s.settleAcksLocked()
}

// forgetFullDrops removes the fullDrops of segments up to num. Callers
// hold s.mu.
func (s *Spool) forgetFullDrops(num uint64) {
	k := 0
	for k < len(s.fullDrops) && s.fullDrops[k].num <= num {
		k++
	}
	n := copy(s.fullDrops, s.fullDrops[k:])
	s.fullDrops = s.fullDrops[:n]
}

// FrameHeaderSize is the room [PutFrame] needs in front of a payload.
const FrameHeaderSize = frameHeaderSize

// PutFrame makes frame a complete spool record: frame holds
// FrameHeaderSize bytes of room followed by the payload, and PutFrame
// writes the header (length, entry count, timestamp) and the checksum
// into the room. [Spool.AppendFrameMark] then only copies it: a writer
// that serializes its own appends under a lock computes the checksum
// before taking it.
func PutFrame(frame []byte, entries int, ts int64) error {
	if len(frame) < frameHeaderSize {
		return errorf("spool: frame of %d bytes has no room for its header", len(frame))
	}
	if uint64(len(frame)-frameHeaderSize) > math.MaxUint32 {
		return errorf("spool: frame payload of %d bytes: %w", len(frame)-frameHeaderSize, ErrTooLarge)
	}
	if entries < 0 || uint64(entries) > math.MaxUint32 {
		return errorf("spool: frame: entry count %d out of range", entries)
	}
	putFrameHeader(frame, uint32(entries), ts)
	return nil
}

// AppendFrameMark is [Spool.AppendMark] for a record framed by [PutFrame].
// A frame whose header does not match its length (not made by PutFrame,
// or changed since) is refused.
func (s *Spool) AppendFrameMark(frame []byte) (Mark, error) {
	if len(frame) < frameHeaderSize {
		return Mark{}, errorf("spool: append: frame of %d bytes has no header", len(frame))
	}
	h := parseFrameHeader(frame)
	if int(h.length) != len(frame)-frameHeaderSize {
		return Mark{}, errorf("spool: append: frame header says %d bytes, frame has %d", h.length, len(frame)-frameHeaderSize)
	}
	if int64(h.length) > s.o.MaxRecordSize {
		return Mark{}, errorf("spool: append %d bytes (limit %d): %w", h.length, s.o.MaxRecordSize, ErrTooLarge)
	}
	entries, ts := int(h.entries), h.ts
	frameLen := int64(len(frame))
	s.muLock()
	if m, ok := s.appendFrameFast(frame, entries, ts); ok {
		s.muUnlock()
		return m, nil
	}
	return s.appendMarkedLocked(func() error {
		if err := s.makeTail(frameLen); err != nil {
			return err
		}
		if s.wmap != nil {
			return s.appendMappedFrame(frame, nil, entries, ts, frameLen)
		}
		return s.writeFrame(frame, entries, ts)
	})
}

// appendFrameFast writes frame through the writer's mapping when the copy
// is all there is to do: the frame fits the segment and its mapping, no
// segment is to be deleted (MaxBytes), the resident window does not move,
// nothing waits to be flushed or reported, and the frame is copied in one
// piece by the general path too (copyStep). This is "always" mode's
// append, made under the buffer's lock for every log record: it keeps off
// the general path's indirect calls. ok is false, with nothing counted,
// when the general path must run; a fault in the copy leaves it to that
// path too (which writes the same bytes again and handles the fault).
// Callers hold s.mu.
func (s *Spool) appendFrameFast(frame []byte, entries int, ts int64) (m Mark, ok bool) {
	g, n := s.wseg, int64(len(frame))
	if g == nil || s.wmap == nil || s.closed || g.records == 0 || s.o.Sync == SyncBatch || len(s.errs) > 0 ||
		n > copyStep || g.size+n > s.o.SegmentSize || g.size+n > int64(len(s.wmap)) ||
		s.bytes+n > s.o.MaxBytes || s.pr != nil && g.size+n >= s.pr.nextWin {
		return m, false
	}
	if copyMapped(s.wmap[g.size:g.size+n], frame) != nil {
		return m, false
	}
	s.appended(g, n, entries, ts)
	return Mark{Segment: g.num, End: g.size, Records: g.records, Entries: g.entries, SpoolBytes: s.bytes}, true
}
