//go:build unix

package spool

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestSIGKILL kills a child process (this test binary re-executed, see
// childMain) in the middle of appending, twice, and checks that the next
// Open delivers every record whose Append returned, in order, exactly once,
// and nothing acknowledged.
//
// On the mmap path the killed child leaves its newest segment at its
// preallocated size with a zero tail, which Open truncates.
func TestSIGKILL(t *testing.T) {
	eachWriter(t, testSIGKILL)
}

func testSIGKILL(t *testing.T, noMmap bool) {
	dir := t.TempDir()
	from, acked := 0, -1
	for round := range 2 {
		last, writer := runChildUntilKilled(t, dir, from, 2000, noMmap)
		if want := map[bool]string{false: "writer=mmap", true: "writer=write"}[noMmap]; writer != want {
			t.Fatalf("child reported %q, want %q", writer, want)
		}
		s, err := Open(Options{Dir: dir, SegmentSize: 4096, Sync: SyncNever, NoMmap: noMmap})
		if err != nil {
			t.Fatal(err)
		}
		recs := drain(t, s)
		got := ids(t, recs)
		// The kill may land after an Append returned and before its id
		// was printed: one more record than printed is fine.
		if !equalInts(got, seq(acked+1, last+1)) && !equalInts(got, seq(acked+1, last+2)) {
			s.Close()
			t.Fatalf("round %d: recovered %d records %v..., want %d..%d (or one more)", round, len(got), got[:min(5, len(got))], acked+1, last)
		}
		st := s.Stats()
		t.Logf("round %d: child printed up to %d; recovered %d records, truncated %d bytes", round, last, len(got), st.TruncatedBytes)
		if st.CorruptSegments != 0 {
			t.Errorf("round %d: %d corrupt segments after SIGKILL", round, st.CorruptSegments)
		}
		// Acknowledge up to a record in the middle, then let the next
		// child append behind the rest.
		mid := len(recs) / 2
		if err := s.Ack(recs[mid].Pos); err != nil {
			t.Fatal(err)
		}
		acked = got[mid]
		from = got[len(got)-1] + 1
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// runChildUntilKilled starts a child appending ids from `from`, kills it
// with SIGKILL once it printed at least n ids, and returns the last id it
// printed and the writer line it printed.
func runChildUntilKilled(t *testing.T, dir string, from, n int, noMmap bool) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, "LOKISLOG_SPOOL_CHILD_FROM="+strconv.Itoa(from))
	if noMmap {
		cmd.Env = append(cmd.Env, childNoMmapEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	last, seen, killed, writer := -1, 0, false, ""
	for sc.Scan() {
		id, err := strconv.Atoi(sc.Text())
		if strings.HasPrefix(sc.Text(), "writer=") {
			writer = sc.Text()
		}
		if err != nil {
			continue // a line cut by the kill, or the writer line
		}
		if id != from+seen {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child printed %d, want %d", id, from+seen)
		}
		last = id
		seen++
		if seen >= n && !killed {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true
		}
	}
	err = cmd.Wait()
	if !killed || err == nil {
		t.Fatalf("child ended on its own after %d records: %v", seen, err)
	}
	return last, writer
}

// childDiskFull runs in a child process with a file size limit
// (RLIMIT_FSIZE): it appends until the disk is "full", checks the error,
// lifts the limit and appends again. It prints "full <n>" with the number
// of records appended before the limit and "ok" at the end.
func childDiskFull(dir string) int {
	signal.Ignore(syscall.SIGXFSZ) // get EFBIG instead of dying
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		fmt.Println("getrlimit:", err)
		return 2
	}
	lim := old
	lim.Cur = 16 << 10
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		fmt.Println("setrlimit:", err)
		return 2
	}
	s, err := Open(Options{Dir: dir, SegmentSize: 64 << 10, Sync: SyncBatch, NoMmap: os.Getenv(childNoMmapEnv) != ""})
	if err != nil {
		fmt.Println("open:", err)
		return 2
	}
	n := 0
	for ; ; n++ {
		err := s.Append(payload(n, 150), 1, 0)
		if err == nil {
			continue
		}
		if !errors.Is(err, syscall.EFBIG) {
			fmt.Println("append error is not EFBIG:", err)
			return 3
		}
		break
	}
	// Full again: still an error, never a hang.
	if err := s.Append(payload(n, 150), 1, 0); !errors.Is(err, syscall.EFBIG) {
		fmt.Println("second append:", err)
		return 3
	}
	fmt.Println("full", n)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		fmt.Println("setrlimit:", err)
		return 2
	}
	for i := n; i < n+5; i++ {
		if err := s.Append(payload(i, 150), 1, 0); err != nil {
			fmt.Println("append after the limit was lifted:", err)
			return 3
		}
	}
	if err := s.Close(); err != nil {
		fmt.Println("close:", err)
		return 3
	}
	fmt.Println("ok")
	return 0
}

// TestDiskFullFileSizeLimit runs childDiskFull: a real write failure
// (EFBIG from RLIMIT_FSIZE, standing in for a full disk), then recovery.
//
// On the mmap path the preallocation of the 64 KiB segment fails with
// EFBIG, and the segment falls back to the write path, which writes what
// fits under the limit.
func TestDiskFullFileSizeLimit(t *testing.T) {
	eachWriter(t, testDiskFullFileSizeLimit)
}

func testDiskFullFileSizeLimit(t *testing.T, noMmap bool) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir, childFullEnv+"=1")
	if noMmap {
		cmd.Env = append(cmd.Env, childNoMmapEnv+"=1")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var n int
	var ok string
	if _, err := fmt.Sscanf(string(out), "full %d\n%s", &n, &ok); err != nil || ok != "ok" {
		t.Fatalf("child output %q: %v", out, err)
	}
	// 16 KiB holds (16384-32)/170 = 96 frames of 170 bytes.
	if n != (16<<10-headerSize)/(frameHeaderSize+150) {
		t.Fatalf("child appended %d records before the limit", n)
	}
	s := openT(t, Options{Dir: dir, SegmentSize: 64 << 10})
	st := s.Stats()
	if st.TruncatedBytes != 0 || st.CorruptSegments != 0 {
		t.Fatalf("garbage after the failed writes: %+v", st)
	}
	if got := ids(t, drain(t, s)); !equalInts(got, seq(0, n+5)) {
		t.Fatalf("recovered %d records, want 0..%d", len(got), n+4)
	}
}
