package spool

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// slowCursorFS holds every cursor write until released.
type slowCursorFS struct {
	OSFS
	entered chan struct{}
	release chan struct{}
}

func (f *slowCursorFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if strings.HasSuffix(name, cursorName+tmpSuffix) {
		f.entered <- struct{}{}
		<-f.release
	}
	return f.OSFS.OpenFile(name, flag, perm)
}

// TestAppendDuringCursorWrite checks that Append, Stats and Next do not
// wait for an acknowledgement's cursor write (a file write, fsync and
// rename on a slow disk), and that the acknowledgement completes after.
func TestAppendDuringCursorWrite(t *testing.T) {
	fsys := &slowCursorFS{entered: make(chan struct{}), release: make(chan struct{})}
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, FS: fsys, SegmentSize: 1000})
	var once sync.Once
	release := func() { once.Do(func() { close(fsys.release) }) }
	t.Cleanup(release) // before Close, when the test fails early
	appendN(t, s, 0, 10, 80)
	r0, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	go func() { acked <- s.Ack(r0.Pos) }()
	<-fsys.entered // the Ack is writing the cursor

	done := make(chan struct{})
	go func() {
		defer close(done)
		appendN(t, s, 10, 20, 80) // rolls segments too
		if st := s.Stats(); st.Records != 29 {
			t.Errorf("Stats.Records = %d during the cursor write, want 29", st.Records)
		}
		if _, err := s.Next(); err != nil {
			t.Errorf("Next: %v", err)
		}
	}()
	notWaiting(t, done, "Append waited for the cursor write", release, acked)
	s.Rewind()
	if got := ids(t, drain(t, s)); !equalInts(got, seq(1, 30)) {
		t.Fatalf("read back %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The cursor written survives: a new Open starts after record 0.
	s2 := openT(t, Options{Dir: dir, SegmentSize: 1000})
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(1, 30)) {
		t.Fatalf("after reopening: %v", got)
	}
}

// slowRemoveFS holds the removal of segment files until released.
type slowRemoveFS struct {
	OSFS
	entered chan string
	release chan struct{}
}

func (f *slowRemoveFS) Remove(name string) error {
	if strings.HasSuffix(name, segmentSuffix) {
		f.entered <- name
		<-f.release
	}
	return f.OSFS.Remove(name)
}

// TestAppendDuringSegmentRemoval checks that Append does not wait while an
// acknowledgement removes the segments it completed.
func TestAppendDuringSegmentRemoval(t *testing.T) {
	fsys := &slowRemoveFS{entered: make(chan string, 16), release: make(chan struct{})}
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, FS: fsys, SegmentSize: 1000, Sync: SyncNever})
	var once sync.Once
	release := func() { once.Do(func() { close(fsys.release) }) }
	t.Cleanup(release)
	appendN(t, s, 0, 20, 80) // segments 1 and 2 full, 3 partly
	recs := drain(t, s)
	acked := make(chan error, 1)
	go func() { acked <- s.Ack(recs[len(recs)-1].Pos) }()
	if name := <-fsys.entered; !strings.HasSuffix(name, segmentName(1)) {
		t.Fatalf("removing %s first, want segment 1", name)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		appendN(t, s, 20, 20, 80)
	}()
	notWaiting(t, done, "Append waited for a segment removal", release, acked)
	for _, name := range []string{segmentName(1), segmentName(2)} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s after the Ack returned: %v", name, err)
		}
	}
	if got := ids(t, drain(t, s)); !equalInts(got, seq(20, 40)) {
		t.Fatalf("read back %v", got)
	}
}

// notWaiting fails the test with msg unless done closes within 10 s while
// the acknowledgement is held; then it lets the acknowledgement go and
// checks its result.
func notWaiting(t *testing.T, done <-chan struct{}, msg string, release func(), acked <-chan error) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal(msg)
	}
	release()
	if err := <-acked; err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

// cursorCreates counts how often the temporary cursor file was created.
type cursorCreateFS struct {
	faultFS
	creates atomic.Int64
}

func (f *cursorCreateFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag&os.O_CREATE != 0 && strings.HasSuffix(name, cursorName+tmpSuffix) {
		f.creates.Add(1)
	}
	return f.faultFS.OpenFile(name, flag, perm)
}

// readCursorFile parses the cursor file in dir.
func readCursorFile(t *testing.T, dir string) (uint64, int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, cursorName))
	if err != nil {
		t.Fatal(err)
	}
	seg, off, err := parseCursor(b)
	if err != nil {
		t.Fatalf("cursor file: %v", err)
	}
	return seg, off
}

// TestCursorOverwrittenInPlace checks that acknowledgements after the
// first overwrite the cursor file (same file, no new temporary file), that
// it always holds the last acknowledgement, and that a new Open resumes
// from it.
func TestCursorOverwrittenInPlace(t *testing.T) {
	dir := t.TempDir()
	fsys := &cursorCreateFS{}
	s := openT(t, Options{Dir: dir, FS: fsys, Sync: SyncBatch})
	appendN(t, s, 0, 10, 60)
	recs := drain(t, s)
	if err := s.Ack(recs[0].Pos); err != nil {
		t.Fatal(err)
	}
	if n := fsys.creates.Load(); n != 1 {
		t.Fatalf("first cursor written with %d temporary files, want 1 (no cursor yet)", n)
	}
	first, err := os.Stat(filepath.Join(dir, cursorName))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 6; i++ {
		if err := s.Ack(recs[i].Pos); err != nil {
			t.Fatal(err)
		}
		seg, off := readCursorFile(t, dir)
		if want := recs[i+1].Pos; seg != want.Segment || off != want.Offset {
			t.Fatalf("after Ack %d the cursor is %d/%d, want %d/%d", i, seg, off, want.Segment, want.Offset)
		}
	}
	if n := fsys.creates.Load(); n != 1 {
		t.Fatalf("%d temporary cursor files in all, want 1: later cursors should be written in place", n)
	}
	now, err := os.Stat(filepath.Join(dir, cursorName))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(first, now) || now.Size() != cursorSize {
		t.Fatalf("cursor file replaced or resized (%d bytes)", now.Size())
	}
	s.Close()
	s2 := openT(t, Options{Dir: dir})
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(6, 10)) {
		t.Fatalf("after reopening: %v", got)
	}
}

// TestCursorReplacedWhenInvalid checks that a cursor file that is not a
// valid cursor (here too long) is replaced, not overwritten in place,
// which would leave its extra bytes and keep it invalid.
func TestCursorReplacedWhenInvalid(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir})
	appendN(t, s, 0, 6, 60)
	s.Close()
	var b [cursorSize + 8]byte
	putCursor(b[:], 1, headerSize)
	if err := os.WriteFile(filepath.Join(dir, cursorName), b[:], 0o600); err != nil {
		t.Fatal(err)
	}
	fsys := &cursorCreateFS{}
	s = openT(t, Options{Dir: dir, FS: fsys})
	if st := s.Stats(); st.CursorResets != 1 {
		t.Fatalf("CursorResets = %d, want 1", st.CursorResets)
	}
	recs := drain(t, s)
	if err := s.Ack(recs[2].Pos); err != nil {
		t.Fatal(err)
	}
	if n := fsys.creates.Load(); n != 1 {
		t.Fatalf("%d temporary cursor files, want 1: an invalid cursor is replaced", n)
	}
	readCursorFile(t, dir) // whole and valid
	s.Close()
	s2 := openT(t, Options{Dir: dir})
	if st := s2.Stats(); st.CursorResets != 0 {
		t.Fatalf("CursorResets = %d after the replacement", st.CursorResets)
	}
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(3, 6)) {
		t.Fatalf("after reopening: %v", got)
	}
}

// TestCursorOverwriteFault checks that a failed overwrite (a write error
// after half the bytes, leaving a torn cursor) falls back to replacing the
// file: the acknowledgement succeeds and the cursor is valid.
func TestCursorOverwriteFault(t *testing.T) {
	dir := t.TempDir()
	fsys := &cursorCreateFS{}
	s := openT(t, Options{Dir: dir, FS: fsys, Sync: SyncBatch})
	appendN(t, s, 0, 8, 60)
	recs := drain(t, s)
	if err := s.Ack(recs[0].Pos); err != nil {
		t.Fatal(err)
	}
	fsys.set(true, failOn(syscall.EIO, string(filepath.Separator)+cursorName, "write"))
	if err := s.Ack(recs[3].Pos); err != nil {
		t.Fatalf("Ack with a failing overwrite: %v", err)
	}
	fsys.set(false, nil)
	if n := fsys.creates.Load(); n != 2 {
		t.Fatalf("%d temporary cursor files, want 2 (the first cursor, the fallback)", n)
	}
	if seg, off := readCursorFile(t, dir); seg != recs[4].Pos.Segment || off != recs[4].Pos.Offset {
		t.Fatalf("cursor %d/%d, want %d/%d", seg, off, recs[4].Pos.Segment, recs[4].Pos.Offset)
	}
	// In place again after the replacement.
	if err := s.Ack(recs[5].Pos); err != nil {
		t.Fatal(err)
	}
	if n := fsys.creates.Load(); n != 2 {
		t.Fatalf("%d temporary cursor files, want 2", n)
	}
	s.Close()
	s2 := openT(t, Options{Dir: dir})
	if got := ids(t, drain(t, s2)); !equalInts(got, seq(6, 8)) {
		t.Fatalf("after reopening: %v", got)
	}
}

// TestCursorFlushedWithTheInterval checks when the cursor file is flushed:
// in SyncBatch by every acknowledgement; in SyncInterval not by the
// acknowledgements (an fsync each held the sender between pushes) but by
// the sync goroutine's next flush and by Close, once for all of them, a
// failed flush counted and reported; in SyncNever never.
func TestCursorFlushedWithTheInterval(t *testing.T) {
	for _, mode := range []SyncMode{SyncBatch, SyncInterval, SyncNever} {
		t.Run(string(mode), func(t *testing.T) {
			var cursorSyncs atomic.Int64
			var failSync atomic.Bool
			ffs := &faultFS{}
			ffs.set(false, func(op, name string) error {
				if op == "sync" && strings.HasSuffix(name, string(filepath.Separator)+cursorName) {
					cursorSyncs.Add(1)
					if failSync.Load() {
						return syscall.EIO
					}
				}
				return nil
			})
			var reported atomic.Int64
			s := openT(t, Options{FS: ffs, Sync: mode, SyncInterval: time.Hour,
				ErrorHandler: func(err error) {
					if msg := err.Error(); strings.Contains(msg, "sync ") && strings.HasSuffix(strings.SplitN(msg, ":", 2)[0], cursorName) {
						reported.Add(1)
					}
				}})
			appendN(t, s, 0, 20, 100)
			ack := func(n int) {
				t.Helper()
				for range n {
					r, err := s.Next()
					if err != nil {
						t.Fatal(err)
					}
					if err := s.Ack(r.Pos); err != nil {
						t.Fatal(err)
					}
				}
			}
			ack(1) // the first cursor file: written whole and flushed (not in SyncNever)
			before := cursorSyncs.Load()
			ack(10) // in place
			got := cursorSyncs.Load() - before
			want := map[SyncMode]int64{SyncBatch: 10}[mode]
			if got != want {
				t.Fatalf("10 acknowledgements flushed the cursor %d times, want %d", got, want)
			}
			s.flush() // what the sync goroutine does every SyncInterval
			got = cursorSyncs.Load() - before
			want = map[SyncMode]int64{SyncBatch: 10, SyncInterval: 1}[mode]
			if got != want {
				t.Fatalf("after a flush: %d cursor flushes, want %d", got, want)
			}
			s.flush() // nothing acknowledged since
			if n := cursorSyncs.Load() - before; n != got {
				t.Fatalf("a second flush flushed the cursor again (%d)", n-got)
			}
			ack(1)
			failSync.Store(true)
			s.flush()
			wantFail := int64(0)
			if mode == SyncInterval {
				wantFail = 1
			}
			if st := s.Stats(); int64(st.SyncErrors) != wantFail || reported.Load() != wantFail {
				t.Fatalf("failed cursor flush: SyncErrors %d, reported %d; want %d", st.SyncErrors, reported.Load(), wantFail)
			}
			failSync.Store(false)
			ack(1)
			before = cursorSyncs.Load()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			want = map[SyncMode]int64{SyncInterval: 1}[mode]
			if got := cursorSyncs.Load() - before; got != want {
				t.Fatalf("Close flushed the cursor %d times, want %d", got, want)
			}
		})
	}
}

// TestFullSpoolRemovesDroppedSegmentsOffTheAppend: when MaxBytes makes an
// append drop the oldest segment, the preparer removes its file: the
// appends go on while the removal waits, and Close leaves no dropped
// segment's file behind.
func TestFullSpoolRemovesDroppedSegmentsOffTheAppend(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentSize: 1000, MaxBytes: 3000, Sync: SyncNever})
	if s.pr == nil {
		t.Skip("no preparer on this platform (no mmap writer): a drop removes its file in the append")
	}
	// The preparer runs only on the OS filesystem: slow its removals down
	// from here on (nothing has woken it yet).
	fsys := &slowRemoveFS{entered: make(chan string, 64), release: make(chan struct{})}
	s.fs = fsys
	var once sync.Once
	release := func() { once.Do(func() { close(fsys.release) }) }
	t.Cleanup(release)
	done := make(chan struct{})
	go func() {
		defer close(done)
		appendN(t, s, 0, 80, 80) // about 8,000 bytes: segments dropped
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Append waited for the removal of a dropped segment")
	}
	if name := <-fsys.entered; !strings.HasSuffix(name, segmentName(1)) {
		t.Fatalf("removing %s first, want segment 1", name)
	}
	st := s.Stats()
	if st.DroppedFullRecords == 0 {
		t.Fatalf("nothing dropped: %+v", st)
	}
	release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(segFileSizes(t, dir)); n != st.Segments {
		t.Errorf("%d segment files after Close, the spool has %d segments", n, st.Segments)
	}
}
