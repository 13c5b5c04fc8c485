package spool

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// recover rebuilds the state from the directory. See doc.go, "Recovery".
func (s *Spool) recover() error {
	des, err := s.fs.ReadDir(s.o.Dir)
	if err != nil {
		return errorf("list: %w", err)
	}
	var nums []uint64
	for _, de := range des {
		name := de.Name()
		if n, ok := parseSegmentName(name); ok && de.Type().IsRegular() {
			nums = append(nums, n)
			continue
		}
		if n, ok := parseSegmentName(strings.TrimSuffix(name, corruptSuffix)); ok {
			s.next = max(s.next, n+1) // never reuse the number of a set-aside segment
			continue
		}
		if strings.HasSuffix(name, tmpSuffix) {
			// A cursor or a corrupt copy cut short by a crash.
			if err := s.fs.Remove(s.path(name)); err != nil {
				return errorf("remove %s: %w", name, err)
			}
		}
	}
	slices.Sort(nums)
	if len(nums) > 0 {
		s.next = max(s.next, nums[len(nums)-1]+1)
	}

	curSeg, curOff, hasCursor, err := s.readCursor()
	if err != nil {
		return err
	}
	if hasCursor {
		// Segments numbered below the cursor's count as acknowledged, so a
		// new segment must never get such a number, even when the spool
		// is empty.
		s.next = max(s.next, curSeg+1)
	}

	br := bufio.NewReaderSize(nil, 64<<10)
	// Every segment scanned first: the newest is the last one that is not
	// a segment prepared ahead and never taken (givenUp), which a crash
	// may leave after the writer's (whose zero tail is cut off below).
	scans := make([]scanResult, len(nums))
	sizes := make([]int64, len(nums))
	cOffs := make([]int64, len(nums)) // the cursor's offset in its segment, else -1
	for i, n := range nums {
		cOffs[i] = -1
		if hasCursor && curSeg == n {
			cOffs[i] = curOff
		}
		if scans[i], sizes[i], err = s.scanFile(segmentName(n), n, cOffs[i], br); err != nil {
			return err
		}
	}
	last := len(nums) - 1
	for last >= 0 && scans[last].givenUp() {
		last--
	}
	for i, n := range nums {
		newest := i == last
		name := segmentName(n)
		res, size, cOff := scans[i], sizes[i], cOffs[i]
		switch {
		case res.givenUp():
			// Prepared ahead, never taken by the writer: no record.
			if err := s.fs.Remove(s.path(name)); err != nil {
				return errorf("remove unused prepared segment %d: %w", n, err)
			}
			continue
		case res.damage == damageNone:
		case newest && !res.headerOK && res.damage != damageCorrupt:
			// Created just before a crash: a partial or zeroed header
			// and nothing else.
			if err := s.fs.Remove(s.path(name)); err != nil {
				return errorf("remove torn segment %d: %w", n, err)
			}
			s.st.TruncatedBytes += size
			continue
		case newest && res.headerOK:
			// A torn tail: the last writes before a crash.
			if err := s.truncate(name, res.validEnd); err != nil {
				return err
			}
			s.st.TruncatedBytes += size - res.validEnd
		default:
			// A segment before the newest was complete when the next one
			// was created: any damage is corruption.
			if err := s.setAside(name, res.validEnd); err != nil {
				return errorf("set aside corrupt segment %d (%s: %s): %w", n, res.damage, res.reason, err)
			}
			s.st.CorruptSegments++
			s.st.CorruptBytes += size - res.validEnd
			if res.records == 0 {
				continue // renamed away whole
			}
		}
		if res.records == 0 {
			if err := s.fs.Remove(s.path(name)); err != nil {
				return errorf("remove empty segment %d: %w", n, err)
			}
			continue
		}
		g := &segment{
			num: n, size: res.validEnd, firstTS: res.firstTS,
			records: res.records, entries: res.entries, ackOff: headerSize,
		}
		if cOff >= 0 {
			switch {
			case res.atOffset:
				g.ackedR, g.ackedE, g.ackOff, g.ackTS = res.offsetRecords, res.offsetEntries, curOff, res.offsetTS
			case res.offsetBeyondOK:
				// The cursor is past the data: the tail was lost after
				// the cursor was written (power loss, SyncNever).
				g.ackedR, g.ackedE, g.ackOff = g.records, g.entries, g.size
			default:
				s.st.CursorResets++
			}
		}
		s.segs = append(s.segs, g)
	}

	// Every segment before the cursor's was acknowledged; delete those and
	// the ones the cursor completes.
	var keep []*segment
	for _, g := range s.segs {
		if (hasCursor && g.num < curSeg) || g.ackedR == g.records {
			if err := s.fs.Remove(s.path(segmentName(g.num))); err != nil {
				return errorf("remove acknowledged segment %d: %w", g.num, err)
			}
			continue
		}
		keep = append(keep, g)
	}
	s.segs = keep
	for _, g := range s.segs {
		g.readR, g.readE = g.ackedR, g.ackedE
		s.bytes += g.size
		s.pendingR += g.records - g.ackedR
		s.pendingE += g.entries - g.ackedE
	}
	s.st.RecoveredRecords, s.st.RecoveredEntries = s.pendingR, s.pendingE
	if len(s.segs) > 0 {
		s.rseg, s.roff = s.segs[0], s.segs[0].ackOff
	}
	if hasCursor {
		s.cursorSeg, s.cursorOff = curSeg, curOff
	}
	return nil
}

// scanFile scans one segment file.
func (s *Spool) scanFile(name string, n uint64, cOff int64, br *bufio.Reader) (scanResult, int64, error) {
	f, err := s.fs.OpenFile(s.path(name), os.O_RDONLY, 0)
	if err != nil {
		return scanResult{}, 0, errorf("open segment %d: %w", n, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return scanResult{}, 0, errorf("stat segment %d: %w", n, err)
	}
	return scanSegment(f, fi.Size(), n, s.o.MaxRecordSize, cOff, br), fi.Size(), nil
}

// readCursor reads the cursor file. A missing file is no cursor; an invalid
// one is counted and ignored (replay from the start: duplicates, not loss).
func (s *Spool) readCursor() (seg uint64, off int64, ok bool, err error) {
	f, err := s.fs.OpenFile(s.path(cursorName), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, errorf("open cursor: %w", err)
	}
	defer f.Close()
	var b [cursorSize + 1]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, 0, false, errorf("read cursor: %w", err)
	}
	seg, off, perr := parseCursor(b[:n])
	if perr != nil {
		s.st.CursorResets++
		return 0, 0, false, nil
	}
	s.cursorInPlace = true
	return seg, off, true, nil
}

// truncate cuts segment file name to size and flushes it.
func (s *Spool) truncate(name string, size int64) error {
	f, err := s.fs.OpenFile(s.path(name), os.O_WRONLY, 0)
	if err != nil {
		return errorf("open %s to truncate: %w", name, err)
	}
	err = f.Truncate(size)
	if err == nil && s.o.Sync != SyncNever {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errorf("truncate %s to %d: %w", name, size, err)
	}
	return nil
}

// setAside keeps a copy of a corrupt segment as <name>.corrupt and cuts the
// segment to its valid records (validEnd), or renames it away when it has
// none. The copy comes first, so a crash in between repeats the step.
func (s *Spool) setAside(name string, validEnd int64) error {
	src := s.path(name)
	dst := src + corruptSuffix
	if validEnd <= headerSize {
		if err := s.fs.Rename(src, dst); err != nil {
			return err
		}
		return s.syncDir()
	}
	tmp := dst + tmpSuffix
	if err := s.copyFile(src, tmp); err != nil {
		s.fs.Remove(tmp)
		return err
	}
	if err := s.fs.Rename(tmp, dst); err != nil {
		s.fs.Remove(tmp)
		return err
	}
	if err := s.truncate(name, validEnd); err != nil {
		return err
	}
	return s.syncDir()
}

func (s *Spool) copyFile(src, dst string) error {
	in, err := s.fs.OpenFile(src, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := s.fs.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil && s.o.Sync != SyncNever {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func (s *Spool) syncDir() error {
	if s.o.Sync == SyncNever {
		return nil
	}
	return s.fs.SyncDir(s.o.Dir)
}
