package spool

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The corruption table works on 3 segments of 3 records each: payloads of
// 50 bytes make 70-byte frames, so a segment is 32 + 3*70 = 242 bytes and
// frame k of a segment starts at 32 + 70k. Segment 1 holds records 0-2,
// segment 2 (the "middle") 3-5, segment 3 (the "newest") 6-8.
const (
	cSegSize = 242
	cFrame1  = headerSize + 70
	cMaxRec  = 1000
	cPayload = 50
	cRecords = 9
	cMiddle  = 2 // the second segment (its number may be higher: segNums)
	cNewest  = 3
)

func corruptOpts(dir string) Options {
	return Options{Dir: dir, SegmentSize: cSegSize, MaxRecordSize: cMaxRec, Sync: SyncNever}
}

type recovered struct {
	ids            []int
	corrupt        int
	corruptBytes   int64
	truncatedBytes int64
}

// without returns 0..8 without the given ids.
func without(drop ...int) []int {
	var out []int
	for i := range cRecords {
		if !slices.Contains(drop, i) {
			out = append(out, i)
		}
	}
	return out
}

func TestCorruptionTable(t *testing.T) {
	setFrame1Len := func(n uint32) func([]byte) []byte {
		return func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[cFrame1:], n)
			return b
		}
	}
	tests := map[string]struct {
		mutate         func(b []byte) []byte
		newest, middle recovered
	}{
		"torn tail": {
			mutate: func(b []byte) []byte { return b[:len(b)-10] },
			newest: recovered{ids: without(8), truncatedBytes: 60},
			middle: recovered{ids: without(5), corrupt: 1, corruptBytes: 60},
		},
		"bad crc": {
			mutate: func(b []byte) []byte { b[cFrame1+frameHeaderSize+5] ^= 0xff; return b },
			newest: recovered{ids: without(7, 8), truncatedBytes: 140},
			middle: recovered{ids: without(4, 5), corrupt: 1, corruptBytes: 140},
		},
		"bad crc in the first frame": {
			mutate: func(b []byte) []byte { b[headerSize+frameHeaderSize] ^= 0xff; return b },
			newest: recovered{ids: without(6, 7, 8), truncatedBytes: cSegSize - headerSize},
			middle: recovered{ids: without(3, 4, 5), corrupt: 1, corruptBytes: cSegSize - headerSize},
		},
		"bad crc field": {
			mutate: func(b []byte) []byte { b[cFrame1+4] ^= 0x01; return b },
			newest: recovered{ids: without(7, 8), truncatedBytes: 140},
			middle: recovered{ids: without(4, 5), corrupt: 1, corruptBytes: 140},
		},
		"bad length": {
			mutate: setFrame1Len(cPayload - 1),
			newest: recovered{ids: without(7, 8), truncatedBytes: 140},
			middle: recovered{ids: without(4, 5), corrupt: 1, corruptBytes: 140},
		},
		"length past the end": {
			mutate: setFrame1Len(cMaxRec),
			newest: recovered{ids: without(7, 8), truncatedBytes: 140},
			middle: recovered{ids: without(4, 5), corrupt: 1, corruptBytes: 140},
		},
		"oversize length": {
			mutate: setFrame1Len(0xffffff00),
			newest: recovered{ids: without(7, 8), truncatedBytes: 140},
			middle: recovered{ids: without(4, 5), corrupt: 1, corruptBytes: 140},
		},
		"bad header": {
			mutate: func(b []byte) []byte { b[0] ^= 0xff; return b },
			newest: recovered{ids: without(6, 7, 8), corrupt: 1, corruptBytes: cSegSize},
			middle: recovered{ids: without(3, 4, 5), corrupt: 1, corruptBytes: cSegSize},
		},
		"wrong segment number": {
			mutate: func(b []byte) []byte { putHeader(b, 77, 0, 0); return b },
			newest: recovered{ids: without(6, 7, 8), corrupt: 1, corruptBytes: cSegSize},
			middle: recovered{ids: without(3, 4, 5), corrupt: 1, corruptBytes: cSegSize},
		},
		"zeroed header": {
			mutate: func(b []byte) []byte { clear(b[:headerSize]); return b },
			newest: recovered{ids: without(6, 7, 8), corrupt: 1, corruptBytes: cSegSize},
			middle: recovered{ids: without(3, 4, 5), corrupt: 1, corruptBytes: cSegSize},
		},
		"zeroed bytes": {
			mutate: func(b []byte) []byte { clear(b[cFrame1:]); return b },
			newest: recovered{ids: without(7, 8), truncatedBytes: 140},
			middle: recovered{ids: without(4, 5), corrupt: 1, corruptBytes: 140},
		},
		"zeroed file": {
			mutate: func(b []byte) []byte { clear(b); return b },
			newest: recovered{ids: without(6, 7, 8), truncatedBytes: cSegSize},
			middle: recovered{ids: without(3, 4, 5), corrupt: 1, corruptBytes: cSegSize},
		},
		"zero tail": { // preallocated space after the last frame
			mutate: func(b []byte) []byte { return append(b, make([]byte, 100)...) },
			newest: recovered{ids: without(), truncatedBytes: 100},
			middle: recovered{ids: without(), corrupt: 1, corruptBytes: 100},
		},
		"garbage tail": {
			mutate: func(b []byte) []byte { return append(b, bytes.Repeat([]byte{0xab}, 7)...) },
			newest: recovered{ids: without(), truncatedBytes: 7},
			middle: recovered{ids: without(), corrupt: 1, corruptBytes: 7},
		},
		"truncated header": {
			mutate: func(b []byte) []byte { return b[:20] },
			newest: recovered{ids: without(6, 7, 8), truncatedBytes: 20},
			middle: recovered{ids: without(3, 4, 5), corrupt: 1, corruptBytes: 20},
		},
		"header only": {
			mutate: func(b []byte) []byte { return b[:headerSize] },
			newest: recovered{ids: without(6, 7, 8)},
			middle: recovered{ids: without(3, 4, 5)},
		},
		"empty file": {
			mutate: func(b []byte) []byte { return b[:0] },
			newest: recovered{ids: without(6, 7, 8)},
			middle: recovered{ids: without(3, 4, 5), corrupt: 1},
		},
	}
	for name, tc := range tests {
		for _, where := range []struct {
			name string
			seg  uint64
			want recovered
		}{{"newest", cNewest, tc.newest}, {"middle", cMiddle, tc.middle}} {
			t.Run(name+"/"+where.name, func(t *testing.T) {
				dir := t.TempDir()
				s := openT(t, corruptOpts(dir))
				appendN(t, s, 0, cRecords, cPayload)
				if st := s.Stats(); st.Segments != 3 || st.Bytes != 3*cSegSize {
					t.Fatalf("layout: %+v", st)
				}
				nums := segNums(s)
				s.Close()

				path := filepath.Join(dir, segmentName(nums[where.seg-1]))
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				mutated := tc.mutate(b)
				if err := os.WriteFile(path, mutated, 0o600); err != nil {
					t.Fatal(err)
				}

				s2 := openT(t, corruptOpts(dir))
				st := s2.Stats()
				got := ids(t, drain(t, s2))
				if !equalInts(got, where.want.ids) {
					t.Errorf("recovered %v, want %v", got, where.want.ids)
				}
				if st.CorruptSegments != where.want.corrupt || st.CorruptBytes != where.want.corruptBytes || st.TruncatedBytes != where.want.truncatedBytes {
					t.Errorf("corrupt %d (%d bytes), truncated %d bytes; want %d (%d), %d",
						st.CorruptSegments, st.CorruptBytes, st.TruncatedBytes,
						where.want.corrupt, where.want.corruptBytes, where.want.truncatedBytes)
				}
				if st.RecoveredRecords != int64(len(where.want.ids)) {
					t.Errorf("RecoveredRecords = %d, want %d", st.RecoveredRecords, len(where.want.ids))
				}
				aside, err := os.ReadFile(path + corruptSuffix)
				if where.want.corrupt > 0 {
					if err != nil {
						t.Errorf("no set-aside copy: %v", err)
					} else if !bytes.Equal(aside, mutated) {
						t.Errorf("set-aside copy differs from the damaged file")
					}
				} else if err == nil {
					t.Errorf("unexpected %s", path+corruptSuffix)
				}

				// The spool works on, and a second Open finds nothing wrong.
				appendN(t, s2, 100, 2, cPayload)
				if got := ids(t, drain(t, s2)); !equalInts(got, []int{100, 101}) {
					t.Errorf("after recovery: %v", got)
				}
				s2.Close()
				s3 := openT(t, corruptOpts(dir))
				st3 := s3.Stats()
				if st3.CorruptSegments != 0 || st3.TruncatedBytes != 0 || st3.RecoveredRecords != int64(len(where.want.ids))+2 {
					t.Errorf("second recovery: %+v", st3)
				}
			})
		}
	}
}
