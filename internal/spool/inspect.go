package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ErrNotSpool is returned (wrapped, with the directory's name) by [Inspect]
// and [CheckDir] for a path that is not a directory, or a directory that
// holds no spool file: no LOCK, cursor, segment or set-aside segment.
var ErrNotSpool = errors.New("spool: not a spool directory")

// InspectOptions configures [Inspect]. The zero value works.
type InspectOptions struct {
	// MaxRecordSize is the payload length above which a frame is treated
	// as corrupt, as [Options.MaxRecordSize] does for Open. Default 16 MiB.
	MaxRecordSize int64

	// Record, when set, is called for every valid record of every segment,
	// oldest first (acknowledged ones included, marked so), after the
	// segment was checked. Its Payload belongs to the callee. An error it
	// returns stops Inspect, which returns it.
	Record func(InspectedRecord) error

	// SkipLockCheck leaves out the lock probe: Inspection.Locked stays
	// false. The probe takes the lock for an instant when nobody holds
	// it, so an Open at that very instant fails with ErrLocked.
	SkipLockCheck bool
}

// InspectedRecord is a record found by [Inspect].
type InspectedRecord struct {
	Record
	// Acknowledged reports whether the cursor marks the record as done:
	// Open would not return it again.
	Acknowledged bool
}

// Inspection is what [Inspect] found in a spool directory. It describes
// the files as they were read; while another process has the spool open
// (Locked), they may change during and after the read.
type Inspection struct {
	Dir string
	// Locked reports that another Spool held the directory lock when it
	// was probed. LockError is set when the probe itself failed (for
	// example no permission to open the LOCK file); Locked is then
	// unknown and false.
	Locked    bool
	LockError string

	Cursor CursorInfo
	// Segments are the segment files, oldest first.
	Segments []SegmentInfo
	// SetAside are the <segment>.corrupt files recovery kept.
	SetAside []SetAsideFile
	// Temporary are *.tmp files (cut short by a crash; Open removes them).
	Temporary []string
	// Vanished counts segment files listed but gone when read (deleted by
	// the process that has the spool open).
	Vanished int
}

// CursorInfo describes the cursor file.
type CursorInfo struct {
	// Present reports whether a cursor file exists.
	Present bool
	// Segment and Offset are the cursor's position when it is valid.
	Segment uint64
	Offset  int64
	// Error says why the file is invalid (Open ignores it and replays:
	// duplicates, not loss); empty when it is valid or absent.
	Error string
	// Ignored says why a valid cursor does not apply to its segment
	// (offset not on a record boundary: Open replays the segment); empty
	// when it applies.
	Ignored string
}

// SegmentInfo describes one segment file.
type SegmentInfo struct {
	Number uint64
	Name   string
	// Size is the file's size; ValidEnd the offset after its last valid
	// record (0 when the header is bad).
	Size     int64
	ValidEnd int64
	// Created is the creation time in the header, Unix ns (0 when the
	// header is bad).
	Created int64
	// Records and Entries count the valid records and the entries they
	// hold by their frame headers; the Acked ones are acknowledged by the
	// cursor.
	Records, Entries           int64
	AckedRecords, AckedEntries int64
	// OldestRecord and NewestRecord are the smallest and largest record
	// timestamps (the oldest entry of each record), Unix ns; 0 when there
	// is no record or the timestamps are unknown.
	OldestRecord, NewestRecord int64
	// Damage is set when the file does not end after its last valid
	// record.
	Damage *Damage
}

// Damage is where and why a segment's valid data ends early.
type Damage struct {
	// Offset is where the damage starts; Bytes how many bytes from there
	// to the end of the file.
	Offset int64
	Bytes  int64
	// Kind is "torn" (an incomplete frame or header at the end), "zeroed"
	// (only zero bytes to the end), "corrupt" (a wrong checksum, length or
	// header) or "changed" (the file changed while it was read).
	Kind   string
	Reason string
	// Recovery says what Open would do with it.
	Recovery string
}

// SetAsideFile is a <segment>.corrupt file.
type SetAsideFile struct {
	Name    string
	Segment uint64
	Size    int64
}

// Inspect reads the spool in dir without locking or changing anything:
// it never truncates, renames, creates or removes a file. It works while
// another process has the spool open (see Inspection). Damage is reported
// in the result, not as an error; errors are for a directory that cannot
// be read, one that is not a spool ([ErrNotSpool]), or opts.Record's.
func Inspect(dir string, opts InspectOptions) (*Inspection, error) {
	maxRec := opts.MaxRecordSize
	if maxRec <= 0 {
		maxRec = DefaultMaxRecordSize
	}
	des, err := listSpoolDir(dir)
	if err != nil {
		return nil, errorf("spool: inspect %s: %w", dir, err)
	}
	in := &Inspection{Dir: dir}
	var nums []uint64
	for _, de := range des {
		name := de.Name()
		if strings.HasSuffix(name, tmpSuffix) {
			in.Temporary = append(in.Temporary, name)
		}
		if n, ok := parseSegmentName(name); ok && de.Type().IsRegular() {
			nums = append(nums, n)
			continue
		}
		if base, ok := strings.CutSuffix(name, corruptSuffix); ok {
			if n, ok := parseSegmentName(base); ok {
				sa := SetAsideFile{Name: name, Segment: n}
				if info, err := de.Info(); err == nil {
					sa.Size = info.Size()
				}
				in.SetAside = append(in.SetAside, sa)
			}
		}
	}
	slices.Sort(nums)

	if !opts.SkipLockCheck {
		in.Locked, in.LockError = probeLock(filepath.Join(dir, lockName))
	}
	curSeg, curOff := inspectCursor(filepath.Join(dir, cursorName), &in.Cursor)
	hasCursor := in.Cursor.Present && in.Cursor.Error == ""

	br := bufio.NewReaderSize(nil, 64<<10)
	// The newest segment, as recovery sees it: the last one before the
	// segments prepared ahead and never taken at the end, which Open
	// removes.
	last := len(nums) - 1
	for ; last >= 0; last-- {
		f, err := os.Open(filepath.Join(dir, segmentName(nums[last])))
		if err != nil {
			break
		}
		unused := preparedUnused(f, nums[last], br)
		f.Close()
		if !unused {
			break
		}
	}
	for i, n := range nums {
		newest := i == last
		name := segmentName(n)
		cOff := int64(-1)
		if hasCursor && curSeg == n {
			cOff = curOff
		}
		g, ok, err := inspectSegment(filepath.Join(dir, name), n, newest, i > last, maxRec, cOff, br, opts.Record, hasCursor && n < curSeg)
		if err != nil {
			return nil, err
		}
		if !ok {
			in.Vanished++
			continue
		}
		if cOff >= 0 && g.ignored != "" {
			in.Cursor.Ignored = g.ignored
		}
		in.Segments = append(in.Segments, g.SegmentInfo)
	}
	return in, nil
}

// CheckDir returns nil when dir is an existing directory that holds a
// spool file (LOCK, cursor, a segment or a set-aside segment), an error
// wrapping fs.ErrNotExist when it does not exist, and one wrapping
// [ErrNotSpool] when it holds none. It changes nothing.
func CheckDir(dir string) error {
	if _, err := listSpoolDir(dir); err != nil {
		return errorf("spool: %s: %w", dir, err)
	}
	return nil
}

// listSpoolDir lists dir, checking that it is a spool directory.
func listSpoolDir(dir string) ([]fs.DirEntry, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errorf("no such directory: %w", fs.ErrNotExist)
		}
		return nil, err
	}
	if !fi.IsDir() {
		return nil, errorf("not a directory: %w", ErrNotSpool)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, de := range des {
		name := de.Name()
		if name == lockName || name == cursorName {
			return des, nil
		}
		if _, ok := parseSegmentName(strings.TrimSuffix(name, corruptSuffix)); ok {
			return des, nil
		}
	}
	return nil, errorf("%w (no LOCK, cursor or segment file)", ErrNotSpool)
}

// probeLock reports whether another holder has the lock file. It takes
// the lock for an instant when nobody has it, and never creates the file.
func probeLock(name string) (locked bool, errText string) {
	if _, err := os.Stat(name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, ""
		}
		return false, err.Error()
	}
	lk, err := lockFile(name)
	switch {
	case errors.Is(err, ErrLocked):
		return true, ""
	case err != nil:
		return false, err.Error()
	}
	lk.Close()
	return false, ""
}

// inspectCursor reads the cursor file into ci and returns its position.
func inspectCursor(name string, ci *CursorInfo) (seg uint64, off int64) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0
	}
	ci.Present = true
	if err != nil {
		ci.Error = err.Error()
		return 0, 0
	}
	defer f.Close()
	var b [cursorSize + 1]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		ci.Error = err.Error()
		return 0, 0
	}
	seg, off, err = parseCursor(b[:n])
	if err != nil {
		ci.Error = err.Error()
		return 0, 0
	}
	ci.Segment, ci.Offset = seg, off
	return seg, off
}

type inspectedSegment struct {
	SegmentInfo
	ignored string // why the cursor does not apply to this segment
}

// preparedUnused reports whether r, segment n's file, holds a valid header
// flagged headerPrepared and nothing but zeros after it (scanResult.givenUp,
// without the frames' scan). It reads past the header only when that is
// so flagged.
func preparedUnused(r io.Reader, n uint64, br *bufio.Reader) bool {
	br.Reset(r)
	var hdr [headerSize]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return false
	}
	return checkHeader(hdr[:], n) == nil && hdr[5]&headerPrepared != 0 && restZero(br)
}

// inspectSegment checks one segment file as recovery would, then hands its
// valid records to fn. allAcked is set for a segment below the cursor's,
// prepared for one after the newest that was prepared ahead and never
// written. ok is false when the file is gone.
func inspectSegment(path string, n uint64, newest, prepared bool, maxRec, cOff int64, br *bufio.Reader,
	fn func(InspectedRecord) error, allAcked bool) (g inspectedSegment, ok bool, err error) {
	g.Number, g.Name = n, filepath.Base(path)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return g, false, nil
	}
	if err != nil {
		return g, false, errorf("spool: inspect segment %d: %w", n, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return g, false, errorf("spool: inspect segment %d: %w", n, err)
	}
	g.Size = fi.Size()
	res := scanSegment(f, g.Size, n, maxRec, cOff, br)
	g.ValidEnd, g.Records, g.Entries = res.validEnd, res.records, res.entries
	if res.headerOK {
		var hdr [headerSize]byte
		if _, err := f.ReadAt(hdr[:], 0); err == nil {
			g.Created = int64(binary.LittleEndian.Uint64(hdr[16:]))
		}
	}
	if res.damage != damageNone {
		d := &Damage{Offset: res.validEnd, Bytes: g.Size - res.validEnd, Kind: res.damage.String(), Reason: res.reason}
		switch {
		case prepared || res.givenUp():
			d.Recovery = "Open removes the segment (prepared ahead, never written)"
		case newest && !res.headerOK && res.damage != damageCorrupt:
			d.Recovery = "Open removes the segment (created just before a crash)"
		case newest && res.headerOK:
			d.Recovery = fmt.Sprintf("Open truncates the torn tail to %d bytes", res.validEnd)
		case res.records == 0:
			d.Recovery = fmt.Sprintf("Open renames it to %s%s; none of its records is delivered", g.Name, corruptSuffix)
		default:
			d.Recovery = fmt.Sprintf("Open copies it to %s%s and cuts it to its %d valid records", g.Name, corruptSuffix, res.records)
		}
		g.Damage = d
	}

	// Acknowledgement, as recovery applies the cursor.
	ackEnd := int64(headerSize) // records ending at or before it are acknowledged
	switch {
	case allAcked:
		ackEnd = res.validEnd
	case cOff >= 0 && res.atOffset:
		ackEnd = cOff
	case cOff >= 0 && res.offsetBeyondOK:
		ackEnd = res.validEnd
	case cOff >= 0 && res.records > 0:
		g.ignored = fmt.Sprintf("offset %d is not a record boundary of segment %d: Open replays the segment", cOff, n)
	}

	// Walk the frames again for the acknowledged counts, the record
	// timestamps and fn. The data was checked by the scan; a frame that
	// fails now means the file changed while it was read.
	var rr, re int64
	for off := int64(headerSize); off < res.validEnd; {
		h, p, err := readFrame(f, off, res.validEnd, maxRec)
		if err != nil {
			if g.Damage == nil {
				g.Damage = &Damage{Offset: off, Bytes: g.Size - off, Kind: "changed", Reason: err.Error(),
					Recovery: "the file changed while it was read; inspect again"}
			}
			break
		}
		end := off + frameHeaderSize + int64(h.length)
		acked := end <= ackEnd
		if acked {
			g.AckedRecords++
			g.AckedEntries += int64(h.entries)
		}
		if h.ts != 0 {
			if g.OldestRecord == 0 || h.ts < g.OldestRecord {
				g.OldestRecord = h.ts
			}
			if g.NewestRecord == 0 || h.ts > g.NewestRecord {
				g.NewestRecord = h.ts
			}
		}
		rr++
		re += int64(h.entries)
		if fn != nil {
			rec := InspectedRecord{
				Record:       Record{Pos: Pos{Segment: n, Offset: off}, Payload: p, Entries: int(h.entries), Timestamp: h.ts},
				Acknowledged: acked,
			}
			if err := fn(rec); err != nil {
				return g, true, err
			}
		}
		off = end
	}
	g.Records, g.Entries = rr, re
	return g, true, nil
}
