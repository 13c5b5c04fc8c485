package spool

import (
	"runtime"
	"testing"
)

// frameOf returns payload framed by PutFrame, as "always" mode builds it.
func frameOf(t testing.TB, payload []byte, entries int, ts int64) []byte {
	t.Helper()
	frame := append(make([]byte, FrameHeaderSize), payload...)
	if err := PutFrame(frame, entries, ts); err != nil {
		t.Fatal(err)
	}
	return frame
}

// TestAppendFrameFastMatchesGeneral appends the same records to two
// spools, one with AppendFrameMark (the fast path for most records) and
// one with AppendMark (the general path only): the Marks, the counters and
// the records read back are the same, across segment rolls and the
// resident window's moves.
func TestAppendFrameFastMatchesGeneral(t *testing.T) {
	if !mmapSupported {
		t.Skipf("no mmap writer on %s: AppendFrameMark takes the write path, tested by TestAppendFrameMark", runtime.GOOS)
	}
	o := Options{SegmentSize: 3 * window, Sync: SyncNever}
	fast, general := openT(t, o), openT(t, o)
	const n = 30000 // about 11 MiB: three rolls, several window moves
	var ordF, ordG segOrder
	for i := range n {
		p, entries, ts := payload(i, 300+i%200), i%5+1, int64(1000+i)
		mf, err := fast.AppendFrameMark(frameOf(t, p, entries, ts))
		if err != nil {
			t.Fatalf("AppendFrameMark %d: %v", i, err)
		}
		mg, err := general.AppendMark(p, entries, ts)
		if err != nil {
			t.Fatalf("AppendMark %d: %v", i, err)
		}
		// Segment numbers may differ (a segment prepared ahead that a
		// spool went on without leaves its number unused); the records
		// at which each spool starts a new segment may not.
		of, og := ordF.of(mf.Segment), ordG.of(mg.Segment)
		mf.Segment, mg.Segment = 0, 0
		if mf != mg || of != og {
			t.Fatalf("record %d: Mark %+v in the spool's segment #%d, the general path's %+v in #%d", i, mf, of, mg, og)
		}
	}
	checkMatchesGeneral(t, fast, general, n)
}

// segOrder gives a spool's segments, by number, their order of use.
type segOrder struct {
	last uint64
	n    int
}

func (o *segOrder) of(seg uint64) int {
	if seg != o.last {
		o.last = seg
		o.n++
	}
	return o.n
}

// checkMatchesGeneral checks that spool s, written with the fast paths,
// has the counters of general, written with AppendMark only, and that its
// n records read back in order: record i with i%5+1 entries at 1000+i,
// 300+i%200 bytes long.
func checkMatchesGeneral(t *testing.T, s, general *Spool, n int) {
	t.Helper()
	sf, sg := s.Stats(), general.Stats()
	if sf.Appended != uint64(n) || sf.Records != sg.Records || sf.Entries != sg.Entries || sf.Bytes != sg.Bytes || sf.Segments != sg.Segments {
		t.Fatalf("stats %+v, the general path's %+v", sf, sg)
	}
	recs := drain(t, s)
	if got := ids(t, recs); !equalInts(got, seq(0, n)) {
		t.Fatalf("read back %d records, want %d in order", len(got), n)
	}
	for i, r := range recs {
		if r.Entries != i%5+1 || r.Timestamp != int64(1000+i) || len(r.Payload) != 300+i%200 {
			t.Fatalf("record %d: %d entries at %d, %d bytes", i, r.Entries, r.Timestamp, len(r.Payload))
		}
	}
}

// TestAppendFrameFastRefuses checks the cases the fast path leaves to the
// general one, with nothing written or counted, and that it writes in the
// plain case.
func TestAppendFrameFastRefuses(t *testing.T) {
	if !mmapSupported {
		t.Skipf("no mmap writer on %s: there is no fast path", runtime.GOOS)
	}
	frame := frameOf(t, payload(1, 200), 1, 1)
	state := func(s *Spool) (size, appended int64) {
		s.muLock()
		defer s.muUnlock()
		if s.wseg != nil {
			size = s.wseg.size
		}
		return size, int64(s.st.Appended)
	}
	try := func(s *Spool) (Mark, bool) {
		s.muLock()
		defer s.muUnlock()
		return s.appendFrameFast(frame, 1, 1)
	}
	for _, c := range []struct {
		name string
		o    Options
		prep func(t *testing.T, s *Spool)
	}{
		{"no segment yet", Options{}, func(t *testing.T, s *Spool) {}},
		{"sync batch", Options{Sync: SyncBatch}, func(t *testing.T, s *Spool) { appendN(t, s, 0, 1, 100) }},
		{"segment full", Options{SegmentSize: 4096}, func(t *testing.T, s *Spool) {
			// Leave 100 bytes of the segment: the frame does not fit.
			size, _ := state(s)
			if err := s.Append(payload(2, int(4096-size-100-FrameHeaderSize)), 1, 2); err != nil {
				t.Fatal(err)
			}
		}},
		{"spool full", Options{SegmentSize: 4096, MaxBytes: 7800}, func(t *testing.T, s *Spool) {
			// The frame fits the segment, but the spool would go over
			// MaxBytes: the oldest segment is to be deleted first.
			for i := 0; ; i++ {
				s.muLock()
				total, room := s.bytes, s.o.SegmentSize-s.wseg.size
				s.muUnlock()
				if total+int64(len(frame)) > s.o.MaxBytes {
					if room < int64(len(frame)) || len(s.segs) < 2 {
						t.Fatalf("set-up: %d bytes in %d segments, %d bytes of room", total, len(s.segs), room)
					}
					return
				}
				appendN(t, s, 10+i, 1, 200)
			}
		}},
		{"segment over SegmentSize", Options{SegmentSize: 4096, MaxRecordSize: 8192}, func(t *testing.T, s *Spool) {
			// A record larger than SegmentSize got a segment (and a
			// mapping) of its own: the next one starts a new segment.
			appendN(t, s, 10, 1, 6000)
		}},
		{"window moves", Options{}, func(t *testing.T, s *Spool) {
			s.muLock()
			s.pr.nextWin = s.wseg.size + 100 // the next frame crosses it
			s.muUnlock()
		}},
		{"error to report", Options{}, func(t *testing.T, s *Spool) {
			s.muLock()
			s.cleanupError(errMapFault)
			s.muUnlock()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.o.Dir = t.TempDir()
			c.o.ErrorHandler = func(error) {}
			s := openT(t, c.o)
			if c.name != "no segment yet" {
				appendN(t, s, 0, 1, 100)
			}
			c.prep(t, s)
			size0, n0 := state(s)
			_, ok := try(s)
			if size, n := state(s); ok || size != size0 || n != n0 {
				t.Fatalf("fast path took the frame (ok %v, size %d→%d, appended %d→%d)", ok, size0, size, n0, n)
			}
		})
	}
	t.Run("frame over copyStep", func(t *testing.T) {
		// The general path copies it in pieces, yielding between them.
		s := openT(t, Options{})
		appendN(t, s, 0, 1, 100)
		size0, n0 := state(s)
		s.muLock()
		_, ok := s.appendFrameFast(frameOf(t, payload(3, copyStep), 1, 1), 1, 1)
		s.muUnlock()
		if size, n := state(s); ok || size != size0 || n != n0 {
			t.Fatalf("fast path took a frame of %d bytes", copyStep+FrameHeaderSize)
		}
	})
	t.Run("closed", func(t *testing.T) {
		s := openT(t, Options{})
		appendN(t, s, 0, 1, 100)
		s.Close()
		if _, ok := try(s); ok {
			t.Fatal("fast path wrote to a closed spool")
		}
	})
	t.Run("plain", func(t *testing.T) {
		s := openT(t, Options{})
		appendN(t, s, 0, 1, 100)
		size0, n0 := state(s)
		m, ok := try(s)
		size, n := state(s)
		if !ok || size != size0+int64(len(frame)) || n != n0+1 || m.End != size || m.Records != 2 {
			t.Fatalf("fast path: ok %v, size %d→%d, appended %d→%d, mark %+v", ok, size0, size, n0, n, m)
		}
	})
}
