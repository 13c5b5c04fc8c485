package spool

import (
	"sync"
	"sync/atomic"
	"time"
)

// The fast tail lets a writer that appends one small framed record per
// log call ("always" mode) copy it into the writer's mapping under a lock
// of its own (fastTail.mu), which guards a few fields on one or two cache
// lines, instead of s.mu and the spool's many fields, which the reader and
// the preparer share.
//
// Every section under s.mu starts by folding the fast appends into the
// spool's fields (g.size, the counters) and turning the fast tail off, and
// ends by arming it again from those fields (muLock, muUnlock). So s.mu's
// sections see every fast append made before them and none is made during
// them: the writer, its mapping and its size cannot change under a fast
// append, and nothing under s.mu needs to know about the fast tail. The
// reader's sections (muLockRead) leave the tail armed: they read up to the
// size folded at their start and change nothing of the writer's. A fast
// append takes only the case appendFrameFast takes (the frame fits the
// mapping before the next window move and MaxBytes, the segment has a
// record, no flush per append, nothing to report); anything else returns
// false and the caller appends as usual.
type fastTail struct {
	mu   sync.Mutex
	on   bool   // armed: a frame that fits may be copied
	user bool   // the caller's switch (SetFast)
	m    []byte // the writer's mapping
	off  int64  // end of the last frame written (the segment's size)
	lim  int64  // frames end at or before lim
	room int64  // bytes left under MaxBytes when armed
	// spins is how many times lock tries before it parks: set by Open.
	spins int

	// Fast appends since the last fold into the spool's fields.
	records, entries, bytes int64

	// Fast appends since the caller last took them (TakeFast).
	taken FastCounts
}

// FastCounts counts records appended by [Spool.AppendFast] since the
// caller last took them ([Spool.TakeFast], [Spool.SetFast]).
type FastCounts struct {
	Records int64
	Bytes   int64     // their frames' length
	First   time.Time // when the first of them was appended
}

// muLock takes s.mu, folds the fast tail in and turns it off (see
// fastTail).
func (s *Spool) muLock() {
	s.mu.Lock()
	s.foldFast(true)
}

// muLockRead takes s.mu and folds the fast tail in, leaving it armed: for
// the reader's sections, which read records up to the writer's folded size
// while fast appends go on after it, and change nothing of the writer's.
// One that comes to change the writer after all (a corrupt frame in the
// writer's segment) calls foldFast(true) first.
func (s *Spool) muLockRead() {
	s.mu.Lock()
	s.foldFast(false)
}

// foldFast folds the fast tail in and, with stop, turns it off until
// muUnlock. Callers hold s.mu.
func (s *Spool) foldFast(stop bool) {
	s.ft.mu.Lock()
	s.foldLocked()
	if stop {
		s.ft.on = false
	}
	s.ft.mu.Unlock()
}

// foldLocked counts the fast appends in the spool's fields. Callers hold
// s.mu and s.ft.mu.
func (s *Spool) foldLocked() {
	ft := &s.ft
	if ft.records == 0 {
		return
	}
	// The writer is the one armed at the last muUnlock: it only changes
	// in sections that turned the tail off first.
	g := s.wseg
	g.size = ft.off
	g.records += ft.records
	g.entries += ft.entries
	s.bytes += ft.bytes
	s.pendingR += ft.records
	s.pendingE += ft.entries
	s.st.Appended += uint64(ft.records)
	s.dirty = true
	ft.records, ft.entries, ft.bytes = 0, 0, 0
}

// muUnlock arms the fast tail from the spool's fields and releases s.mu.
func (s *Spool) muUnlock() {
	ft := &s.ft
	ft.mu.Lock()
	s.foldLocked() // made during a reader's section (muLockRead)
	g := s.wseg
	ft.on = ft.user && g != nil && s.wmap != nil && !s.closed && g.records > 0 && s.o.Sync != SyncBatch && len(s.errs) == 0
	if ft.on {
		ft.m, ft.off, ft.room = s.wmap, g.size, s.o.MaxBytes-s.bytes
		ft.lim = min(s.o.SegmentSize, int64(len(s.wmap)))
		if s.pr != nil {
			ft.lim = min(ft.lim, s.pr.nextWin-1) // the slow path moves the window
		}
	} else {
		ft.m = nil
	}
	ft.mu.Unlock()
	s.mu.Unlock()
}

// AppendFast appends a record framed by [PutFrame] when that is a copy
// into the writer's mapping, and reports whether it did; when it did not
// (see fastTail), the caller appends it with [Spool.AppendFrameMark],
// which also reports any error. Fast appends are off until [Spool.SetFast]
// turns them on. It returns the fast appends not taken yet, this one
// included.
func (s *Spool) AppendFast(frame []byte) (FastCounts, bool) {
	n := int64(len(frame))
	if n < frameHeaderSize || n > copyStep {
		return FastCounts{}, false
	}
	h := parseFrameHeader(frame)
	if int64(h.length) != n-frameHeaderSize || int64(h.length) > s.o.MaxRecordSize {
		return FastCounts{}, false
	}
	ft := &s.ft
	ft.lock()
	if !ft.on || ft.off+n > ft.lim || ft.bytes+n > ft.room {
		ft.mu.Unlock()
		return FastCounts{}, false
	}
	if copyMapped(ft.m[ft.off:ft.off+n], frame) != nil {
		// The slow path writes it again and handles the fault.
		ft.on = false
		ft.mu.Unlock()
		return FastCounts{}, false
	}
	ft.off += n
	ft.records++
	ft.entries += int64(h.entries)
	ft.bytes += n
	if ft.taken.Records == 0 {
		ft.taken.First = time.Now()
	}
	ft.taken.Records++
	ft.taken.Bytes += n
	c := ft.taken
	ft.mu.Unlock()
	return c, true
}

// TakeFast returns the fast appends not taken yet and forgets them.
func (s *Spool) TakeFast() FastCounts {
	ft := &s.ft
	ft.mu.Lock()
	c := ft.taken
	ft.taken = FastCounts{}
	ft.mu.Unlock()
	return c
}

// SetFast turns fast appends on or off and returns what TakeFast would.
// Once SetFast(false) has returned, no fast append is made until
// SetFast(true): a caller that changes what its appends mean (a buffer
// that stops reading its records from the spool) turns them off first.
func (s *Spool) SetFast(on bool) FastCounts {
	if on {
		s.muLock()
		s.ft.user = true
		s.muUnlock()
	} else {
		s.ft.mu.Lock()
		s.ft.user, s.ft.on = false, false
		s.ft.mu.Unlock()
	}
	return s.TakeFast()
}

// lock takes ft.mu for a fast append. It is held for a copy of a few
// hundred bytes; a goroutine that finds it taken tries again for a while
// before it parks (sync.Mutex parks at once while other goroutines wait to
// run on its P, the normal case when more goroutines log than there are
// CPUs, and a park and wake-up cost more than the wait). With one P the
// holder cannot run meanwhile: no spinning (spins is 0).
func (ft *fastTail) lock() {
	for range ft.spins {
		if ft.mu.TryLock() {
			return
		}
		for range 8 {
			spinPause.Load()
		}
	}
	ft.mu.Lock()
}

// spinPause is only loaded: fastTail.lock's pause between attempts.
var spinPause atomic.Int32
