package spool

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// segmentBytes builds segment num holding the given payloads.
func segmentBytes(num uint64, payloads ...[]byte) []byte {
	b := make([]byte, headerSize)
	putHeader(b, num, 42, 0)
	for i, p := range payloads {
		f := make([]byte, frameHeaderSize+len(p))
		copy(f[frameHeaderSize:], p)
		putFrameHeader(f, uint32(i+1), int64(i))
		b = append(b, f...)
	}
	return b
}

// sizeReaderAt is a ReaderAt that remembers the largest read asked of it.
type sizeReaderAt struct {
	r       *bytes.Reader
	largest int
}

func (s *sizeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	s.largest = max(s.largest, len(p))
	return s.r.ReadAt(p, off)
}

const fuzzMaxRecord = 256

func FuzzSegmentReader(f *testing.F) {
	valid := segmentBytes(1, []byte("hello"), bytes.Repeat([]byte("x"), 100), nil)
	f.Add(valid)
	f.Add(valid[:len(valid)-3])                            // torn tail
	f.Add(append(bytes.Clone(valid), make([]byte, 64)...)) // zero tail
	f.Add(valid[:20])                                      // torn header
	bad := bytes.Clone(valid)
	bad[headerSize+frameHeaderSize] ^= 1 // bad checksum
	f.Add(bad)
	big := bytes.Clone(valid)
	big[headerSize+3] = 0x7f // length far over the limit
	f.Add(big)
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(nil, 4096)
		res := scanSegment(bytes.NewReader(data), int64(len(data)), 1, fuzzMaxRecord, headerSize, br)
		if res.validEnd > int64(len(data)) || res.validEnd < 0 {
			t.Fatalf("validEnd %d outside [0, %d]", res.validEnd, len(data))
		}
		if res.headerOK != (res.validEnd >= headerSize) {
			t.Fatalf("headerOK %v with validEnd %d", res.headerOK, res.validEnd)
		}
		if (res.damage == damageNone) != (res.headerOK && res.validEnd == int64(len(data))) {
			t.Fatalf("damage %v with validEnd %d of %d", res.damage, res.validEnd, len(data))
		}
		if !res.headerOK {
			return
		}
		// Reading frame by frame agrees with the scan and never asks for
		// more than a frame header or the record limit.
		ra := &sizeReaderAt{r: bytes.NewReader(data)}
		off, n := int64(headerSize), int64(0)
		for off < res.validEnd {
			h, p, err := readFrame(ra, off, res.validEnd, fuzzMaxRecord)
			if err != nil {
				t.Fatalf("frame at %d, which the scan accepted: %v", off, err)
			}
			if len(p) > fuzzMaxRecord || int(h.length) != len(p) {
				t.Fatalf("payload of %d bytes", len(p))
			}
			off += frameHeaderSize + int64(len(p))
			n++
		}
		if n != res.records || off != res.validEnd {
			t.Fatalf("read %d records to %d, scan found %d to %d", n, off, res.records, res.validEnd)
		}
		if res.damage != damageNone {
			_, _, err := readFrame(ra, res.validEnd, int64(len(data)), fuzzMaxRecord)
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("frame at %d: scan found %v damage, readFrame: %v", res.validEnd, res.damage, err)
			}
		}
		if ra.largest > max(fuzzMaxRecord, frameHeaderSize) {
			t.Fatalf("read of %d bytes, limit %d", ra.largest, fuzzMaxRecord)
		}

		// The read-ahead reader agrees with readFrame, whatever the block
		// size, and never reads more than a block or a frame at once.
		for _, size := range []int{1, 64, 1000} {
			ra := &sizeReaderAt{r: bytes.NewReader(data)}
			rd := readAhead{size: size}
			off := int64(headerSize)
			for off < res.validEnd {
				h, p, err := rd.frame(ra, 1, off, res.validEnd, fuzzMaxRecord)
				wh, wp, werr := readFrame(bytes.NewReader(data), off, res.validEnd, fuzzMaxRecord)
				if err != nil || werr != nil || h != wh || !bytes.Equal(p, wp) {
					t.Fatalf("block %d, frame at %d: %+v %q %v; readFrame: %+v %q %v", size, off, h, p, err, wh, wp, werr)
				}
				off += frameHeaderSize + int64(len(p))
			}
			if res.damage != damageNone {
				_, _, err := rd.frame(ra, 1, res.validEnd, int64(len(data)), fuzzMaxRecord)
				_, _, werr := readFrame(bytes.NewReader(data), res.validEnd, int64(len(data)), fuzzMaxRecord)
				var ce *CorruptionError
				if !errors.As(err, &ce) || werr == nil || err.Error() != werr.Error() {
					t.Fatalf("block %d, damaged frame at %d: %v; readFrame: %v", size, res.validEnd, err, werr)
				}
			}
			if ra.largest > max(size, fuzzMaxRecord+frameHeaderSize) {
				t.Fatalf("block %d: read of %d bytes", size, ra.largest)
			}
		}

		// Recovery of the same bytes as a file, newest or middle segment,
		// never fails and delivers the valid records.
		for _, middle := range []bool{false, true} {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, segmentName(1)), data, 0o600)
			if middle {
				os.WriteFile(filepath.Join(dir, segmentName(2)), segmentBytes(2, []byte("next")), 0o600)
			}
			s, err := Open(Options{Dir: dir, MaxRecordSize: fuzzMaxRecord, Sync: SyncNever})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			got := drain(t, s)
			s.Close()
			want := int(res.records)
			if middle {
				want++
			}
			if len(got) != want {
				t.Fatalf("middle=%v: recovered %d records, want %d", middle, len(got), want)
			}
		}
	})
}
