//go:build linux

package spool

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestClassifyFallocate(t *testing.T) {
	tests := []struct {
		err                error
		noPrealloc, perSeg bool // errNoPrealloc; errMapFallback; neither: an append error
	}{
		{err: syscall.EOPNOTSUPP, noPrealloc: true},
		{err: syscall.ENOSYS, noPrealloc: true},
		{err: syscall.EINVAL, noPrealloc: true},
		{err: syscall.EFBIG, perSeg: true},
		{err: syscall.ENOSPC},
		{err: syscall.EDQUOT},
		{err: syscall.EIO},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			got := classifyFallocate(tc.err)
			if errors.Is(got, errNoPrealloc) != tc.noPrealloc || errors.Is(got, errMapFallback) != tc.perSeg {
				t.Fatalf("classifyFallocate(%v) = %v", tc.err, got)
			}
			if !tc.noPrealloc && !tc.perSeg && !errors.Is(got, tc.err) {
				t.Fatalf("append error %v does not wrap %v", got, tc.err)
			}
		})
	}
}

// TestMmapFileSizes checks the sizes on disk: the segment being written is
// preallocated to SegmentSize, rolled segments are cut to their valid size
// and Close cuts the newest; Stats.Bytes counts valid bytes only.
func TestMmapFileSizes(t *testing.T) {
	dir := t.TempDir()
	const segSize = 1000
	s := openT(t, Options{Dir: dir, SegmentSize: segSize, Sync: SyncNever})
	appendN(t, s, 0, 20, 80) // frames of 100 bytes: 9 per segment
	if !mapped(s) {
		t.Fatal("not writing through a mapping")
	}
	// The segments' numbers: a number given to a segment being prepared
	// when the writer rolled is not used. The one prepared ahead, a
	// header and zeros, is not among the files compared.
	nums := segNums(s)
	if len(nums) != 3 {
		t.Fatalf("segments %v, want 3", nums)
	}
	sizes := recordFileSizes(t, dir)
	want := map[string]int64{
		segmentName(nums[0]): headerSize + 9*100,
		segmentName(nums[1]): headerSize + 9*100,
		segmentName(nums[2]): segSize, // preallocated, 2 records
	}
	if len(sizes) != len(want) {
		t.Fatalf("segment files %v, want %v", sizes, want)
	}
	for name, n := range want {
		if sizes[name] != n {
			t.Fatalf("segment files %v, want %v", sizes, want)
		}
	}
	if st := s.Stats(); st.Bytes != 2*(headerSize+900)+headerSize+200 {
		t.Fatalf("Stats.Bytes = %d, want the valid bytes", st.Bytes)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := segFileSizes(t, dir)[segmentName(nums[2])]; got != headerSize+200 {
		t.Fatalf("newest segment after Close: %d bytes, want %d", got, headerSize+200)
	}
	s2 := openT(t, Options{Dir: dir, SegmentSize: segSize})
	if st := s2.Stats(); st.TruncatedBytes != 0 || st.CorruptSegments != 0 || st.RecoveredRecords != 20 {
		t.Fatalf("reopen after Close: %+v", st)
	}
}

// TestMmapCrashZeroTail abandons a spool like a killed process (the newest
// segment keeps its preallocated zero tail): Open cuts the tail and
// delivers every record.
func TestMmapCrashZeroTail(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, SegmentSize: 4096, Sync: SyncInterval}
	s := openT(t, o)
	appendN(t, s, 0, 50, 100) // frames of 120 bytes: 33 per segment
	nums := segNums(s)
	crash(s)
	if got := segFileSizes(t, dir)[segmentName(nums[len(nums)-1])]; len(nums) != 2 || got != 4096 {
		t.Fatalf("newest segment after the crash: %d bytes, want 4096 (preallocated)", got)
	}
	s2 := openT(t, o)
	st := s2.Stats()
	if st.TruncatedBytes != 4096-(headerSize+17*120) || st.CorruptSegments != 0 {
		t.Fatalf("after the crash: %+v", st)
	}
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(0, 50)) {
		t.Fatalf("after the crash: %v", got)
	}
}

// TestMmapAppendNoSyscall checks that an Append through the mapping makes
// no write (nor sync in SyncNever), and that the record is readable at once
// through another file descriptor: it is in the page cache.
func TestMmapAppendNoSyscall(t *testing.T) {
	ffs := &faultFS{mmap: true}
	s := openT(t, Options{FS: ffs, Sync: SyncNever})
	s.Append(payload(0, 20), 1, 0)
	writes := 0
	ffs.set(false, func(op, name string) error {
		if op == "write" {
			writes++
		}
		return nil
	})
	for i := range 10 {
		if err := s.Append(payload(i, 200), 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	if writes != 0 || ffs.syncs.Load() != 0 {
		t.Fatalf("10 appends through the mapping made %d writes and %d syncs", writes, ffs.syncs.Load())
	}
	f, err := os.Open(filepath.Join(s.o.Dir, segmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	res := scanSegment(f, fi.Size(), 1, s.o.MaxRecordSize, -1, bufio.NewReader(nil))
	if res.records != 11 || res.validEnd != headerSize+40+10*220 || res.damage != damageZero {
		t.Fatalf("scan of the file being written: %+v", res)
	}
}

// TestMmapFallback checks the segments that cannot be mapped: a filesystem
// without preallocation turns the mmap writer off for good, a per-segment
// failure (EFBIG, mmap) writes that segment with write(2), and a disk
// error (ENOSPC) is an append error that leaves no file.
func TestMmapFallback(t *testing.T) {
	tests := map[string]struct {
		err         error
		appendErr   bool // Append fails
		mappedAfter bool // the segment after the next roll is mapped
	}{
		"no preallocation": {err: classifyFallocate(syscall.EOPNOTSUPP)},
		"file too large":   {err: classifyFallocate(syscall.EFBIG), mappedAfter: true},
		"mmap fails":       {err: errMapFallback, mappedAfter: true},
		"disk full":        {err: classifyFallocate(syscall.ENOSPC), appendErr: true, mappedAfter: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ffs := &faultFS{mmap: true}
			o := Options{Dir: dir, FS: ffs, SegmentSize: 500, Sync: SyncBatch}
			s := openT(t, o)
			ffs.set(false, failOn(tc.err, segmentSuffix, "map"))
			err := s.Append(payload(0, 100), 1, 0)
			ffs.set(false, nil)
			if tc.appendErr {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Append = %v, want ENOSPC", err)
				}
				if st := s.Stats(); st.WriteErrors != 1 || st.Segments != 0 || len(segFileSizes(t, dir)) != 0 {
					t.Fatalf("after the failed creation: %+v, files %v", st, segFileSizes(t, dir))
				}
			} else {
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				if mapped(s) {
					t.Fatal("segment mapped after the mapping failed")
				}
			}
			appendN(t, s, 1, 8, 100) // 4 frames of 120 bytes per segment: rolls
			if mapped(s) != tc.mappedAfter {
				t.Fatalf("later segment mapped: %v, want %v", mapped(s), tc.mappedAfter)
			}
			want := seq(0, 9)
			if tc.appendErr {
				want = seq(1, 9)
			}
			if got := ids(t, drain(t, s)); !equalInts(got, want) {
				t.Fatalf("read %v, want %v", got, want)
			}
			s.Close()
			s2 := openT(t, Options{Dir: dir, SegmentSize: 500})
			if st := s2.Stats(); st.TruncatedBytes != 0 || st.CorruptSegments != 0 {
				t.Fatalf("reopen: %+v", st)
			}
			if got := ids(t, drain(t, s2)); !equalInts(got, want) {
				t.Fatalf("after reopen %v, want %v", got, want)
			}
		})
	}
}

// TestMmapSyncFailure: in SyncBatch a failed fsync takes the record back
// and abandons the mapped segment, cut to its valid records.
func TestMmapSyncFailure(t *testing.T) {
	dir := t.TempDir()
	ffs := &faultFS{mmap: true}
	o := Options{Dir: dir, FS: ffs, Sync: SyncBatch}
	s := openT(t, o)
	appendN(t, s, 0, 3, 100)
	ffs.set(false, failOn(syscall.EIO, segmentSuffix, "sync"))
	if err := s.Append(payload(3, 100), 1, 3); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Append = %v, want EIO", err)
	}
	if got := segFileSizes(t, dir)[segmentName(1)]; got != headerSize+3*120 {
		t.Fatalf("abandoned segment: %d bytes, want its 3 records", got)
	}
	ffs.set(false, nil)
	appendN(t, s, 4, 2, 100)
	if st := s.Stats(); st.Segments != 2 || st.WriteErrors != 1 || st.SyncErrors != 1 {
		t.Fatalf("after the fault: %+v", st)
	}
	s.Close()
	s2 := openT(t, Options{Dir: dir})
	if got := ids(t, drain(t, s2)); !equalInts(got, []int{0, 1, 2, 4, 5}) {
		t.Fatalf("after reopen: %v", got)
	}
	if st := s2.Stats(); st.CorruptSegments != 0 || st.TruncatedBytes != 0 {
		t.Fatalf("reopen: %+v", st)
	}
}

// TestMmapFault cuts the file being written behind the spool's back: the
// next write through the mapping faults (SIGBUS), which Append returns as
// an error instead of crashing, and the next Append starts a new segment.
func TestMmapFault(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, Sync: SyncNever})
	appendN(t, s, 0, 3, 100)
	if err := os.Truncate(filepath.Join(dir, segmentName(1)), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(payload(3, 100), 1, 3); !errors.Is(err, errMapFault) {
		t.Fatalf("Append after the file was cut = %v, want a fault error", err)
	}
	if err := s.Append(payload(4, 100), 1, 4); err != nil {
		t.Fatalf("Append in a new segment: %v", err)
	}
	if st := s.Stats(); st.Segments != 2 || st.WriteErrors != 1 {
		t.Fatalf("after the fault: %+v", st)
	}
}

// TestMmapFaultFrame is TestMmapFault for "always" mode's append
// (AppendFrameMark), whose copy into the mapping has a path of its own:
// the fault is returned once, counted once, and the next record goes to a
// new segment (numbered after the cut one: 2, or 3 when the number 2 was
// given to a segment still being prepared).
func TestMmapFaultFrame(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, Sync: SyncNever})
	for i := range 3 {
		if _, err := s.AppendFrameMark(frameOf(t, payload(i, 100), 1, int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(filepath.Join(dir, segmentName(1)), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendFrameMark(frameOf(t, payload(3, 100), 1, 3)); !errors.Is(err, errMapFault) {
		t.Fatalf("AppendFrameMark after the file was cut = %v, want a fault error", err)
	}
	m, err := s.AppendFrameMark(frameOf(t, payload(4, 100), 1, 4))
	if err != nil {
		t.Fatalf("AppendFrameMark in a new segment: %v", err)
	}
	if st := s.Stats(); st.Segments != 2 || st.WriteErrors != 1 || m.Segment < 2 || m.Segment > 3 || m.Records != 1 {
		t.Fatalf("after the fault: %+v, mark %+v", st, m)
	}
}

// A spool left by the mmap writer's crash (a preallocated zero tail) is
// opened by the write path, as a buffer in "spill" mode does after a run
// in "always" mode, and the other way round: every record is read back,
// and new ones follow in order.
func TestWriterChangeAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	mm := Options{Dir: dir, SegmentSize: 4096, Sync: SyncInterval}
	wr := mm
	wr.NoMmap = true
	s := openT(t, mm)
	appendN(t, s, 0, 50, 100)
	crash(s)
	s2 := openT(t, wr)
	appendN(t, s2, 50, 20, 100)
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	s3 := openT(t, mm)
	appendN(t, s3, 70, 10, 100)
	if got := ids(t, drain(t, s3)); !equalInts(got, seq(0, 80)) {
		t.Fatalf("records read back: %v", got)
	}
	if st := s3.Stats(); st.CorruptSegments != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestPopulate checks the preparer's populate: every page of the range
// becomes resident, the words a writer already filled keep their values
// (the touch writes nothing), and a fault (the file cut behind the
// mapping) ends it without a crash. populateFirst, the kernel's
// population of a new file's first step, makes its pages resident too.
func TestPopulate(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "seg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 1 << 20
	m, err := mapSegment(f, size)
	if err != nil {
		t.Skipf("no mapping on this filesystem: %v", err)
	}
	defer unmapSegment(m)
	want := make([]byte, size)
	for _, off := range []int{0, 4 << 10, 4<<10 + 2, 64 << 10, size - 4<<10} {
		m[off], want[off] = 0xA5, 0xA5 // as if the writer had been there
	}
	before := mappingRss(t, m)
	populate(m)
	if after := mappingRss(t, m); after < size {
		t.Fatalf("after populate %d KiB of the %d KiB mapping resident (before: %d KiB)", after>>10, size>>10, before>>10)
	}
	if !bytes.Equal(m, want) {
		i := 0
		for m[i] == want[i] {
			i++
		}
		t.Fatalf("populate changed byte %d: %#x, want %#x", i, m[i], want[i])
	}

	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	populate(m) // every page past the end now faults (SIGBUS)
	if err := writeMapped(m, touchPages); !errors.Is(err, errMapFault) {
		t.Fatalf("touching a cut mapping = %v, want a fault error", err)
	}

	// The first step of a new file is the kernel's (MADV_POPULATE_WRITE).
	g, err := os.Create(filepath.Join(t.TempDir(), "seg2"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	m2, err := mapSegment(g, size)
	if err != nil {
		t.Fatal(err)
	}
	defer unmapSegment(m2)
	populateFirst(m2[:adviseStep])
	if rss := mappingRss(t, m2); rss < adviseStep {
		t.Skipf("populateFirst left %d KiB of %d KiB resident: this kernel refuses MADV_POPULATE_WRITE (Linux 5.14 or later)", rss>>10, adviseStep>>10)
	}
}
