package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// nextFunc is Next or NextView.
type nextFunc func(*Spool) (Record, error)

var nextFuncs = map[string]nextFunc{
	"Next":     (*Spool).Next,
	"NextView": (*Spool).NextView,
}

// TestNextReadsInBlocks checks that small records are served from blocks:
// a few ReadAt calls for thousands of records.
func TestNextReadsInBlocks(t *testing.T) {
	for name, next := range nextFuncs {
		t.Run(name, func(t *testing.T) {
			ffs := &faultFS{}
			s := openT(t, Options{FS: ffs, Sync: SyncNever})
			const n, size = 3000, 200
			appendN(t, s, 0, n, size)
			before := ffs.readAts.Load()
			for i := range n {
				r, err := next(s)
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
				if !bytes.Equal(r.Payload, payload(i, size)) || r.Entries != i%5+1 || r.Timestamp != int64(1000+i) {
					t.Fatalf("record %d: %q entries %d ts %d", i, r.Payload, r.Entries, r.Timestamp)
				}
			}
			if _, err := next(s); !errors.Is(err, ErrEmpty) {
				t.Fatalf("after %d records: %v", n, err)
			}
			// A block holds readBlockSize/(frameHeaderSize+size) whole frames.
			perBlock := readBlockSize / (frameHeaderSize + size)
			want := int64((n + perBlock - 1) / perBlock)
			if got := ffs.readAts.Load() - before; got != want {
				t.Fatalf("%d records of %d bytes took %d ReadAt calls, want %d", n, size, got, want)
			}
		})
	}
}

// TestNextInterleaved appends and reads records of random sizes in random
// steps, so blocks end mid-frame and before records appended later, with
// and without segment rolls, and checks every byte.
func TestNextInterleaved(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		for _, segSize := range []int64{0, 64 << 10} {
			for name, next := range nextFuncs {
				t.Run(name+"/segment "+map[bool]string{true: "default", false: "64KiB"}[segSize == 0], func(t *testing.T) {
					rng := rand.New(rand.NewPCG(1, uint64(segSize)))
					s := openT(t, Options{NoMmap: noMmap, SegmentSize: segSize, MaxRecordSize: 40 << 10, Sync: SyncNever})
					var want [][]byte
					read := 0
					const total = 1500 // about 500 KiB: blocks of 256 KiB end mid-frame
					for len(want) < total || read < len(want) {
						if len(want) < total {
							for range rng.IntN(20) {
								size := 12 + rng.IntN(300)
								if rng.IntN(50) == 0 {
									size = 12 + rng.IntN(40<<10)
								}
								p := fmt.Appendf(nil, "rec-%06d;", len(want))
								p = append(p, bytes.Repeat([]byte{byte(rng.Uint())}, size-len(p))...)
								if err := s.Append(p, 1, int64(len(want))); err != nil {
									t.Fatal(err)
								}
								want = append(want, p)
							}
						}
						for range rng.IntN(25) {
							r, err := next(s)
							if read == len(want) {
								if !errors.Is(err, ErrEmpty) {
									t.Fatalf("after %d records: %v", read, err)
								}
								break
							}
							if err != nil {
								t.Fatalf("record %d: %v", read, err)
							}
							if !bytes.Equal(r.Payload, want[read]) || r.Timestamp != int64(read) {
								t.Fatalf("record %d: %d bytes %.20q, want %d bytes %.20q", read, len(r.Payload), r.Payload, len(want[read]), want[read])
							}
							read++
							if read%100 == 0 {
								if err := s.Ack(r.Pos); err != nil {
									t.Fatal(err)
								}
							}
						}
					}
					if cap(s.ra.blk) > max(readBlockSize, 40<<10+frameHeaderSize) {
						t.Fatalf("block of %d bytes", cap(s.ra.blk))
					}
				})
			}
		}
	})
}

// TestNextLargeRecord checks a record larger than a block: it gets a block
// of its own size, which is not kept afterwards when over maxKeptBlock.
func TestNextLargeRecord(t *testing.T) {
	for name, next := range nextFuncs {
		t.Run(name, func(t *testing.T) {
			const big = maxKeptBlock + 1<<20
			s := openT(t, Options{MaxRecordSize: 4 << 20, Sync: SyncNever})
			sizes := []int{100, big, 100, 100, readBlockSize + 1, 100}
			for i, n := range sizes {
				if err := s.Append(payload(i, n), 1, 0); err != nil {
					t.Fatal(err)
				}
			}
			for i, n := range sizes {
				r, err := next(s)
				if err != nil || !bytes.Equal(r.Payload, payload(i, n)) {
					t.Fatalf("record %d: %d bytes, %v", i, len(r.Payload), err)
				}
				if c := cap(s.ra.blk); n < big && c > maxKeptBlock {
					t.Fatalf("record %d of %d bytes: kept a block of %d bytes", i, n, c)
				}
			}
			appendN(t, s, 100, 2, 100)
			if got := ids(t, drainWith(t, s, next)); !equalInts(got, []int{100, 101}) {
				t.Fatalf("after the large records: %v", got)
			}
			if c := cap(s.ra.blk); c > maxKeptBlock {
				t.Fatalf("kept a block of %d bytes", c)
			}
		})
	}
}

func drainWith(t testing.TB, s *Spool, next nextFunc) []Record {
	t.Helper()
	var out []Record
	for {
		r, err := next(s)
		if errors.Is(err, ErrEmpty) {
			return out
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		// Copy: a view is only valid until the next call.
		r.Payload = bytes.Clone(r.Payload)
		out = append(out, r)
	}
}

// TestNextPayloadOwnership checks that Next's payload survives later reads
// while NextView's aliases the block.
func TestNextPayloadOwnership(t *testing.T) {
	s := openT(t, Options{Sync: SyncNever})
	appendN(t, s, 0, 3, 50)
	r0, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	r1, err := s.NextView()
	if err != nil {
		t.Fatal(err)
	}
	if &r1.Payload[0] != &s.ra.blk[r1.Pos.Offset-s.ra.off+frameHeaderSize] {
		t.Fatal("NextView's payload is not in the block")
	}
	if &r0.Payload[0] == &s.ra.blk[r0.Pos.Offset-s.ra.off+frameHeaderSize] {
		t.Fatal("Next's payload is in the block")
	}
	if cap(r1.Payload) != len(r1.Payload) {
		t.Fatalf("view has capacity %d past its %d bytes: an append would write into the block", cap(r1.Payload), len(r1.Payload))
	}
	r0.Payload[0] = 'X' // belongs to the caller
	if r2, err := s.Next(); err != nil || recID(t, r2.Payload) != 2 {
		t.Fatalf("record 2: %v", err)
	}
	if err := s.Rewind(); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, drain(t, s)); !equalInts(got, []int{0, 1, 2}) {
		t.Fatalf("after Rewind: %v (a caller's write reached the block?)", got)
	}
}

func TestNextViewDoesNotAllocate(t *testing.T) {
	s := openT(t, Options{Sync: SyncNever})
	appendN(t, s, 0, 3000, 200)
	s.NextView() // reads the first block
	allocs := testing.AllocsPerRun(2000, func() {
		if _, err := s.NextView(); err != nil {
			t.Fatal(err)
		}
	})
	// The in-flight list grows by doubling: a few allocations per thousand.
	if allocs != 0 {
		t.Fatalf("NextView allocates %v times per record", allocs)
	}
}

// TestNextFileCutShort checks a segment truncated under the spool: the
// records before the cut are delivered, the rest of the segment is
// counted as corrupt, and the spool goes on.
func TestNextFileCutShort(t *testing.T) {
	for name, next := range nextFuncs {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var mu sync.Mutex
			var reported []error
			s := openT(t, Options{Dir: dir, Sync: SyncNever, ErrorHandler: func(err error) {
				mu.Lock()
				reported = append(reported, err)
				mu.Unlock()
			}})
			appendN(t, s, 0, 5, 50) // frames of 70 bytes
			if err := os.Truncate(filepath.Join(dir, segmentName(1)), headerSize+2*70+30); err != nil {
				t.Fatal(err)
			}
			if got := ids(t, drainWith(t, s, next)); !equalInts(got, []int{0, 1}) {
				t.Fatalf("read %v, want 0 1", got)
			}
			if st := s.Stats(); st.DroppedCorruptRecords != 3 || st.DroppedCorruptEntries != 3+4+5 || st.Records != 2 {
				t.Fatalf("stats: %+v", st)
			}
			mu.Lock()
			var ce *CorruptionError
			if len(reported) != 1 || !errors.As(reported[0], &ce) || ce.Segment != 1 || ce.Offset != headerSize+2*70 || !strings.Contains(ce.Reason, "cut short") {
				t.Fatalf("reported %v", reported)
			}
			mu.Unlock()
			appendN(t, s, 10, 2, 50)
			if got := ids(t, drainWith(t, s, next)); !equalInts(got, []int{10, 11}) {
				t.Fatalf("after the damage: %v", got)
			}
		})
	}
}

// TestNextReadFault checks that a failed read consumes nothing, when it
// reads the first block and when it reads a later one.
func TestNextReadFault(t *testing.T) {
	for name, next := range nextFuncs {
		t.Run(name, func(t *testing.T) {
			ffs := &faultFS{}
			s := openT(t, Options{FS: ffs, Sync: SyncNever})
			appendN(t, s, 0, 2, 40)
			ffs.set(false, failOn(syscall.EIO, segmentSuffix, "readat"))
			var ce *CorruptionError
			if _, err := next(s); !errors.Is(err, syscall.EIO) || errors.As(err, &ce) {
				t.Fatalf("first read = %v, want EIO", err)
			}
			if st := s.Stats(); st.Unread != 2 || st.DroppedCorruptRecords != 0 {
				t.Fatalf("stats after a failed read: %+v", st)
			}
			ffs.set(false, nil)
			if r, err := next(s); err != nil || recID(t, r.Payload) != 0 {
				t.Fatalf("record 0: %v", err)
			}
			appendN(t, s, 2, 1, 40) // after the block's end
			ffs.set(false, failOn(syscall.EIO, segmentSuffix, "readat"))
			if r, err := next(s); err != nil || recID(t, r.Payload) != 1 {
				t.Fatalf("record 1, from the block: %v", err)
			}
			if _, err := next(s); !errors.Is(err, syscall.EIO) {
				t.Fatalf("record 2, from the disk = %v, want EIO", err)
			}
			ffs.set(false, nil)
			if got := ids(t, drainWith(t, s, next)); !equalInts(got, []int{2}) {
				t.Fatalf("after the fault: %v", got)
			}
		})
	}
}

// TestNextCorruptionInBlocks damages frames read from blocks after Open:
// a payload in a later block, and a length that points past the block.
func TestNextCorruptionInBlocks(t *testing.T) {
	const n, size, frame = 2000, 200, frameHeaderSize + 200
	const late = readBlockSize/frame + 10 // a record in the second block
	tests := map[string]struct {
		record int
		mutate func(b []byte)
	}{
		"payload in the second block": {late, func(b []byte) { b[frameHeaderSize+7] ^= 1 }},
		"length past the block":       {1, func(b []byte) { binary.LittleEndian.PutUint32(b, readBlockSize+5) }},
		"length over the limit":       {late, func(b []byte) { binary.LittleEndian.PutUint32(b, 1<<20+1) }},
		"zeroed frame":                {late, func(b []byte) { clear(b[:frame]) }},
	}
	for name, tc := range tests {
		for vname, next := range nextFuncs {
			t.Run(name+"/"+vname, func(t *testing.T) {
				dir := t.TempDir()
				var mu sync.Mutex
				var reported []error
				s := openT(t, Options{Dir: dir, MaxRecordSize: 1 << 20, Sync: SyncNever, ErrorHandler: func(err error) {
					mu.Lock()
					reported = append(reported, err)
					mu.Unlock()
				}})
				appendN(t, s, 0, n, size)
				f, err := os.OpenFile(filepath.Join(dir, segmentName(1)), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				off := int64(headerSize + tc.record*frame)
				b := make([]byte, frame)
				f.ReadAt(b, off)
				tc.mutate(b)
				f.WriteAt(b, off)
				f.Close()

				got := ids(t, drainWith(t, s, next))
				if !equalInts(got, seq(0, tc.record)) {
					t.Fatalf("read %d records, want 0..%d", len(got), tc.record-1)
				}
				if st := s.Stats(); st.DroppedCorruptRecords != uint64(n-tc.record) {
					t.Fatalf("DroppedCorruptRecords = %d, want %d", st.DroppedCorruptRecords, n-tc.record)
				}
				mu.Lock()
				var ce *CorruptionError
				if len(reported) != 1 || !errors.As(reported[0], &ce) || ce.Offset != off {
					t.Fatalf("reported %v, want a corruption at %d", reported, off)
				}
				mu.Unlock()
			})
		}
	}
}

// TestConcurrentAppendNextView reads views while appends continue, roll
// segments and, with a small MaxBytes, delete the segment being read: a
// view stays intact until the next read (checked byte by byte, and by the
// race detector).
func TestConcurrentAppendNextView(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		const writers, each, size = 3, 500, 60
		for name, o := range map[string]Options{
			"no drops": {SegmentSize: 8 << 10, Sync: SyncNever},
			"drops":    {SegmentSize: 1024, MaxBytes: 4096, Sync: SyncNever},
		} {
			t.Run(name, func(t *testing.T) {
				o.NoMmap = noMmap
				s := openT(t, o)
				var wg sync.WaitGroup
				for w := range writers {
					wg.Go(func() {
						for i := range each {
							if err := s.Append(payload(w*each+i, size), 1, 0); err != nil {
								t.Errorf("Append: %v", err)
								return
							}
							if i%50 == 0 {
								runtime.Gosched()
							}
						}
					})
				}
				done := make(chan struct{})
				go func() { wg.Wait(); close(done) }()
				seen := map[int]bool{}
				n := 0
				for {
					r, err := s.NextView()
					if errors.Is(err, ErrEmpty) {
						select {
						case <-done:
							if r, err = s.NextView(); errors.Is(err, ErrEmpty) {
								goto end
							}
						default:
							runtime.Gosched()
							continue
						}
					}
					if err != nil {
						t.Fatalf("NextView: %v", err)
					}
					runtime.Gosched() // let appends (and drops) run while the view is held
					id := recID(t, r.Payload)
					if !bytes.Equal(r.Payload, payload(id, size)) {
						t.Fatalf("record %d: view changed: %q", id, r.Payload)
					}
					if seen[id] {
						t.Fatalf("record %d twice", id)
					}
					seen[id] = true
					if n++; n%7 == 0 {
						if err := s.Ack(r.Pos); err != nil {
							t.Fatalf("Ack: %v", err)
						}
					}
				}
			end:
				st := s.Stats()
				if uint64(len(seen))+st.DroppedFullRecords != writers*each {
					t.Fatalf("received %d + dropped %d != %d", len(seen), st.DroppedFullRecords, writers*each)
				}
			})
		}
	})
}
