package spool

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// segFileSizes returns the sizes of the segment files in dir.
func segFileSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, de := range des {
		if strings.HasSuffix(de.Name(), segmentSuffix) {
			fi, _ := de.Info()
			out[de.Name()] = fi.Size()
		}
	}
	return out
}

// segNums returns the numbers of s's segments, oldest first: a number
// taken by a segment being prepared when the writer rolled is not among
// them.
func segNums(s *Spool) []uint64 {
	s.muLock()
	defer s.muUnlock()
	var nums []uint64
	for _, g := range s.segs {
		nums = append(nums, g.num)
	}
	return nums
}

// recordFileSizes is segFileSizes without the segments prepared ahead and
// not taken by the writer (preparedUnused).
func recordFileSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := segFileSizes(t, dir)
	for name := range out {
		n, _ := parseSegmentName(name)
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if preparedUnused(f, n, bufio.NewReader(nil)) {
			delete(out, name)
		}
		f.Close()
	}
	return out
}

func TestAppendFaults(t *testing.T) {
	tests := map[string]struct {
		err     error
		partial bool
		ops     []string // failing operations on .seg files
		sync    SyncMode
		// newSegment: after the fault the next Append starts a new segment.
		newSegment bool
		// corruptAtReopen: the abandoned segment keeps a garbage tail that
		// the next Open sets aside (its valid records are kept).
		corruptAtReopen bool
	}{
		"ENOSPC mid-write":               {err: syscall.ENOSPC, partial: true, ops: []string{"write"}, sync: SyncNever},
		"ENOSPC mid-write, no truncate":  {err: syscall.ENOSPC, partial: true, ops: []string{"write", "truncate"}, sync: SyncNever, newSegment: true, corruptAtReopen: true},
		"EIO write nothing written":      {err: syscall.EIO, ops: []string{"write"}, sync: SyncInterval},
		"EROFS on write":                 {err: syscall.EROFS, ops: []string{"write"}, sync: SyncBatch},
		"EIO on sync":                    {err: syscall.EIO, ops: []string{"sync"}, sync: SyncBatch, newSegment: true},
		"EACCES on write, then truncate": {err: syscall.EACCES, ops: []string{"write"}, sync: SyncNever},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ffs := &faultFS{}
			o := Options{Dir: dir, FS: ffs, Sync: tc.sync, MaxRecordSize: 4096}
			s := openT(t, o)
			appendN(t, s, 0, 3, 100)
			before := segFileSizes(t, dir)

			ffs.set(tc.partial, failOn(tc.err, segmentSuffix, tc.ops...))
			err := s.Append(payload(3, 100), 1, 3)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Append = %v, want %v", err, tc.err)
			}
			st := s.Stats()
			if st.WriteErrors != 1 || st.Records != 3 || st.Appended != 3 {
				t.Fatalf("after the fault: %+v", st)
			}
			if !tc.corruptAtReopen {
				// The partial frame was cut off: the file is as before.
				if after := segFileSizes(t, dir); len(after) != len(before) || after[segmentName(1)] != before[segmentName(1)] {
					t.Fatalf("files after the fault %v, before %v", after, before)
				}
			}

			ffs.set(false, nil)
			appendN(t, s, 4, 2, 100)
			if st := s.Stats(); (st.Segments == 2) != tc.newSegment {
				t.Fatalf("Segments = %d, new segment expected: %v", st.Segments, tc.newSegment)
			}
			want := []int{0, 1, 2, 4, 5}
			if got := ids(t, drain(t, s)); !equalInts(got, want) {
				t.Fatalf("read %v, want %v", got, want)
			}
			s.Close()

			s2 := openT(t, Options{Dir: dir, Sync: tc.sync, MaxRecordSize: 4096})
			if got := ids(t, drain(t, s2)); !equalInts(got, want) {
				t.Fatalf("after reopen %v, want %v", got, want)
			}
			if st := s2.Stats(); (st.CorruptSegments == 1) != tc.corruptAtReopen || st.TruncatedBytes != 0 {
				t.Fatalf("reopen stats: %+v", st)
			}
		})
	}
}

func TestCreateFaults(t *testing.T) {
	for name, e := range map[string]error{"EROFS": syscall.EROFS, "EACCES": syscall.EACCES, "ENOSPC": syscall.ENOSPC} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ffs := &faultFS{}
			s := openT(t, Options{Dir: dir, FS: ffs, SegmentSize: 128, Sync: SyncBatch})
			ffs.set(false, failOn(e, segmentSuffix, "create"))
			for range 3 { // repeated failures neither hang nor leak files
				if err := s.Append(payload(0, 40), 1, 0); !errors.Is(err, e) {
					t.Fatalf("Append = %v, want %v", err, e)
				}
			}
			if got := segFileSizes(t, dir); len(got) != 0 {
				t.Fatalf("segment files after failed creates: %v", got)
			}
			ffs.set(false, nil)
			appendN(t, s, 1, 2, 40)
			if got := ids(t, drain(t, s)); !equalInts(got, []int{1, 2}) {
				t.Fatalf("read %v", got)
			}
		})
	}
}

func TestHeaderWriteFault(t *testing.T) {
	dir := t.TempDir()
	ffs := &faultFS{}
	s := openT(t, Options{Dir: dir, FS: ffs, Sync: SyncNever})
	ffs.set(true, failOn(syscall.ENOSPC, segmentSuffix, "write"))
	if err := s.Append(payload(0, 40), 1, 0); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append = %v", err)
	}
	if got := segFileSizes(t, dir); len(got) != 0 {
		t.Fatalf("a segment with a torn header was left: %v", got)
	}
	ffs.set(false, nil)
	appendN(t, s, 1, 1, 40)
	if got := ids(t, drain(t, s)); !equalInts(got, []int{1}) {
		t.Fatalf("read %v", got)
	}
}

func TestReadFault(t *testing.T) {
	ffs := &faultFS{}
	s := openT(t, Options{FS: ffs, Sync: SyncNever})
	appendN(t, s, 0, 2, 40)
	ffs.set(false, func(op, name string) error {
		if op == "open" && strings.HasSuffix(name, segmentSuffix) {
			return syscall.EACCES
		}
		return nil
	})
	if _, err := s.Next(); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("Next = %v, want EACCES", err)
	}
	ffs.set(false, nil)
	if got := ids(t, drain(t, s)); !equalInts(got, []int{0, 1}) {
		t.Fatalf("after the fault: %v", got)
	}
}

func TestCursorWriteFault(t *testing.T) {
	dir := t.TempDir()
	ffs := &faultFS{}
	o := Options{Dir: dir, FS: ffs, Sync: SyncBatch}
	s := openT(t, o)
	appendN(t, s, 0, 5, 40)
	recs := drain(t, s)
	ffs.set(false, failOn(syscall.ENOSPC, cursorName+tmpSuffix, "create"))
	if err := s.Ack(recs[1].Pos); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Ack = %v, want ENOSPC", err)
	}
	if s.Len() != 3 {
		t.Fatalf("Len = %d: the ack holds in this process", s.Len())
	}
	s.Close()
	// The cursor was not written: the acknowledged records come back
	// (duplicates, never loss).
	s2 := openT(t, Options{Dir: dir})
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(0, 5)) {
		t.Fatalf("after reopen: %v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, cursorName+tmpSuffix)); err == nil {
		t.Fatal("temporary cursor left behind")
	}
}

func TestOpenFaults(t *testing.T) {
	for name, op := range map[string]string{"mkdir": "mkdir", "lock": "lock", "list": "readdir"} {
		t.Run(name, func(t *testing.T) {
			ffs := &faultFS{}
			ffs.set(false, func(o, name string) error {
				if o == op {
					return syscall.EROFS
				}
				return nil
			})
			_, err := Open(Options{Dir: filepath.Join(t.TempDir(), "x"), FS: ffs})
			if !errors.Is(err, syscall.EROFS) {
				t.Fatalf("Open = %v, want EROFS", err)
			}
		})
	}
	t.Run("set aside fails", func(t *testing.T) {
		dir := t.TempDir()
		s := openT(t, corruptOpts(dir))
		appendN(t, s, 0, cRecords, cPayload)
		nums := segNums(s)
		s.Close()
		path := filepath.Join(dir, segmentName(nums[cMiddle-1]))
		b, _ := os.ReadFile(path)
		b[0] ^= 0xff
		os.WriteFile(path, b, 0o600)
		ffs := &faultFS{}
		ffs.set(false, failOn(syscall.EROFS, corruptSuffix, "rename"))
		o := corruptOpts(dir)
		o.FS = ffs
		if _, err := Open(o); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("Open = %v, want EROFS", err)
		}
		// The directory is not left locked.
		ffs.set(false, nil)
		s2 := openT(t, o)
		if got := ids(t, drain(t, s2)); !equalInts(got, without(3, 4, 5)) {
			t.Fatalf("after retry: %v", got)
		}
	})
}

func TestReadOnlyDirectory(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentSize: 128, Sync: SyncBatch})
	appendN(t, s, 0, 2, 40) // one record per segment
	s.Close()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	probe := filepath.Join(dir, "probe")
	if f, err := os.Create(probe); err == nil {
		f.Close()
		os.Remove(probe)
		t.Skipf("permission bits not enforced (running as uid %d): a 0500 directory is writable; TestAppendFaults and TestCreateFaults cover EACCES/EROFS through the FS seam", os.Getuid())
	}
	s2 := openT(t, Options{Dir: dir, SegmentSize: 128, Sync: SyncBatch})
	if err := s2.Append(payload(2, 40), 1, 0); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Append in a read-only directory = %v, want a permission error", err)
	}
	if got := ids(t, drain(t, s2)); !equalInts(got, []int{0, 1}) {
		t.Fatalf("read %v", got)
	}
	os.Chmod(dir, 0o700)
	appendN(t, s2, 3, 1, 40)
	if got := ids(t, drain(t, s2)); !equalInts(got, []int{3}) {
		t.Fatalf("after the directory became writable: %v", got)
	}
}
