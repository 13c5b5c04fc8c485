//go:build linux

package spool

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// waitPrepared waits until the preparer has a segment ready.
func waitPrepared(t *testing.T, s *Spool) *prepared {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.muLock()
		p := s.pr.ready
		s.muUnlock()
		if p != nil {
			return p
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no segment prepared after 10 s")
	return nil
}

// TestPreparedSegmentUsed checks that a roll takes the segment prepared
// ahead (its mapping becomes the writer's, under the next number), that
// the records written across prepared segments read back in order, and
// that Close leaves no prepared file behind.
func TestPreparedSegmentUsed(t *testing.T) {
	dir := t.TempDir()
	const segSize = 1000
	s := openT(t, Options{Dir: dir, SegmentSize: segSize, Sync: SyncNever})
	if s.pr == nil {
		t.Fatal("no preparer with the mmap writer on the OS filesystem")
	}
	appendN(t, s, 0, 9, 80) // frames of 100 bytes: 9 fill segment 1
	for seg := uint64(2); seg <= 5; seg++ {
		p := waitPrepared(t, s)
		if p.num != seg {
			t.Fatalf("segment prepared under number %d, want %d", p.num, seg)
		}
		if _, err := os.Stat(filepath.Join(dir, segmentName(p.num))); err != nil {
			t.Fatalf("prepared file: %v", err)
		}
		from := int(seg-1) * 9
		appendN(t, s, from, 9, 80) // rolls into the next segment
		s.muLock()
		num, m := s.wseg.num, s.wmap
		s.muUnlock()
		if num != seg || unsafe.SliceData(m) != unsafe.SliceData(p.m) {
			t.Fatalf("writer on segment %d (prepared mapping: %v), want segment %d from the prepared file",
				num, unsafe.SliceData(m) == unsafe.SliceData(p.m), seg)
		}
		// Taken: the header, as the file has it, is valid and no longer
		// flagged as prepared.
		hdr := make([]byte, headerSize)
		if f, err := os.Open(filepath.Join(dir, segmentName(seg))); err != nil {
			t.Fatal(err)
		} else {
			f.ReadAt(hdr, 0)
			f.Close()
		}
		if err := checkHeader(hdr, seg); err != nil || hdr[5] != 0 {
			t.Fatalf("header of the segment taken: %v, flags %d", err, hdr[5])
		}
	}
	if got := ids(t, drain(t, s)); !equalInts(got, seq(0, 45)) {
		t.Fatalf("read back %v", got)
	}
	last := waitPrepared(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, segmentName(last.num))); !os.IsNotExist(err) {
		t.Fatalf("prepared file after Close: %v", err)
	}
	sizes := segFileSizes(t, dir)
	if len(sizes) != 5 {
		t.Fatalf("segment files %v, want 5", sizes)
	}
}

// TestPrepareFirst checks that with PrepareFirst the first segment is
// prepared when Open returns (Open waits for it, not the first Append) and
// that the first Append writes into it, and that without it a spool only
// opened creates no file.
func TestPrepareFirst(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, Sync: SyncNever, PrepareFirst: true})
	s.muLock()
	p := s.pr.ready
	s.muUnlock()
	if p == nil {
		t.Fatal("Open with PrepareFirst returned before the first segment was prepared")
	}
	appendN(t, s, 0, 1, 80)
	s.muLock()
	num, m := s.wseg.num, s.wmap
	s.muUnlock()
	if num != 1 || unsafe.SliceData(m) != unsafe.SliceData(p.m) {
		t.Fatalf("first append on segment %d (prepared mapping: %v), want segment 1 from the prepared file",
			num, unsafe.SliceData(m) == unsafe.SliceData(p.m))
	}

	dir2 := t.TempDir()
	s2 := openT(t, Options{Dir: dir2, Sync: SyncNever})
	time.Sleep(50 * time.Millisecond) // a preparer kicked at Open would have begun
	s2.mu.Lock()
	ready := s2.pr.ready
	s2.mu.Unlock()
	if files := segFileSizes(t, dir2); ready != nil || len(files) != 0 {
		t.Fatalf("a spool only opened prepared a segment (ready %v, segment files %v)", ready != nil, files)
	}
}

// TestPreparedSegmentCrash checks that a prepared file left by a crash (a
// segment of zeros only, numbered after the writer's, whose tail is zeros
// too) is removed by Open and loses nothing: the writer's segment is the
// newest, its zero tail cut off, not set aside as corrupt.
func TestPreparedSegmentCrash(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentSize: 1000, Sync: SyncNever})
	appendN(t, s, 0, 20, 80)
	p := waitPrepared(t, s)
	crash(s)
	prep := filepath.Join(dir, segmentName(p.num))
	if _, err := os.Stat(prep); err != nil {
		t.Fatalf("prepared file after the crash: %v", err)
	}
	s2 := openT(t, Options{Dir: dir, SegmentSize: 1000, Sync: SyncNever})
	if st := s2.Stats(); st.CorruptSegments != 0 || st.RecoveredRecords != 20 {
		t.Fatalf("after the crash: %+v", st)
	}
	if _, err := os.Stat(prep); !os.IsNotExist(err) {
		t.Fatalf("prepared file after Open: %v", err)
	}
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(0, 20)) {
		t.Fatalf("read back %v", got)
	}
	// The prepared file was removed before a new one could be made, and the
	// new spool writes on.
	appendN(t, s2, 20, 20, 80)
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(20, 40)) {
		t.Fatalf("read back %v", got)
	}
}

// TestPreparedTooSmall checks a frame larger than a prepared segment: the
// append path creates a segment that fits, under a later number, and the
// prepared one, numbered before it, is given up (never written after it:
// the preparer removes its file); the next roll goes on under a later
// number still.
func TestPreparedTooSmall(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentSize: 1000, Sync: SyncNever})
	appendN(t, s, 0, 9, 80)
	p := waitPrepared(t, s)
	appendN(t, s, 9, 1, 5000) // rolls; does not fit the prepared 1000 bytes
	s.muLock()
	kept := s.pr.ready == p
	size := len(s.wmap)
	big := s.wseg.num
	s.muUnlock()
	if kept || size < 5000 {
		t.Fatalf("prepared kept: %v, writer mapping %d bytes", kept, size)
	}
	appendN(t, s, 10, 9, 80) // rolls again
	s.muLock()
	next := s.wseg.num
	s.muUnlock()
	if big <= p.num || next <= big {
		t.Fatalf("segments %d (prepared), %d (the big frame's), then %d: want increasing, the prepared one skipped", p.num, big, next)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := os.Stat(filepath.Join(dir, segmentName(p.num)))
		if os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the discarded prepared segment's file is still there: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	if got := ids(t, drain(t, s)); !equalInts(got, seq(0, 19)) {
		t.Fatalf("read back %v", got)
	}
}

// mappingRss returns the resident size of the mapping that holds m, from
// /proc/self/smaps.
func mappingRss(t *testing.T, m []byte) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("cannot read /proc/self/smaps: %v", err)
	}
	addr := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(m))))
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && l <= addr && addr < h
			continue
		}
		if in && f[0] == "Rss:" && len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("mapping at %#x not in /proc/self/smaps", addr)
	return 0
}

// TestMappingResidentWindow checks that the writer's mapping keeps only a
// few windows of pages resident: the ones it passed are released (their
// data stays in the file), the next ones faulted in ahead.
func TestMappingResidentWindow(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentSize: 8 << 20, Sync: SyncNever})
	const size = 1000
	n := 7 << 20 / (size + frameHeaderSize) // 7 MiB of one 8 MiB segment
	appendN(t, s, 0, n, size)
	s.muLock()
	m := s.wmap
	s.muUnlock()
	if m == nil {
		t.Fatal("not writing through a mapping")
	}
	limit := int64(4 * window)
	deadline := time.Now().Add(10 * time.Second)
	rss := mappingRss(t, m)
	for rss > limit && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the preparer releases behind the writer
		rss = mappingRss(t, m)
	}
	if rss > limit {
		t.Fatalf("writer mapping has %d KiB resident after 7 MiB written, want at most %d KiB", rss>>10, limit>>10)
	}
	if got := ids(t, drain(t, s)); !equalInts(got, seq(0, n)) {
		t.Fatalf("read back %d records, want %d in order", len(got), n)
	}
}

// TestPreparedSegmentSyncBatch checks prepared segments in SyncBatch mode
// (the renamed file and the directory are flushed before the first record
// is acknowledged): records across several prepared segments survive a
// crash, in order.
func TestPreparedSegmentSyncBatch(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentSize: 1000, Sync: SyncBatch})
	appendN(t, s, 0, 9, 80)
	for seg := 1; seg <= 3; seg++ {
		waitPrepared(t, s)
		appendN(t, s, seg*9, 9, 80)
	}
	s.muLock()
	num := s.wseg.num
	s.muUnlock()
	if num != 4 {
		t.Fatalf("writing segment %d, want 4", num)
	}
	crash(s)
	s2 := openT(t, Options{Dir: dir, SegmentSize: 1000, Sync: SyncBatch})
	if st := s2.Stats(); st.CorruptSegments != 0 || st.RecoveredRecords != 36 {
		t.Fatalf("after the crash: %+v", st)
	}
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(0, 36)) {
		t.Fatalf("read back %v", got)
	}
}

// The preparer's advice covers a range in pieces of at most adviseStep
// bytes, in order, leaving nothing out.
func TestInSteps(t *testing.T) {
	for _, n := range []int{0, 1, adviseStep - 1, adviseStep, adviseStep + 1, 3*adviseStep + 4096} {
		m := make([]byte, n)
		next := 0
		calls := 0
		inSteps(m, func(p []byte) {
			calls++
			if len(p) == 0 || len(p) > adviseStep {
				t.Fatalf("n=%d: piece of %d bytes", n, len(p))
			}
			if off := int(uintptr(unsafe.Pointer(&p[0])) - uintptr(unsafe.Pointer(&m[0]))); off != next {
				t.Fatalf("n=%d: piece at %d, want %d", n, off, next)
			}
			next += len(p)
		})
		if next != n {
			t.Errorf("n=%d: pieces covered %d bytes", n, next)
		}
		if want := (n + adviseStep - 1) / adviseStep; calls != want {
			t.Errorf("n=%d: %d calls, want %d", n, calls, want)
		}
	}
}

// threadFaults returns the minor page faults the calling thread took so
// far (RUSAGE_THREAD).
func threadFaults(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1, &ru); err != nil { // RUSAGE_THREAD
		t.Skipf("no per-thread resource usage: %v", err)
	}
	return ru.Minflt
}

// TestFlushRepopulatesAhead checks that after a flush (which writes the
// mapped pages back and so makes them read-only) the preparer faults in
// again the pages the writer is likely to fill before the next flush, as
// many as it filled since the last one: the writer's copies into them take
// no page fault of their own, as before the flush, and a flush after a
// quiet interval faults in (so dirties, for the next flush to write) no
// more than that interval wrote.
func TestFlushRepopulatesAhead(t *testing.T) {
	if raceEnabled {
		t.Skip("counts page faults, which the race detector's shadow memory adds to (race_test.go); scripts/test.sh runs this test without -race")
	}
	s := openT(t, Options{Dir: t.TempDir(), SegmentSize: 8 << 20, Sync: SyncInterval, SyncInterval: time.Hour, PrepareFirst: true})
	const size = 4000 // a record a page, about
	p := payload(0, size)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// writeFaults appends n records and returns the page faults the
	// writer's thread took meanwhile.
	writeFaults := func(n int) int64 {
		before := threadFaults(t)
		for i := range n {
			if err := s.Append(p, 1, int64(i)); err != nil {
				t.Fatal(err)
			}
		}
		return threadFaults(t) - before
	}
	// flush flushes and waits for the preparer to take the advice, then
	// for its touches.
	flush := func() {
		s.flush()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s.muLock()
			queued := len(s.pr.advise)
			s.muUnlock()
			if queued == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
	}
	writeFaults(1) // the first record
	s.muLock()
	mapped := s.wmap != nil && s.pr != nil
	s.muUnlock()
	if !mapped {
		t.Skip("not writing through a mapping here: nothing to fault in")
	}
	// The pages of the first windows were faulted in as the segment was
	// prepared: base is what the writer's thread takes anyway (none here).
	const n = 128
	base := writeFaults(n)
	if base > n/2 {
		t.Skipf("the writer took %d page faults in %d pages of a prepared segment before any flush: the windows ahead are not faulted in here", base, n)
	}
	flush()
	f := writeFaults(n)
	t.Logf("%d page faults writing %d pages after a flush, %d before", f, n, base)
	if f > base+n/8 {
		t.Errorf("the writer took %d page faults writing %d pages after a flush, %d before it; want at most %d", f, n, base, base+n/8)
	}
	flush()
	writeFaults(2) // a quiet interval
	flush()
	if f := writeFaults(n); f < base+n/2 {
		t.Errorf("after an interval that wrote 2 pages the writer took %d page faults writing %d more (%d before the first flush): the flush faulted in more than the interval wrote", f, n, base)
	}
}

// TestPreparedGivenUp checks a segment prepared ahead and given up (Append
// created a later one itself): if a crash leaves it before the later one,
// a flagged header and zeros, Open removes it without counting a corrupt
// segment, and every record is read back; a segment of zeros only there,
// header included, is still set aside as corrupt (it may have lost
// records: nothing says it never held any).
func TestPreparedGivenUp(t *testing.T) {
	for _, flagged := range []bool{true, false} {
		dir := t.TempDir()
		o := Options{Dir: dir, SegmentSize: 1000, Sync: SyncNever}
		s := openT(t, o)
		appendN(t, s, 0, 12, 80) // segments 1 and 2
		nums := segNums(s)
		crash(s)
		for _, n := range nums[1:] {
			os.Rename(filepath.Join(dir, segmentName(n)), filepath.Join(dir, segmentName(n+1)))
			b, _ := os.ReadFile(filepath.Join(dir, segmentName(n+1)))
			putHeader(b, n+1, 1, 0)
			os.WriteFile(filepath.Join(dir, segmentName(n+1)), b, 0o600)
		}
		// Where the second segment was: a prepared one, never taken.
		given := make([]byte, 1000)
		if flagged {
			putHeader(given, nums[1], 1, headerPrepared)
		}
		if err := os.WriteFile(filepath.Join(dir, segmentName(nums[1])), given, 0o600); err != nil {
			t.Fatal(err)
		}
		s2 := openT(t, o)
		st := s2.Stats()
		if got := ids(t, drain(t, s2)); !equalInts(got, seq(0, 12)) {
			t.Fatalf("flagged %v: read back %v", flagged, got)
		}
		want := 0
		if !flagged {
			want = 1
		}
		if st.CorruptSegments != want {
			t.Errorf("flagged %v: %d corrupt segments, want %d", flagged, st.CorruptSegments, want)
		}
		if _, err := os.Stat(filepath.Join(dir, segmentName(nums[1]))); !os.IsNotExist(err) {
			t.Errorf("flagged %v: the given-up segment's file is still there: %v", flagged, err)
		}
	}
}
