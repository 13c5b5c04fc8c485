package spool

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// readBlockSize is the size of the reader's read-ahead block: one ReadAt
// serves the frames of about a thousand small records.
const readBlockSize = 256 << 10

// maxKeptBlock is the largest read-ahead block kept once a larger record
// (which gets a block of its own size) has been read.
const maxKeptBlock = 2 << 20

// readAhead serves the frames of segment files from one reused block read
// with one ReadAt. The block only ever holds valid data: it is read up to
// the segment's size at the time of the read, never past it, and a
// segment's valid bytes do not change while the Spool is open (segment
// files are append-only, a failed write is cut back to the valid size, and
// numbers are never reused). Bytes appended after the block was read lie
// after its end, so the next frame that needs them reads a new block.
//
// Only readAhead.frame writes into the block, so a payload it returned
// stays intact until the next call of frame.
type readAhead struct {
	blk  []byte // bytes [off, off+len(blk)) of segment num; empty: no block
	num  uint64
	off  int64
	size int // capacity of a normal block
}

func newReadAhead(segmentSize int64) readAhead {
	return readAhead{size: int(min(readBlockSize, segmentSize))}
}

// drop forgets the block's contents (its memory is kept).
func (r *readAhead) drop() { r.blk = r.blk[:0] }

// frame returns the header and payload of the frame at off of segment num,
// read through f, whose valid data ends at end. Like [readFrame], it checks
// the length against maxRecord and end before reading or allocating for
// the payload, and the checksum after, returning a *CorruptionError
// (Segment unset) for a bad frame and any other error for an I/O failure.
// The payload aliases the block: it is valid until the next call of frame.
// With a nil f, a frame the block does not hold whole is errNotCached.
func (r *readAhead) frame(f io.ReaderAt, num uint64, off, end, maxRecord int64) (frameHeader, []byte, error) {
	corrupt := func(format string, a ...any) error {
		return &CorruptionError{Offset: off, Reason: fmt.Sprintf(format, a...)}
	}
	if end-off < frameHeaderSize {
		return frameHeader{}, nil, corrupt("%d bytes left for a %d-byte frame header", end-off, frameHeaderSize)
	}
	fh, err := r.window(f, num, off, frameHeaderSize, end)
	if err != nil {
		return frameHeader{}, nil, err
	}
	h := parseFrameHeader(fh)
	if int64(h.length) > maxRecord {
		return h, nil, corrupt("length %d over the limit %d", h.length, maxRecord)
	}
	if int64(h.length) > end-off-frameHeaderSize {
		return h, nil, corrupt("length %d, %d bytes left", h.length, end-off-frameHeaderSize)
	}
	n := frameHeaderSize + int64(h.length)
	if n > math.MaxInt {
		return h, nil, corrupt("frame of %d bytes is too large for this platform", n)
	}
	b, err := r.window(f, num, off, n, end)
	if err != nil {
		return h, nil, err
	}
	p := b[frameHeaderSize:]
	// The checksum covers the length and, contiguous in b, the rest of the
	// header and the payload.
	if crc := crc32.Update(crc32.Update(0, castagnoli, b[0:4]), castagnoli, b[8:]); crc != h.crc {
		return h, nil, corrupt("checksum %08x, want %08x", h.crc, crc)
	}
	return h, p, nil
}

// errNotCached is frame's answer, with a nil reader, for bytes the block
// does not hold, and nextLocked's for a record over its limit.
var errNotCached = errors.New("spool: frame not in the read-ahead block")

// window returns bytes [off, off+n) of segment num, from the block when it
// holds them, else from a new block read at off: up to the normal block
// size (or n when larger), never past end. off+n must not exceed end. With
// a nil f it reads nothing and returns errNotCached instead.
func (r *readAhead) window(f io.ReaderAt, num uint64, off, n, end int64) ([]byte, error) {
	if len(r.blk) > 0 && r.num == num && off >= r.off && off+n <= r.off+int64(len(r.blk)) {
		i := off - r.off
		return r.blk[i : i+n : i+n], nil
	}
	if f == nil {
		return nil, errNotCached
	}
	size := min(max(n, int64(r.size)), end-off) // >= n, <= MaxInt (n is)
	if int64(cap(r.blk)) < size || cap(r.blk) > max(r.size, maxKeptBlock) && size <= int64(r.size) {
		r.blk = make([]byte, max(size, int64(r.size)))
	}
	buf := r.blk[:size]
	k, err := f.ReadAt(buf, off)
	if int64(k) < n {
		r.blk = r.blk[:0]
		what := "frame header"
		if n > frameHeaderSize {
			what = "frame payload"
		}
		if err == nil {
			err = io.ErrUnexpectedEOF // a ReaderAt breaking its contract
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &CorruptionError{Offset: off, Reason: fmt.Sprintf("file cut short: %v", err)}
		}
		return nil, errorf("read %s at %d: %w", what, off, err)
	}
	// A short read past the frame (the file is shorter than its valid
	// size says, or failed further on) keeps what was read; the frame that
	// needs the rest meets the failure.
	r.blk, r.num, r.off = buf[:k], num, off
	return r.blk[:n:n], nil
}
