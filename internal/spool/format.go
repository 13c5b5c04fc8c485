package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"
)

// On-disk format (docs/SPOOL.md has the diagrams). All integers are little
// endian.
//
// Segment header, headerSize bytes:
//
//	0  magic   "LKSG"
//	4  version u8 (1)
//	5  flags u8: 1 = prepared ahead, not taken by the writer yet (no record)
//	6  reserved [2]byte, zero
//	8  segment number u64 (equals the file name's number)
//	16 creation time i64, Unix nanoseconds
//	24 reserved u32, zero
//	28 CRC-32C u32 of bytes 0..28
//
// Frame, frameHeaderSize bytes then the payload:
//
//	0  length  u32, payload bytes
//	4  CRC-32C u32 of bytes 0..4 and 8..20+length
//	8  entries u32
//	12 timestamp i64 (Unix ns of the record's oldest entry, 0 = unknown)
//	20 payload
//
// Cursor file, cursorSize bytes:
//
//	0  magic   "LKSC"
//	4  version u8 (1)
//	5  reserved [3]byte, zero
//	8  segment number u64
//	16 offset u64: every record of the segment ending at or before it is acknowledged
//	24 reserved u32, zero
//	28 CRC-32C u32 of bytes 0..28
const (
	headerSize      = 32
	frameHeaderSize = 20
	cursorSize      = 32
	formatVersion   = 1

	segmentSuffix = ".seg"
	corruptSuffix = ".corrupt"
	tmpSuffix     = ".tmp"
	cursorName    = "cursor"
	lockName      = "LOCK"
)

var (
	segmentMagic = [4]byte{'L', 'K', 'S', 'G'}
	cursorMagic  = [4]byte{'L', 'K', 'S', 'C'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// segmentName returns the file name of segment n: 16 hex digits, so names
// sort in numeric order.
func segmentName(n uint64) string { return fmt.Sprintf("%016x%s", n, segmentSuffix) }

// parseSegmentName returns the number of a segment file name.
func parseSegmentName(name string) (uint64, bool) {
	base, ok := strings.CutSuffix(name, segmentSuffix)
	if !ok || len(base) != 16 {
		return 0, false
	}
	n, err := strconv.ParseUint(base, 16, 64)
	return n, err == nil
}

// headerPrepared, in a header's byte 5, marks a segment prepared ahead
// that the writer has not taken yet: it holds no record (the writer clears
// the flag before its first). Open removes such a segment wherever it is
// when nothing but zeros follows its header.
const headerPrepared = 1

// putHeader writes segment num's header into b, with flags in byte 5.
func putHeader(b []byte, num uint64, created int64, flags byte) {
	_ = b[headerSize-1]
	copy(b[0:4], segmentMagic[:])
	b[4] = formatVersion
	b[5], b[6], b[7] = flags, 0, 0
	binary.LittleEndian.PutUint64(b[8:], num)
	binary.LittleEndian.PutUint64(b[16:], uint64(created))
	binary.LittleEndian.PutUint32(b[24:], 0)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
}

// checkHeader validates a segment header read from segment num.
func checkHeader(b []byte, num uint64) error {
	if len(b) < headerSize {
		return errorf("header: %d of %d bytes", len(b), headerSize)
	}
	if [4]byte(b[0:4]) != segmentMagic {
		return errorf("header: bad magic %q", b[0:4])
	}
	if got, want := binary.LittleEndian.Uint32(b[28:]), crc32.Checksum(b[:28], castagnoli); got != want {
		return errorf("header: checksum %08x, want %08x", got, want)
	}
	if b[4] != formatVersion {
		return errorf("header: unsupported version %d", b[4])
	}
	if n := binary.LittleEndian.Uint64(b[8:]); n != num {
		return errorf("header: segment number %d in file of segment %d", n, num)
	}
	return nil
}

// putFrameHeader writes the header of a frame into b[:frameHeaderSize]; the
// payload must already be in b[frameHeaderSize:].
func putFrameHeader(b []byte, entries uint32, ts int64) {
	binary.LittleEndian.PutUint32(b[0:], uint32(len(b)-frameHeaderSize))
	binary.LittleEndian.PutUint32(b[8:], entries)
	binary.LittleEndian.PutUint64(b[12:], uint64(ts))
	crc := crc32.Update(0, castagnoli, b[0:4])
	crc = crc32.Update(crc, castagnoli, b[8:])
	binary.LittleEndian.PutUint32(b[4:], crc)
}

// frameHeader is a decoded frame header.
type frameHeader struct {
	length  uint32
	crc     uint32
	entries uint32
	ts      int64
}

func parseFrameHeader(b []byte) frameHeader {
	return frameHeader{
		length:  binary.LittleEndian.Uint32(b[0:]),
		crc:     binary.LittleEndian.Uint32(b[4:]),
		entries: binary.LittleEndian.Uint32(b[8:]),
		ts:      int64(binary.LittleEndian.Uint64(b[12:])),
	}
}

// partialCRC is the CRC of the checksummed header fields (length, entries,
// timestamp); the payload is added to it.
func partialCRC(b []byte) uint32 {
	crc := crc32.Update(0, castagnoli, b[0:4])
	return crc32.Update(crc, castagnoli, b[8:frameHeaderSize])
}

func putCursor(b []byte, seg uint64, off int64) {
	_ = b[cursorSize-1]
	copy(b[0:4], cursorMagic[:])
	b[4] = formatVersion
	b[5], b[6], b[7] = 0, 0, 0
	binary.LittleEndian.PutUint64(b[8:], seg)
	binary.LittleEndian.PutUint64(b[16:], uint64(off))
	binary.LittleEndian.PutUint32(b[24:], 0)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
}

func parseCursor(b []byte) (seg uint64, off int64, err error) {
	if len(b) != cursorSize {
		return 0, 0, errorf("cursor: %d bytes, want %d", len(b), cursorSize)
	}
	if [4]byte(b[0:4]) != cursorMagic || b[4] != formatVersion {
		return 0, 0, errorf("cursor: bad magic or version")
	}
	if binary.LittleEndian.Uint32(b[28:]) != crc32.Checksum(b[:28], castagnoli) {
		return 0, 0, errorf("cursor: bad checksum")
	}
	off = int64(binary.LittleEndian.Uint64(b[16:]))
	if off < headerSize {
		return 0, 0, errorf("cursor: offset %d inside the header", off)
	}
	return binary.LittleEndian.Uint64(b[8:]), off, nil
}

// damage classifies what ended a segment scan before the end of the file.
type damage int

const (
	damageNone    damage = iota
	damageTorn           // an incomplete frame or header at the end of the file
	damageZero           // only zero bytes from the damage to the end of the file
	damageCorrupt        // a checksum, length or header that is wrong
)

func (d damage) String() string {
	switch d {
	case damageNone:
		return "none"
	case damageTorn:
		return "torn"
	case damageZero:
		return "zeroed"
	default:
		return "corrupt"
	}
}

// scanResult is what scanSegment learned about one segment file.
type scanResult struct {
	headerOK bool
	prepared bool  // the header has headerPrepared
	validEnd int64 // offset after the last valid frame (0 when the header is bad)
	records  int64 // valid records
	entries  int64
	firstTS  int64 // timestamp of the first valid record

	damage damage
	reason string // why the scan stopped early, for errors

	// Cursor lookup: filled when a cursor offset was given.
	atOffset       bool  // the cursor offset is a frame boundary at or before validEnd
	offsetRecords  int64 // records ending at or before the cursor offset
	offsetEntries  int64
	offsetTS       int64 // timestamp of the record starting at the cursor offset
	offsetBeyondOK bool  // the cursor offset is beyond validEnd
}

// givenUp reports whether the segment was prepared ahead and never taken
// by the writer: its header flagged headerPrepared, zeros after it.
func (r *scanResult) givenUp() bool {
	return r.prepared && r.records == 0 && (r.damage == damageNone || r.damage == damageZero)
}

// scanSegment reads a whole segment of size bytes from r and validates its
// header and frames. It never allocates a record-sized buffer: payloads are
// checksummed through the buffered reader. cursorOff, when >= headerSize,
// is looked up as a frame boundary.
func scanSegment(r io.Reader, size int64, num uint64, maxRecord int64, cursorOff int64, br *bufio.Reader) scanResult {
	var res scanResult
	br.Reset(r)
	var hdr [headerSize]byte
	n, err := io.ReadFull(br, hdr[:])
	if err != nil {
		res.damage, res.reason = damageTorn, fmt.Sprintf("header: %d of %d bytes", n, headerSize)
		return res
	}
	if err := checkHeader(hdr[:], num); err != nil {
		res.damage, res.reason = damageCorrupt, err.Error()
		if allZero(hdr[:]) && restZero(br) {
			res.damage, res.reason = damageZero, "zero bytes only"
		}
		return res
	}
	res.headerOK = true
	res.prepared = hdr[5]&headerPrepared != 0
	off := int64(headerSize)
	res.validEnd = off
	var fh [frameHeaderSize]byte
	lookup := func() {
		if cursorOff == off {
			res.atOffset = true
			res.offsetRecords, res.offsetEntries = res.records, res.entries
		}
	}
	for {
		lookup()
		if off == size {
			break
		}
		rest := size - off
		k, err := io.ReadFull(br, fh[:])
		if err != nil {
			// A short read where the stat said there were bytes: the file
			// shrank or the device failed; either way the frame is torn.
			res.damage, res.reason = damageTorn, fmt.Sprintf("frame at %d: %d of %d header bytes", off, k, frameHeaderSize)
			if allZero(fh[:k]) && restZero(br) {
				res.damage = damageZero
			}
			break
		}
		if int64(frameHeaderSize) > rest {
			res.damage, res.reason = damageTorn, fmt.Sprintf("frame at %d: %d of %d header bytes", off, rest, frameHeaderSize)
			break
		}
		h := parseFrameHeader(fh[:])
		if h.length == 0 && h.crc == 0 && h.entries == 0 && h.ts == 0 && restZero(br) {
			res.damage, res.reason = damageZero, fmt.Sprintf("frame at %d: zero bytes to the end", off)
			break
		}
		if int64(h.length) > maxRecord {
			res.damage, res.reason = damageCorrupt, fmt.Sprintf("frame at %d: length %d over the limit %d", off, h.length, maxRecord)
			break
		}
		if int64(h.length) > rest-frameHeaderSize {
			res.damage, res.reason = damageTorn, fmt.Sprintf("frame at %d: length %d, %d bytes left", off, h.length, rest-frameHeaderSize)
			break
		}
		crc := partialCRC(fh[:])
		left := int(h.length)
		short := false
		for left > 0 {
			chunk, err := br.Peek(min(left, br.Size()))
			if len(chunk) == 0 && err != nil {
				short = true
				break
			}
			crc = crc32.Update(crc, castagnoli, chunk)
			br.Discard(len(chunk))
			left -= len(chunk)
		}
		if short {
			res.damage, res.reason = damageTorn, fmt.Sprintf("frame at %d: payload cut short", off)
			break
		}
		if crc != h.crc {
			res.damage, res.reason = damageCorrupt, fmt.Sprintf("frame at %d: checksum %08x, want %08x", off, h.crc, crc)
			break
		}
		if res.records == 0 {
			res.firstTS = h.ts
		}
		if cursorOff == off {
			res.offsetTS = h.ts
		}
		res.records++
		res.entries += int64(h.entries)
		off += frameHeaderSize + int64(h.length)
		res.validEnd = off
	}
	if cursorOff > res.validEnd {
		res.offsetBeyondOK = true
	}
	return res
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// restZero reports whether everything left in br is zero bytes.
func restZero(br *bufio.Reader) bool {
	for {
		chunk, err := br.Peek(br.Size())
		if !allZero(chunk) {
			return false
		}
		br.Discard(len(chunk))
		if err != nil {
			return true
		}
	}
}

// readFrame reads the frame at off of a segment whose valid data ends at
// end. It checks the length against maxRecord and end before allocating the
// payload, and the checksum after.
func readFrame(r io.ReaderAt, off, end, maxRecord int64) (frameHeader, []byte, error) {
	var fh [frameHeaderSize]byte
	corrupt := func(format string, a ...any) error {
		return &CorruptionError{Offset: off, Reason: fmt.Sprintf(format, a...)}
	}
	if end-off < frameHeaderSize {
		return frameHeader{}, nil, corrupt("%d bytes left for a %d-byte frame header", end-off, frameHeaderSize)
	}
	if _, err := r.ReadAt(fh[:], off); err != nil {
		if errors.Is(err, io.EOF) {
			return frameHeader{}, nil, corrupt("file cut short: %v", err)
		}
		return frameHeader{}, nil, errorf("read frame header at %d: %w", off, err)
	}
	h := parseFrameHeader(fh[:])
	if int64(h.length) > maxRecord {
		return h, nil, corrupt("length %d over the limit %d", h.length, maxRecord)
	}
	if int64(h.length) > end-off-frameHeaderSize {
		return h, nil, corrupt("length %d, %d bytes left", h.length, end-off-frameHeaderSize)
	}
	p := make([]byte, h.length)
	if _, err := r.ReadAt(p, off+frameHeaderSize); err != nil && len(p) > 0 {
		if errors.Is(err, io.EOF) {
			return h, nil, corrupt("file cut short: %v", err)
		}
		return h, nil, errorf("read frame payload at %d: %w", off, err)
	}
	if crc := crc32.Update(partialCRC(fh[:]), castagnoli, p); crc != h.crc {
		return h, nil, corrupt("checksum %08x, want %08x", h.crc, crc)
	}
	return h, p, nil
}
