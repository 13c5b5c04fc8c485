package spool

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
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
