package spool

import (
	"errors"
	"os"
)

// prepName is the file of a segment being prepared ahead of time, until
// its header is written. It ends in tmpSuffix: Open removes one left by a
// crash, since it never held a record.
const prepName = "next" + tmpSuffix

// The mmap writer's costly steps are done ahead of time, off the lock
// that Append holds, by one goroutine (the preparer):
//
//   - the next segment's file is created, preallocated (fallocate), mapped
//     and its first pages faulted in writable (populate), so that writes
//     through the fresh mapping take no page fault;
//   - as the writer moves on, the pages ahead of it are faulted in and
//     the ones behind it released (see moveWindow);
//   - the mappings of rolled segments are unmapped.
//
// The prepared file is made under prepName and renamed by the preparer to
// the segment's name once its header is written, flagged headerPrepared,
// under the number it takes just before. A roll only makes it
// the writer's and clears the flag, with no system call (the rename, done
// there before, took up to a millisecond on a VM, in the logging
// goroutine's Handle in "always" mode). Open removes a flagged segment
// with nothing but zeros after its header wherever it is, and prepName
// (see recover). The prepared file is at most one segment of disk beyond
// MaxBytes, like the writer's own preallocated tail. When nothing is
// prepared (the first segment, a roll faster than the preparer, a disk
// error), Append creates the segment itself as before, under a later
// number; a segment prepared under an earlier one is then given up and its
// file removed, never written after it (numbers give the segments' order).
type preparer struct {
	wake  chan struct{} // buffered: a request to look for work
	stop  chan struct{}
	done  chan struct{}
	first chan struct{} // closed when the first request was handled

	// Guarded by Spool.mu.
	ready  *prepared
	retire [][]byte // mappings to unmap
	failed bool     // the last preparation failed: wait for the next roll
	advise []advice // window moves of the writer's mapping, oldest first
	// nextWin is the offset in the writer's mapping whose crossing moves
	// the resident window (see moveWindow).
	nextWin int64
	// minNum: a prepared segment numbered below it is not taken (Append
	// created a segment itself after its number was given).
	minNum uint64
}

// The writer's mapping is kept resident by windows: the preparer faults
// in lead windows ahead of the writer (far enough that the writer does not
// catch up with it on a busy machine) and releases the window behind, so
// about lead+1 windows of a segment count in the process's RSS instead of
// all of it.
const (
	window = 1 << 20
	lead   = 3
)

// advice is a range of a mapping to fault in (populate) or to unmap the
// pages of (release: MADV_DONTNEED; the written data stays in the page
// cache and the file).
type advice struct {
	m        []byte
	populate bool
}

type prepared struct {
	num uint64
	f   File
	m   []byte
}

// usePreparer says whether segments are prepared ahead: with the mmap
// writer on the OS filesystem. (Tests that inject disk faults keep every
// step on the append path, where the faults are expected.)
func (s *Spool) usePreparer() bool {
	if !s.useMmap() {
		return false
	}
	switch s.fs.(type) {
	case OSFS, *OSFS:
		return true
	}
	return false
}

// startPreparer starts the preparer goroutine. Open calls it. The first
// segment is prepared once a writer segment is mapped (a spool that is
// only read creates no file), or at once with Options.PrepareFirst.
func (s *Spool) startPreparer() {
	s.pr = &preparer{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), first: make(chan struct{})}
	go s.prepareLoop()
}

// kickPreparer asks the preparer to look for work. Callers may hold s.mu.
func (s *Spool) kickPreparer() {
	if s.pr == nil {
		return
	}
	select {
	case s.pr.wake <- struct{}{}:
	default:
	}
}

// stopPreparer stops the goroutine and releases what it holds. Close
// calls it without s.mu, after setting s.closed.
func (s *Spool) stopPreparer() {
	if s.pr == nil {
		return
	}
	close(s.pr.stop)
	<-s.pr.done
}

// releaseMapping ends a mapping that is no longer written to: by the
// preparer when it runs, else now. Callers hold s.mu.
func (s *Spool) releaseMapping(m []byte) error {
	if s.pr != nil && !s.closed {
		s.pr.retire = append(s.pr.retire, m)
		s.kickPreparer()
		return nil
	}
	return unmapSegment(m)
}

func (s *Spool) prepareLoop() {
	defer close(s.pr.done)
	firstDone := false // s.pr.first is closed
	for {
		select {
		case <-s.pr.stop:
			s.muLock()
			retire, p := s.pr.retire, s.pr.ready
			s.pr.retire, s.pr.ready = nil, nil
			s.muUnlock()
			for _, m := range retire {
				unmapSegment(m)
			}
			if p != nil {
				s.discardPrepared(p)
			}
			s.removeQueued() // Close has set s.closed: drop queues no more
			return
		case <-s.pr.wake:
		}
		s.prepareStep()
		s.removeQueued() // segments drop deleted (MaxBytes)
		if !firstDone {
			firstDone = true
			close(s.pr.first)
		}
	}
}

// prepareStep does what the preparer was woken for: window advice,
// unmapping rolled segments, preparing the next segment when none is.
func (s *Spool) prepareStep() {
	s.muLock()
	retire, adv := s.pr.retire, s.pr.advise
	s.pr.retire, s.pr.advise = nil, nil
	need := !s.closed && s.pr.ready == nil && !s.pr.failed && s.useMmap()
	s.muUnlock()
	// Advice first: its mappings may be among those retired below, and
	// only this goroutine unmaps them, so they are still mapped.
	for _, a := range adv {
		if a.populate {
			inSteps(a.m, populate)
		} else {
			// A window in one call: each call costs the other CPUs a
			// TLB flush, an interrupt that a VM pays dearly for (in
			// 64 KiB steps release took 5 % of "always" mode's CPU).
			release(a.m)
		}
	}
	for _, m := range retire {
		if err := unmapSegment(m); err != nil {
			s.muLock()
			s.cleanupError(errorf("spool: unmap rolled segment: %w", err))
			errs := s.takeErrs()
			s.muUnlock()
			s.handle(errs)
		}
	}
	if !need {
		return
	}
	p, err := s.prepare()
	s.muLock()
	if p != nil && p.num < s.pr.minNum && !s.closed {
		// Append created a segment itself while this one was prepared.
		s.dropPrepared(p)
		s.muUnlock()
		s.removeQueued()
		return
	}
	if err != nil || s.closed {
		// A disk error here is not reported: the append path creates
		// the segment itself and reports what it meets.
		s.pr.failed = err != nil
		s.muUnlock()
		if p != nil {
			s.discardPrepared(p)
		}
		return
	}
	s.pr.ready = p
	s.muUnlock()
}

// prepare creates, preallocates, maps and faults in the file of a next
// segment under prepName, then takes the next number, writes the header
// (flagged headerPrepared) and renames the file to the segment's name. It
// runs without s.mu but to take the number, as late as it can: a segment
// that Append creates itself meanwhile takes a later one, and the
// prepared one is then given up.
func (s *Spool) prepare() (*prepared, error) {
	name := s.path(prepName)
	if err := s.fs.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := s.fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	m, err := mapSegment(f, s.o.SegmentSize)
	if err != nil {
		f.Close()
		s.fs.Remove(name)
		return nil, err
	}
	// The first page fault of a new file takes milliseconds (against tens
	// of microseconds for each later step): the kernel takes it
	// (populateFirst) on a thread that leaves this P to the loggers.
	first := m[:min(len(m), adviseStep)]
	populateFirst(first)
	s.muLock()
	num := s.next
	s.next++ // never reuse a number, even if this one is never written
	s.muUnlock()
	err = s.startMapped(f, m, num, headerPrepared)
	if err == nil {
		err = s.fs.Rename(name, s.path(segmentName(num)))
	}
	if err != nil {
		unmapSegment(m)
		f.Close()
		s.fs.Remove(name)
		s.fs.Remove(s.path(segmentName(num)))
		return nil, err
	}
	inSteps(m[len(first):min(len(m), lead*window)], populate)
	return &prepared{num: num, f: f, m: m}, nil
}

// adviseStep is the most of a mapping one populate or release call covers.
// Between calls the preparer yields its P (runtime.Gosched): a logging
// goroutine woken meanwhile on the same P, which is every one of them
// with GOMAXPROCS=1, waits for one step, 30-40 µs of page faults here
// (populate holds the P while it touches pages), not for a whole window.
const adviseStep = 64 << 10

// touchStep is the granule populate touches (touchPages), the smallest page
// size of the platforms mapped here: a range to populate starts on one.
const touchStep = 4 << 10

// inSteps calls f on m in pieces of adviseStep bytes, yielding between.
func inSteps(m []byte, f func([]byte)) {
	inPieces(m, adviseStep, func(p []byte) bool { f(p); return true })
}

// discardPrepared removes a prepared segment that will not be used.
func (s *Spool) discardPrepared(p *prepared) {
	unmapSegment(p.m)
	p.f.Close()
	s.fs.Remove(s.path(segmentName(p.num))) // else the next Open removes it
}

// takePrepared makes the prepared segment, if there is one big enough for
// a first frame of frameLen bytes, the writer's new segment. It returns
// false when there is none or it could not be used; the caller then
// creates a segment. Callers hold s.mu.
func (s *Spool) takePrepared(frameLen int64) bool {
	if s.pr == nil {
		return false
	}
	s.pr.failed = false
	p := s.pr.ready
	if p == nil || headerSize+frameLen > int64(len(p.m)) {
		return false
	}
	s.pr.ready = nil
	// The header's flag cleared: a write to a page faulted in already
	// (and, with SyncBatch, the file and the directory flushed).
	if err := s.startMapped(p.f, p.m, p.num, 0); err != nil {
		s.dropPrepared(p)
		return false
	}
	s.adoptMapped(p.num, p.f, p.m)
	return true
}

// dropPrepared gives up p, prepared under a number before a segment that
// Append created itself: its mapping and file are released now, the file
// removed by the preparer (else the next Open sets it aside). Callers hold
// s.mu.
func (s *Spool) dropPrepared(p *prepared) {
	s.releaseMapping(p.m)
	p.f.Close()
	s.toRemove = append(s.toRemove, p.num)
	s.kickPreparer()
}

// adoptMapped makes a new mapped segment, its header written, the
// writer's. Callers hold s.mu.
func (s *Spool) adoptMapped(num uint64, f File, m []byte) {
	g := &segment{num: num, size: headerSize, ackOff: headerSize}
	s.segs = append(s.segs, g)
	s.bytes += headerSize
	s.w, s.wseg, s.wmap = f, g, m
	s.dirDirty = true
	if s.pr != nil {
		s.pr.nextWin = window
	}
	s.kickPreparer() // prepare the next one
}

// moveWindow is called after a write through the mapping ends at or past
// s.pr.nextWin, a window boundary b: the preparer faults in the window
// lead windows ahead, [b+(lead-1)×window, b+lead×window), and releases
// the one the writer just left, [b-window, b). Callers hold s.mu.
func (s *Spool) moveWindow() {
	m, end := s.wmap, s.wseg.size
	for s.pr.nextWin <= end {
		b := s.pr.nextWin
		s.pr.nextWin += window
		if lo, hi := b+(lead-1)*window, min(b+lead*window, int64(len(m))); lo < hi {
			s.pr.advise = append(s.pr.advise, advice{m: m[lo:hi], populate: true})
		}
		if lo := b - window; lo >= 0 {
			s.pr.advise = append(s.pr.advise, advice{m: m[lo:b]})
		}
	}
	s.kickPreparer()
}
