package spool

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func TestOptionsValidation(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]struct {
		o       Options
		wantErr string
	}{
		"empty dir":                {Options{}, "Dir is empty"},
		"negative max bytes":       {Options{Dir: dir, MaxBytes: -1}, "MaxBytes"},
		"segment too small":        {Options{Dir: dir, SegmentSize: 10}, "SegmentSize 10 is under"},
		"segment over max bytes":   {Options{Dir: dir, MaxBytes: 1000, SegmentSize: 2000}, "exceeds MaxBytes"},
		"record over max bytes":    {Options{Dir: dir, MaxBytes: 1000, MaxRecordSize: 990}, "MaxRecordSize 990 not in"},
		"negative record limit":    {Options{Dir: dir, MaxRecordSize: -5}, "MaxRecordSize -5"},
		"unknown sync mode":        {Options{Dir: dir, Sync: "sometimes"}, `unknown Sync mode "sometimes"`},
		"negative interval":        {Options{Dir: dir, SyncInterval: -time.Second}, "SyncInterval"},
		"defaults":                 {Options{Dir: dir}, ""},
		"small max bytes defaults": {Options{Dir: dir, MaxBytes: 4096}, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o, err := tc.o.withDefaults()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("withDefaults: %v", err)
				}
				if o.SegmentSize > o.MaxBytes || o.MaxRecordSize+headerSize+frameHeaderSize > o.MaxBytes || o.Sync != SyncInterval {
					t.Fatalf("inconsistent defaults: %+v", o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("withDefaults error = %v, want it to contain %q", err, tc.wantErr)
			}
			if _, err := Open(tc.o); err == nil {
				t.Fatal("Open accepted invalid options")
			}
		})
	}
	o, _ := Options{Dir: dir}.withDefaults()
	if o.MaxBytes != DefaultMaxBytes || o.SegmentSize != DefaultSegmentSize || o.MaxRecordSize != DefaultMaxRecordSize || o.SyncInterval != time.Second {
		t.Fatalf("defaults = %+v", o)
	}
}

func TestAppendNextAckFIFO(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		s := openT(t, Options{NoMmap: noMmap, SegmentSize: 512, Sync: SyncNever})
		appendN(t, s, 0, 50, 60)
		if got, want := mapped(s), !noMmap; got != want {
			t.Fatalf("writing through a mapping: %v, want %v", got, want)
		}
		st := s.Stats()
		if st.Records != 50 || st.Unread != 50 || st.Segments < 5 || st.OldestTimestamp != 1000 {
			t.Fatalf("after appends: %+v", st)
		}
		wantEntries := int64(0)
		for i := range 50 {
			wantEntries += int64(i%5 + 1)
		}
		if st.Entries != wantEntries {
			t.Fatalf("Entries = %d, want %d", st.Entries, wantEntries)
		}
		recs := drain(t, s)
		if got := ids(t, recs); !equalInts(got, seq(0, 50)) {
			t.Fatalf("ids = %v", got)
		}
		for i, r := range recs {
			if r.Entries != i%5+1 || r.Timestamp != int64(1000+i) {
				t.Fatalf("record %d: entries %d ts %d", i, r.Entries, r.Timestamp)
			}
			if i > 0 && !recs[i-1].Pos.Less(r.Pos) {
				t.Fatalf("positions not increasing: %v then %v", recs[i-1].Pos, r.Pos)
			}
		}
		if st := s.Stats(); st.Unread != 0 || st.Records != 50 {
			t.Fatalf("read but unacked: %+v", st)
		}
		// Ack half: segments before are deleted, the head moves.
		if err := s.Ack(recs[24].Pos); err != nil {
			t.Fatal(err)
		}
		st = s.Stats()
		if st.Records != 25 || st.OldestTimestamp != 1025 || st.Acked != 25 {
			t.Fatalf("after ack of 25: %+v", st)
		}
		// Acking an older position again is a no-op.
		if err := s.Ack(recs[3].Pos); err != nil {
			t.Fatalf("re-ack: %v", err)
		}
		if err := s.Ack(recs[49].Pos); err != nil {
			t.Fatal(err)
		}
		st = s.Stats()
		if st.Records != 0 || st.Segments != 0 || st.Bytes != 0 || !s.Empty() || s.Len() != 0 {
			t.Fatalf("after acking everything: %+v", st)
		}
		entries, _ := os.ReadDir(s.o.Dir)
		for _, e := range entries {
			n, ok := parseSegmentName(e.Name())
			if !ok {
				continue
			}
			// But for the one prepared ahead: a header, then zeros.
			f, err := os.Open(filepath.Join(s.o.Dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			prepared := s.pr != nil && preparedUnused(f, n, bufio.NewReader(nil))
			f.Close()
			if !prepared {
				t.Fatalf("segment %s left after everything was acknowledged", e.Name())
			}
		}
		// The spool keeps working after it emptied.
		appendN(t, s, 50, 3, 60)
		if got := ids(t, drain(t, s)); !equalInts(got, seq(50, 53)) {
			t.Fatalf("after refill: %v", got)
		}
	})
}

func TestAckBadPos(t *testing.T) {
	s := openT(t, Options{Sync: SyncNever})
	appendN(t, s, 0, 3, 10)
	r, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	next := Pos{Segment: r.Pos.Segment, Offset: r.Pos.Offset + frameHeaderSize + int64(len(r.Payload))}
	if err := s.Ack(next); !errors.Is(err, ErrBadPos) {
		t.Fatalf("Ack of an unread position = %v, want ErrBadPos", err)
	}
	if err := s.Ack(Pos{Segment: 99, Offset: headerSize}); !errors.Is(err, ErrBadPos) {
		t.Fatalf("Ack of a future segment = %v, want ErrBadPos", err)
	}
	if err := s.Ack(r.Pos); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2", s.Len())
	}
}

func TestNextWhileAppending(t *testing.T) {
	s := openT(t, Options{SegmentSize: 256, Sync: SyncNever})
	for i := range 20 {
		if _, err := s.Next(); !errors.Is(err, ErrEmpty) {
			t.Fatalf("Next on drained spool = %v, want ErrEmpty", err)
		}
		appendN(t, s, i, 1, 40)
		r, err := s.Next()
		if err != nil {
			t.Fatal(err)
		}
		if id := recID(t, r.Payload); id != i {
			t.Fatalf("got %d, want %d", id, i)
		}
		if i%3 == 0 {
			if err := s.Ack(r.Pos); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestRewind(t *testing.T) {
	s := openT(t, Options{SegmentSize: 256, Sync: SyncNever})
	appendN(t, s, 0, 10, 40)
	recs := drain(t, s)
	if err := s.Ack(recs[3].Pos); err != nil {
		t.Fatal(err)
	}
	if err := s.Rewind(); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, drain(t, s)); !equalInts(got, seq(4, 10)) {
		t.Fatalf("after Rewind: %v", got)
	}
	if st := s.Stats(); st.Unread != 0 || st.Records != 6 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestReopenNoDuplicates(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		for _, mode := range []SyncMode{SyncBatch, SyncInterval, SyncNever} {
			t.Run(string(mode), func(t *testing.T) {
				dir := t.TempDir()
				o := Options{NoMmap: noMmap, Dir: dir, SegmentSize: 300, Sync: mode}
				s := openT(t, o)
				appendN(t, s, 0, 40, 50)
				recs := drain(t, s)
				// Ack up to a record in the middle of segment 6 (15, 16, 17).
				if err := s.Ack(recs[16].Pos); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s2 := openT(t, o)
				st := s2.Stats()
				if st.RecoveredRecords != 23 || st.Records != 23 || st.OldestTimestamp != 1017 || st.CursorResets != 0 {
					t.Fatalf("recovered: %+v", st)
				}
				if got := ids(t, drain(t, s2)); !equalInts(got, seq(17, 40)) {
					t.Fatalf("after reopen: %v", got)
				}
				// Appends continue after the recovered ones, in a new segment.
				appendN(t, s2, 40, 2, 50)
				if got := ids(t, drain(t, s2)); !equalInts(got, seq(40, 42)) {
					t.Fatalf("new records: %v", got)
				}
			})
		}
	})
}

func TestCrashResendsAtMostInflight(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		dir := t.TempDir()
		o := Options{NoMmap: noMmap, Dir: dir, SegmentSize: 300, Sync: SyncInterval}
		s := openT(t, o)
		appendN(t, s, 0, 30, 50)
		var recs []Record
		for range 12 {
			r, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
		if err := s.Ack(recs[7].Pos); err != nil {
			t.Fatal(err)
		}
		crash(s) // records 8 to 11 are in flight
		s2 := openT(t, o)
		got := ids(t, drain(t, s2))
		if !equalInts(got, seq(8, 30)) {
			t.Fatalf("after crash: %v, want 8..29 (the 4 in-flight records again, nothing acknowledged)", got)
		}
	})
}

func TestCursorCorruptReplaysSegment(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, Sync: SyncNever}
	s := openT(t, o)
	appendN(t, s, 0, 5, 20)
	recs := drain(t, s)
	if err := s.Ack(recs[1].Pos); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, cursorName), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, o)
	if st := s2.Stats(); st.CursorResets != 1 {
		t.Fatalf("CursorResets = %d, want 1", st.CursorResets)
	}
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(0, 5)) {
		t.Fatalf("with a bad cursor: %v, want everything again", got)
	}
}

func TestMaxBytesDropsOldest(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		// Frames of 100 bytes, 3 per segment: a segment is 32+300 = 332 bytes.
		// MaxBytes 1000 holds 3 segments (996 bytes) minus room for the next
		// frame: the 4th segment's first record drops segment 1, and so on.
		s := openT(t, Options{NoMmap: noMmap, SegmentSize: 332, MaxBytes: 1000, Sync: SyncNever})
		appendN(t, s, 0, 9, 80) // segments 1..3, 996 bytes
		st := s.Stats()
		if st.Bytes != 996 || st.Segments != 3 || st.DroppedFullRecords != 0 {
			t.Fatalf("before drop: %+v", st)
		}
		// Read two records of segment 1: they are the consumer's now.
		r0, _ := s.Next()
		r1, _ := s.Next()
		appendN(t, s, 9, 1, 80) // new segment 4: 996+32+100 > 1000, drops segment 1
		st = s.Stats()
		if st.DroppedFullRecords != 1 || st.DroppedFullEntries != 3 || st.Segments != 3 || st.Bytes != 664+132 {
			t.Fatalf("after first drop: %+v", st)
		}
		if st.Records != 7 {
			t.Fatalf("Records = %d, want 7", st.Records)
		}
		// Acks of records whose segment was dropped are no-ops.
		if err := s.Ack(r1.Pos); err != nil {
			t.Fatal(err)
		}
		_ = r0
		appendN(t, s, 10, 5, 80) // fills segment 4 (3), segment 5 gets 2: drops segment 2
		st = s.Stats()
		if st.DroppedFullRecords != 4 || st.DroppedFullEntries != 3+(4+5+1) {
			t.Fatalf("after second drop: %+v", st)
		}
		got := ids(t, drain(t, s))
		if !equalInts(got, seq(6, 15)) {
			t.Fatalf("remaining = %v, want 6..14", got)
		}
		if s.Stats().Bytes > 1000 {
			t.Fatalf("Bytes %d over MaxBytes", s.Stats().Bytes)
		}
	})
}

func TestTooLarge(t *testing.T) {
	s := openT(t, Options{MaxRecordSize: 100, Sync: SyncNever})
	if err := s.Append(make([]byte, 101), 1, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Append of 101 bytes = %v, want ErrTooLarge", err)
	}
	if err := s.Append(make([]byte, 100), 1, 0); err != nil {
		t.Fatalf("Append at the limit: %v", err)
	}
	if err := s.Append(nil, -1, 0); err == nil {
		t.Fatal("negative entry count accepted")
	}
}

func TestOversizedRecordGetsOwnSegment(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		s := openT(t, Options{NoMmap: noMmap, SegmentSize: 128, MaxRecordSize: 1000, Sync: SyncNever})
		appendN(t, s, 0, 1, 20)
		appendN(t, s, 1, 1, 500)
		appendN(t, s, 2, 1, 20)
		if st := s.Stats(); st.Segments != 3 {
			t.Fatalf("Segments = %d, want 3", st.Segments)
		}
		if got := ids(t, drain(t, s)); !equalInts(got, seq(0, 3)) {
			t.Fatalf("ids = %v", got)
		}
	})
}

func TestClosed(t *testing.T) {
	s := openT(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Append([]byte("x"), 1, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if _, err := s.Next(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close = %v", err)
	}
	if err := s.Ack(Pos{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack after Close = %v", err)
	}
	if err := s.Rewind(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rewind after Close = %v", err)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), dir) {
		t.Fatalf("error %q does not name the directory", err)
	}
	s.Close()
	s2, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func TestFileModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows has no Unix permission bits")
	}
	dir := filepath.Join(t.TempDir(), "a", "spool")
	s := openT(t, Options{Dir: dir, SegmentSize: 256, Sync: SyncBatch})
	appendN(t, s, 0, 5, 40)
	recs := drain(t, s)
	if err := s.Ack(recs[3].Pos); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	des, _ := os.ReadDir(dir)
	seen := map[string]bool{}
	for _, de := range des {
		fi, _ := de.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", de.Name(), fi.Mode().Perm())
		}
		switch {
		case strings.HasSuffix(de.Name(), segmentSuffix):
			seen["seg"] = true
		default:
			seen[de.Name()] = true
		}
	}
	for _, want := range []string{"seg", cursorName, lockName} {
		if !seen[want] {
			t.Errorf("no %s file in %v", want, seen)
		}
	}
}

func TestIntervalSync(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		synctest.Test(t, func(t *testing.T) {
			ffs := &faultFS{mmap: true}
			s, err := Open(Options{NoMmap: noMmap, Dir: t.TempDir(), FS: ffs, Sync: SyncInterval, SyncInterval: time.Second, SegmentSize: 128})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			appendN(t, s, 0, 1, 40)
			if n := ffs.syncs.Load(); n != 0 {
				t.Fatalf("Append synced %d times in interval mode", n)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			if n := ffs.syncs.Load(); n != 1 {
				t.Fatalf("after one interval: %d syncs, want 1", n)
			}
			time.Sleep(3 * time.Second) // nothing new: no sync
			synctest.Wait()
			if n := ffs.syncs.Load(); n != 1 {
				t.Fatalf("idle intervals synced: %d", n)
			}
			appendN(t, s, 1, 3, 40) // rolls: 40+20=60 bytes per frame, 1 per segment of 128
			time.Sleep(time.Second)
			synctest.Wait()
			// The write path closes segment 1 at once (flushed, nothing
			// new); the mmap writer also flushes its cut to the valid size.
			want := int64(1 + 3)
			if !noMmap {
				want = 1 + 4
			}
			if n := ffs.syncs.Load(); n != want {
				t.Fatalf("after rolls: %d syncs, want %d (rolled or written segments)", n, want)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	})
}

func TestBatchSyncEveryAppend(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		ffs := &faultFS{mmap: true}
		s := openT(t, Options{NoMmap: noMmap, FS: ffs, Sync: SyncBatch})
		appendN(t, s, 0, 1, 40) // segment creation syncs the header, then the record
		base := ffs.syncs.Load()
		appendN(t, s, 1, 5, 40)
		if n := ffs.syncs.Load() - base; n != 5 {
			t.Fatalf("5 appends synced %d times, want 5", n)
		}
	})
}

func TestConcurrentAppendAck(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		const writers, each = 4, 400
		for name, o := range map[string]Options{
			"no drops": {SegmentSize: 2048, Sync: SyncInterval, SyncInterval: time.Millisecond},
			"drops":    {SegmentSize: 1024, MaxBytes: 4096, Sync: SyncNever},
		} {
			t.Run(name, func(t *testing.T) {
				o.NoMmap = noMmap
				s := openT(t, o)
				var wg sync.WaitGroup
				for w := range writers {
					wg.Go(func() {
						for i := range each {
							if err := s.Append(payload(w*each+i, 30), 1, int64(i)); err != nil {
								t.Errorf("Append: %v", err)
								return
							}
						}
					})
				}
				done := make(chan struct{})
				got := make(chan []int)
				go func() {
					var ids []int
					n := 0
					for {
						r, err := s.Next()
						if errors.Is(err, ErrEmpty) {
							select {
							case <-done:
								if r, err = s.Next(); errors.Is(err, ErrEmpty) {
									got <- ids
									return
								}
							default:
								runtime.Gosched()
								continue
							}
						}
						if err != nil {
							t.Errorf("Next: %v", err)
							got <- ids
							return
						}
						ids = append(ids, recID(t, r.Payload))
						if n++; n%7 == 0 {
							if err := s.Ack(r.Pos); err != nil {
								t.Errorf("Ack: %v", err)
							}
						}
					}
				}()
				wg.Wait()
				close(done)
				recv := <-got
				st := s.Stats()
				if uint64(len(recv))+st.DroppedFullRecords != writers*each {
					t.Fatalf("received %d + dropped %d != %d", len(recv), st.DroppedFullRecords, writers*each)
				}
				if name == "no drops" && st.DroppedFullRecords != 0 {
					t.Fatalf("dropped %d without a bound", st.DroppedFullRecords)
				}
				last := map[int]int{}
				seen := map[int]bool{}
				for _, id := range recv {
					if seen[id] {
						t.Fatalf("record %d twice", id)
					}
					seen[id] = true
					w := id / each
					if prev, ok := last[w]; ok && id <= prev {
						t.Fatalf("writer %d: %d after %d", w, id, prev)
					}
					last[w] = id
				}
			})
		}
	})
}

func TestReopenAfterDrainKeepsNewRecords(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		dir := t.TempDir()
		o := Options{NoMmap: noMmap, Dir: dir, SegmentSize: 256, Sync: SyncNever}
		s := openT(t, o)
		appendN(t, s, 0, 10, 40)
		recs := drain(t, s)
		if err := s.Ack(recs[4].Pos); err != nil { // writes a cursor
			t.Fatal(err)
		}
		if err := s.Ack(recs[9].Pos); err != nil { // deletes every segment
			t.Fatal(err)
		}
		s.Close()
		s = openT(t, o)
		appendN(t, s, 10, 3, 40)
		s.Close()
		s = openT(t, o)
		if got := ids(t, drain(t, s)); !equalInts(got, seq(10, 13)) {
			t.Fatalf("after drain, reopen, append, reopen: %v", got)
		}
	})
}

func TestCorruptionAfterOpen(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var reported []error
	o := Options{Dir: dir, SegmentSize: 242, Sync: SyncNever, ErrorHandler: func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}}
	s := openT(t, o)
	appendN(t, s, 0, 6, 50) // segments 1 (0-2) and 2 (3-5)
	f, err := os.OpenFile(filepath.Join(dir, segmentName(1)), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xde, 0xad}, headerSize+70+frameHeaderSize) // payload of record 1
	f.Close()
	recs := drain(t, s)
	if got := ids(t, recs); !equalInts(got, []int{0, 3, 4, 5}) {
		t.Fatalf("read %v, want 0 3 4 5", got)
	}
	st := s.Stats()
	if st.DroppedCorruptRecords != 2 || st.DroppedCorruptEntries != 2+3 || st.Records != 4 {
		t.Fatalf("stats: %+v", st)
	}
	mu.Lock()
	var ce *CorruptionError
	if len(reported) != 1 || !errors.As(reported[0], &ce) || ce.Segment != 1 || ce.Offset != headerSize+70 {
		t.Fatalf("reported %v", reported)
	}
	mu.Unlock()
	if err := s.Ack(recs[1].Pos); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Segments != 1 || st.Records != 2 {
		t.Fatalf("after ack: %+v", st)
	}
}

func TestIntervalSyncErrorReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ffs := &faultFS{}
		errs := make(chan error, 4)
		s, err := Open(Options{Dir: t.TempDir(), FS: ffs, ErrorHandler: func(err error) { errs <- err }})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		appendN(t, s, 0, 1, 40)
		ffs.set(false, failOn(syscall.EIO, segmentSuffix, "sync"))
		time.Sleep(DefaultSyncInterval)
		synctest.Wait()
		select {
		case err := <-errs:
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("reported %v, want EIO", err)
			}
		default:
			t.Fatal("sync error not reported")
		}
		if st := s.Stats(); st.SyncErrors != 1 {
			t.Fatalf("SyncErrors = %d", st.SyncErrors)
		}
		ffs.set(false, nil)
	})
}

func TestRewindCountsDroppedInflight(t *testing.T) {
	s := openT(t, Options{SegmentSize: 332, MaxBytes: 1000, Sync: SyncNever})
	appendN(t, s, 0, 9, 80)
	s.Next()
	s.Next()                // records 0 and 1 of segment 1 are in flight
	appendN(t, s, 9, 1, 80) // drops segment 1: record 2 unread → dropped
	if st := s.Stats(); st.DroppedFullRecords != 1 {
		t.Fatalf("DroppedFullRecords = %d, want 1", st.DroppedFullRecords)
	}
	if err := s.Rewind(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.DroppedFullRecords != 3 || st.DroppedFullEntries != 1+2+3 {
		t.Fatalf("after Rewind: %+v", st)
	}
	if got := ids(t, drain(t, s)); !equalInts(got, seq(3, 10)) {
		t.Fatalf("read %v", got)
	}
}

func TestCursorRecovery(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		// One segment with records 0..3 (frames of 60 bytes at 32, 92, 152, 212).
		tests := map[string]struct {
			cursorOff  int64
			fileSize   int64 // 0: untouched
			want       []int
			resets     int
			wantOldest int64
		}{
			"on a boundary":          {cursorOff: 152, want: []int{2, 3}, wantOldest: 1002},
			"at the end":             {cursorOff: 272, want: nil},
			"inside a record":        {cursorOff: 153, want: []int{0, 1, 2, 3}, resets: 1, wantOldest: 1000},
			"past the data":          {cursorOff: 212, fileSize: 160, want: nil},
			"past the data, partial": {cursorOff: 152, fileSize: 200, want: nil},
		}
		for name, tc := range tests {
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				o := Options{NoMmap: noMmap, Dir: dir, Sync: SyncNever}
				s := openT(t, o)
				appendN(t, s, 0, 4, 40)
				s.Close()
				var b [cursorSize]byte
				putCursor(b[:], 1, tc.cursorOff)
				os.WriteFile(filepath.Join(dir, cursorName), b[:], 0o600)
				os.WriteFile(filepath.Join(dir, cursorName+tmpSuffix), []byte("stale"), 0o600)
				if tc.fileSize > 0 {
					os.Truncate(filepath.Join(dir, segmentName(1)), tc.fileSize)
				}
				s2 := openT(t, o)
				st := s2.Stats()
				if got := ids(t, drain(t, s2)); !equalInts(got, tc.want) {
					t.Fatalf("read %v, want %v", got, tc.want)
				}
				if st.CursorResets != tc.resets || st.OldestTimestamp != tc.wantOldest {
					t.Fatalf("stats: %+v", st)
				}
				if _, err := os.Stat(filepath.Join(dir, cursorName+tmpSuffix)); err == nil {
					t.Fatal("stale cursor.tmp not removed")
				}
				// New segments get numbers above the cursor's.
				appendN(t, s2, 10, 1, 40)
				s2.Close()
				s3 := openT(t, o)
				if got := ids(t, drain(t, s3)); !equalInts(got, append(tc.want, 10)) {
					t.Fatalf("after append and reopen: %v", got)
				}
			})
		}
	})
}
