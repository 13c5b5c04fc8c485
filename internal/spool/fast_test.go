package spool

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// appendEither appends frame with AppendFast, else AppendFrameMark, and
// reports whether the fast tail took it.
func appendEither(t testing.TB, s *Spool, frame []byte) bool {
	if _, ok := s.AppendFast(frame); ok {
		return true
	}
	if _, err := s.AppendFrameMark(frame); err != nil {
		t.Errorf("AppendFrameMark: %v", err)
	}
	return false
}

// fastWriters starts writers goroutines, writer w appending records
// w*per to w*per+per-1 (record i of size(i) bytes) with appendEither, and
// returns a channel closed when all are done.
func fastWriters(t *testing.T, s *Spool, writers, per int, size func(int) int) <-chan struct{} {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				appendEither(t, s, frameOf(t, payload(w*per+i, size(i)), 1, int64(i)))
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// appendFastSoon appends frame with AppendFast, trying again while it is
// refused: the preparer's sections under s.mu turn the fast tail off for a
// moment (a refusal the caller of AppendFast meets with AppendFrameMark).
// It fails the test when a second goes by without the tail taking it.
func appendFastSoon(t *testing.T, s *Spool, frame []byte) FastCounts {
	t.Helper()
	for deadline := time.Now().Add(time.Second); ; runtime.Gosched() {
		if c, ok := s.AppendFast(frame); ok {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("AppendFast refused a %d-byte frame for a second", len(frame))
		}
	}
}

func needMmap(t *testing.T) {
	t.Helper()
	if !mmapSupported {
		t.Skipf("no mmap writer on %s: AppendFast never takes a record there", runtime.GOOS)
	}
}

// TestAppendFastOnlyWhenSetFast: fast appends are off until SetFast(true)
// and after SetFast(false), whose counts cover every fast append made.
func TestAppendFastOnlyWhenSetFast(t *testing.T) {
	needMmap(t)
	s := openT(t, Options{Sync: SyncNever})
	if _, err := s.AppendFrameMark(frameOf(t, payload(0, 100), 1, 1)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.AppendFast(frameOf(t, payload(1, 100), 1, 2)); ok {
		t.Fatal("AppendFast took a record before SetFast(true)")
	}
	if c := s.SetFast(true); c.Records != 0 {
		t.Fatalf("SetFast(true) counted %+v before any fast append", c)
	}
	before := time.Now()
	var frames, since int64 // since: fast appends taken before
	for i := 1; i <= 10; i++ {
		f := frameOf(t, payload(i, 100+i), 2, int64(1+i))
		c := appendFastSoon(t, s, f)
		frames += int64(len(f))
		if c.Records != int64(i)-since || c.Bytes != frames || c.First.Before(before) {
			t.Fatalf("after %d fast appends: %+v (want %d records, %d bytes, first after %v)", i, c, int64(i)-since, frames, before)
		}
		if i == 5 {
			if c := s.TakeFast(); c.Records != 5 {
				t.Fatalf("TakeFast: %+v, want 5 records", c)
			}
			frames, since = 0, 5
		}
	}
	if c := s.SetFast(false); c.Records != 5 || c.Bytes != frames {
		t.Fatalf("SetFast(false): %+v, want the 5 records since TakeFast (%d bytes)", c, frames)
	}
	if _, ok := s.AppendFast(frameOf(t, payload(11, 100), 1, 12)); ok {
		t.Fatal("AppendFast took a record after SetFast(false)")
	}
	st := s.Stats()
	if st.Appended != 11 || st.Records != 11 || st.Entries != 21 {
		t.Fatalf("stats %+v, want 11 records appended, 21 entries", st)
	}
	if got := ids(t, drain(t, s)); !equalInts(got, seq(0, 11)) {
		t.Fatalf("read back %v, want 0..10", got)
	}
}

// TestAppendFastMatchesGeneral appends the same records to a spool with
// AppendFast (falling back to AppendFrameMark) and to one with AppendMark
// only: the spool's counters, the segments and the records read back are
// the same, across segment rolls and the resident window's moves, which
// the fast tail leaves to the general path.
func TestAppendFastMatchesGeneral(t *testing.T) {
	needMmap(t)
	o := Options{SegmentSize: 3 * window, Sync: SyncNever}
	fast, general := openT(t, o), openT(t, o)
	fast.SetFast(true)
	const n = 30000 // about 11 MiB: three rolls, several window moves
	took := 0
	for i := range n {
		p, entries, ts := payload(i, 300+i%200), i%5+1, int64(1000+i)
		if appendEither(t, fast, frameOf(t, p, entries, ts)) {
			took++
		}
		if _, err := general.AppendMark(p, entries, ts); err != nil {
			t.Fatalf("AppendMark %d: %v", i, err)
		}
	}
	if took < n*9/10 || took == n {
		t.Fatalf("the fast tail took %d of %d records: want most, not the first of each segment", took, n)
	}
	checkMatchesGeneral(t, fast, general, n)
}

// TestAppendFastKeepsMaxBytes: the fast tail never takes the spool past
// MaxBytes; the general path drops the oldest segments and counts them.
func TestAppendFastKeepsMaxBytes(t *testing.T) {
	needMmap(t)
	o := Options{SegmentSize: 2 * window, MaxBytes: 5 * window, Sync: SyncNever}
	s := openT(t, o)
	s.SetFast(true)
	const n = 40000 // about 12 MiB through a 5 MiB spool
	for i := range n {
		appendEither(t, s, frameOf(t, payload(i, 300), 1, int64(i)))
		if i%1000 == 0 {
			if st := s.Stats(); st.Bytes > o.MaxBytes {
				t.Fatalf("after %d appends the spool holds %d bytes, MaxBytes %d", i+1, st.Bytes, o.MaxBytes)
			}
		}
	}
	st := s.Stats()
	if st.Bytes > o.MaxBytes || st.DroppedFullRecords == 0 {
		t.Fatalf("stats %+v: want at most %d bytes and records dropped", st, o.MaxBytes)
	}
	recs := drain(t, s)
	if int64(len(recs))+int64(st.DroppedFullRecords) != n {
		t.Fatalf("read %d records and %d were dropped, want %d in all", len(recs), st.DroppedFullRecords, n)
	}
	if got := ids(t, recs); !equalInts(got, seq(n-len(recs), n)) {
		t.Fatalf("read back %d records, want the newest in order", len(got))
	}
}

// TestAppendFastSurvivesReopen: records the fast tail wrote are in the
// files: after Close or a crash, Open finds them all.
func TestAppendFastSurvivesReopen(t *testing.T) {
	needMmap(t)
	for _, crashed := range []bool{false, true} {
		dir := t.TempDir()
		o := Options{Dir: dir, SegmentSize: 2 * window, Sync: SyncNever}
		s, err := Open(o)
		if err != nil {
			t.Fatal(err)
		}
		s.SetFast(true)
		const n = 10000
		for i := range n {
			appendEither(t, s, frameOf(t, payload(i, 250), 1, int64(i)))
		}
		if crashed {
			crash(s)
		} else if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = openT(t, o)
		if got := ids(t, drain(t, s)); !equalInts(got, seq(0, n)) {
			t.Fatalf("crashed %v: read back %d records after Open, want %d in order", crashed, len(got), n)
		}
		if _, ok := s.AppendFast(frameOf(t, payload(n, 100), 1, 1)); ok {
			t.Fatalf("crashed %v: a reopened spool took a fast append before SetFast(true)", crashed)
		}
		s.Close()
	}
}

// TestAppendFastWithReader appends from four goroutines through the fast
// tail (and the general path when it refuses) while the reader reads and
// acknowledges: each writer's records arrive once, in its order. Run with
// -race, it also checks that the fast tail and s.mu's sections share no
// unguarded state.
func TestAppendFastWithReader(t *testing.T) {
	needMmap(t)
	s := openT(t, Options{SegmentSize: 2 * window, Sync: SyncNever})
	s.SetFast(true)
	const writers, per = 4, 8000
	done := fastWriters(t, s, writers, per, func(i int) int { return 200 + i%100 })
	next := make([]int, writers)
	got := 0
	read := func() bool {
		r, err := s.Next()
		if err != nil {
			return false
		}
		id := recID(t, r.Payload)
		w := id / per
		if id != w*per+next[w] {
			t.Fatalf("writer %d: record %d after %d", w, id-w*per, next[w]-1)
		}
		next[w]++
		got++
		if err := s.Ack(r.Pos); err != nil {
			t.Fatalf("Ack: %v", err)
		}
		return true
	}
	for {
		select {
		case <-done:
			for read() {
			}
			if got != writers*per {
				t.Fatalf("read %d records, want %d", got, writers*per)
			}
			return
		default:
			if !read() {
				runtime.Gosched()
			}
		}
	}
}

// TestAppendFastAfterClose: a closed spool takes no fast append, and the
// general path says why.
func TestAppendFastAfterClose(t *testing.T) {
	needMmap(t)
	s := openT(t, Options{Sync: SyncNever})
	s.SetFast(true)
	appendEither(t, s, frameOf(t, payload(0, 100), 1, 1))
	appendFastSoon(t, s, frameOf(t, payload(1, 100), 1, 1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.AppendFast(frameOf(t, payload(2, 100), 1, 1)); ok {
		t.Fatal("AppendFast took a record after Close")
	}
}

// TestAppendFastWhileTheReaderMeetsCorruption: fast appends go on during
// the reader's sections; when the reader finds a corrupt frame in the
// writer's own segment, it counts that segment's fast appends among the
// records it gives up before it rolls the writer. Every record appended
// is then either read or counted as dropped, and nothing panics.
func TestAppendFastWhileTheReaderMeetsCorruption(t *testing.T) {
	needMmap(t)
	var errs atomic.Int64
	s := openT(t, Options{SegmentSize: 64 << 20, Sync: SyncNever, ErrorHandler: func(error) { errs.Add(1) }})
	s.SetFast(true)
	const writers, per = 4, 20000
	done := fastWriters(t, s, writers, per, func(int) int { return 200 })
	read, corrupted := 0, false
	for {
		r, err := s.Next()
		if err == nil {
			read++
			if err := s.Ack(r.Pos); err != nil {
				t.Fatalf("Ack: %v", err)
			}
			if !corrupted && read >= 1000 {
				// Spoil a frame just past what the reader has read into
				// memory, in the writer's segment, while the writers go on.
				s.muLock()
				p := max(s.roff, s.ra.off+int64(len(s.ra.blk))) + 100
				if g := s.wseg; s.rseg == g && s.ra.num == g.num && p+10 <= g.size {
					s.wmap[p] ^= 0xff
					corrupted = true
				}
				s.muUnlock()
			}
			continue
		}
		select {
		case <-done:
			for {
				if _, err := s.Next(); err != nil {
					break
				}
				read++
			}
			st := s.Stats()
			if !corrupted || st.DroppedCorruptRecords == 0 || errs.Load() == 0 {
				t.Fatalf("corrupted %v, stats %+v, %d errors: want a corrupt frame found and counted", corrupted, st, errs.Load())
			}
			if got := int64(read) + int64(st.DroppedCorruptRecords); got != writers*per || st.Appended != writers*per {
				t.Fatalf("read %d + dropped as corrupt %d = %d, appended %d: want %d", read, st.DroppedCorruptRecords, got, st.Appended, writers*per)
			}
			return
		default:
			runtime.Gosched()
		}
	}
}
