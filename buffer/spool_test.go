package buffer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/spool"
)

// switchable fails every export while down is set.
func switchable(down *atomic.Bool) func(int, *exporter.Batch) error {
	return func(int, *exporter.Batch) error {
		if down.Load() {
			return errors.New("connection refused")
		}
		return nil
	}
}

// checkExactlyOnceInOrder checks that lines "<stream>-<i>" arrived once
// each, per stream in order, for i in [0, n).
func checkExactlyOnceInOrder(t *testing.T, r *recorder, streams, n int) {
	t.Helper()
	got := r.lines()
	total := 0
	for k, lines := range got {
		total += len(lines)
		for i, l := range lines {
			parts := strings.SplitN(l, "-", 2)
			j, _ := strconv.Atoi(parts[1])
			if j != i {
				t.Fatalf("stream %s: line %d is %q (duplicate, gap or out of order)", k, i, l)
			}
		}
	}
	if total != streams*n {
		t.Fatalf("delivered %d entries, want %d", total, streams*n)
	}
}

func logN(t *testing.T, b *Buffer, streams, from, to int, pace time.Duration) {
	t.Helper()
	for i := from; i < to; i++ {
		for s := range streams {
			line := fmt.Sprintf("%d-%d", s, i)
			if err := b.Add("", fmt.Sprintf(`{s="%d"}`, s), time.Now().UnixNano(), []byte(line), nil); err != nil {
				t.Fatalf("add %s: %v", line, err)
			}
		}
		if pace > 0 && i%100 == 0 {
			time.Sleep(pace)
		}
	}
}

func TestSpillDuringOutageThenDrain(t *testing.T) {
	for _, mode := range []string{SpoolSpill, SpoolAlways} {
		t.Run(mode, func(t *testing.T) {
			var down atomic.Bool
			down.Store(true)
			r := &recorder{fail: switchable(&down)}
			b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), SpoolMode: mode,
				BatchWait: 5 * time.Millisecond, BatchSize: 4 << 10, MaxBufferBytes: 16 << 10,
				RetryInterval: time.Millisecond, SpillAfter: 10 * time.Millisecond})
			// 3 streams x 3000 entries of ~20 bytes is far over the memory bound.
			logN(t, b, 3, 0, 3000, time.Millisecond)
			s := b.Stats()
			if len(s.Dropped) != 0 {
				t.Fatalf("dropped during the outage: %v", s.Dropped)
			}
			if s.Spilled == 0 {
				t.Fatal("nothing spilled")
			}
			down.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := b.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			checkExactlyOnceInOrder(t, r, 3, 3000)
			s = b.Stats()
			if s.SpoolEntries != 0 || s.Exported != 9000 || s.Replayed == 0 {
				t.Fatalf("stats after drain: %+v", s)
			}
			if err := b.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestReplayBatchesKeepBatchSize checks that batches read back from the
// spool stay within BatchSize: spilled batches of 60 % of BatchSize are
// sent one per request, not two together (which held twice the memory in
// the request's encoding).
func TestReplayBatchesKeepBatchSize(t *testing.T) {
	const batchSize, n = 4 << 10, 40
	var down atomic.Bool
	down.Store(true)
	r := &recorder{fail: switchable(&down)}
	b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), BatchWait: time.Hour, BatchSize: batchSize,
		MaxBufferBytes: 4 * batchSize, RetryInterval: time.Millisecond, SpillAfter: time.Millisecond})
	// One entry of 2.4 KiB per batch: a second would pass BatchSize.
	line := strings.Repeat("r", batchSize*6/10)
	for i := range n {
		add(t, b, "", `{a="b"}`, fmt.Sprintf("%03d %s", i, line))
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Spilled < n/2 {
		if time.Now().After(deadline) {
			t.Fatalf("spilled %d of %d entries while Loki was down", b.Stats().Spilled, n)
		}
		time.Sleep(time.Millisecond)
	}
	down.Store(false)
	flushAndShutdown(t, b)
	s := b.Stats()
	if s.Replayed < n/2 || s.Exported != n {
		t.Fatalf("replayed %d, exported %d of %d", s.Replayed, s.Exported, n)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for i, bt := range r.batches {
		if sz := bt.Size(); sz > batchSize {
			t.Errorf("batch %d: %d entries, %d bytes, over BatchSize (%d)", i, bt.Len(), sz, batchSize)
		}
		total += bt.Len()
	}
	if total != n {
		t.Fatalf("delivered %d entries, want %d", total, n)
	}
}

func TestRestartDeliversSpoolExactlyOnce(t *testing.T) {
	for _, mode := range []string{SpoolSpill, SpoolAlways} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			var down atomic.Bool
			down.Store(true)
			r1 := &recorder{fail: switchable(&down)}
			b1 := mustNew(t, Config{Exporter: r1, SpoolDir: dir, SpoolMode: mode, RetryInterval: time.Millisecond})
			logN(t, b1, 2, 0, 500, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			if err := b1.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown with a spool should keep the rest on disk: %v", err)
			}
			if s := b1.Stats(); len(s.Dropped) != 0 || s.Exported != 0 {
				t.Fatalf("first process: %+v", s)
			}
			// A new process on the same directory, Loki up.
			r2 := &recorder{}
			b2 := mustNew(t, Config{Exporter: r2, SpoolDir: dir, SpoolMode: mode})
			// New data goes behind the backlog.
			logN(t, b2, 2, 500, 600, 0)
			if err := b2.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := b2.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkExactlyOnceInOrder(t, r2, 2, 600)
			// A third start sends nothing again.
			r3 := &recorder{}
			b3 := mustNew(t, Config{Exporter: r3, SpoolDir: dir, SpoolMode: mode})
			if err := b3.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if r3.count() != 0 {
				t.Fatalf("third start resent %d entries", r3.count())
			}
		})
	}
}

func TestSecondBufferOnSameDirFails(t *testing.T) {
	dir := t.TempDir()
	b := mustNew(t, Config{Exporter: &recorder{}, SpoolDir: dir})
	defer b.Shutdown(context.Background())
	_, err := New(Config{Exporter: &recorder{}, SpoolDir: dir})
	if !errors.Is(err, spool.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("got %v", err)
	}
}

func TestReplayDropsEntriesOlderThanMaxAge(t *testing.T) {
	dir := t.TempDir()
	var down atomic.Bool
	down.Store(true)
	b1 := mustNew(t, Config{Exporter: &recorder{fail: switchable(&down)}, SpoolDir: dir, SpoolMode: SpoolAlways})
	old := time.Now().Add(-8 * 24 * time.Hour).UnixNano()
	for i := range 10 {
		ts := time.Now().UnixNano()
		if i < 4 {
			ts = old + int64(i)
		}
		if err := b1.Add("", `{a="b"}`, ts, []byte(fmt.Sprint(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	b1.Shutdown(ctx)
	r := &recorder{}
	b2 := mustNew(t, Config{Exporter: r, SpoolDir: dir})
	if err := b2.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b2.Shutdown(context.Background())
	if got := r.lines()[`|{a="b"}`]; fmt.Sprint(got) != "[4 5 6 7 8 9]" {
		t.Fatalf("delivered %v", got)
	}
	if s := b2.Stats(); s.Dropped[ReasonTooOld] != 4 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSpoolFullDropsOldestAndCounts(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	r := &recorder{fail: switchable(&down)}
	b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), SpoolMode: SpoolAlways,
		MaxSpoolBytes: 64 << 10, SpoolSegmentSize: 8 << 10, RetryInterval: time.Millisecond})
	const n = 5000
	for i := range n {
		if err := b.Add("", `{a="b"}`, time.Now().UnixNano(), fmt.Appendf(nil, "line-%05d-%s", i, strings.Repeat("z", 40)), nil); err != nil {
			t.Fatal(err)
		}
	}
	s := b.Stats()
	if s.Dropped[ReasonSpoolFull] == 0 || s.SpoolBytes > 64<<10 {
		t.Fatalf("stats %+v", s)
	}
	down.Store(false)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Shutdown(context.Background())
	s = b.Stats()
	lines := r.lines()[`|{a="b"}`]
	if uint64(len(lines))+s.Dropped[ReasonSpoolFull] != n {
		t.Fatalf("delivered %d + dropped %d != %d", len(lines), s.Dropped[ReasonSpoolFull], n)
	}
	// The newest entries are the ones kept.
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, fmt.Sprintf("line-%05d", n-1)) {
		t.Fatalf("last delivered %q", last)
	}
}

// faultyFS fails every write while broken is set.
type faultyFS struct {
	spool.OSFS
	broken *atomic.Bool
}

func (f faultyFS) OpenFile(name string, flag int, perm fs.FileMode) (spool.File, error) {
	if f.broken.Load() && flag&(os.O_CREATE|os.O_WRONLY|os.O_RDWR) != 0 && !strings.HasSuffix(name, "LOCK") {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultyFile{File: file, broken: f.broken}, nil
}

type faultyFile struct {
	spool.File
	broken *atomic.Bool
}

func (f faultyFile) Write(p []byte) (int, error) {
	if f.broken.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func TestDiskFullFallsBackToMemoryAndResumes(t *testing.T) {
	for _, mode := range []string{SpoolSpill, SpoolAlways} {
		t.Run(mode, func(t *testing.T) {
			var broken, down atomic.Bool
			broken.Store(true)
			down.Store(true)
			var reported atomic.Int32
			r := &recorder{fail: switchable(&down)}
			b, err := New(Config{Exporter: r, SpoolDir: t.TempDir(), SpoolMode: mode, spoolFS: faultyFS{broken: &broken},
				BatchWait: time.Millisecond, BatchSize: 1 << 10, MaxBufferBytes: 8 << 10, RetryInterval: time.Millisecond,
				ErrorHandler: func(error) { reported.Add(1) }})
			if err != nil {
				t.Fatal(err)
			}
			accepted, full := 0, 0
			for i := range 2000 {
				err := b.Add("", `{a="b"}`, time.Now().UnixNano(), fmt.Appendf(nil, "%05d", i), nil)
				switch {
				case err == nil:
					accepted++
				case errors.Is(err, ErrFull):
					full++
				default:
					t.Fatal(err)
				}
			}
			s := b.Stats()
			if full == 0 || s.Dropped[ReasonDiskError]+s.Dropped[ReasonBufferFull] != uint64(full) || s.DiskErrors == 0 {
				t.Fatalf("accepted %d, full %d, stats %+v", accepted, full, s)
			}
			// Errors reach the ErrorHandler from a goroutine of the buffer's.
			for deadline := time.Now().Add(10 * time.Second); reported.Load() == 0 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if reported.Load() == 0 {
				t.Fatal("the disk errors were not reported")
			}
			// The disk works again: spilling resumes.
			broken.Store(false)
			// The spool is left alone for 1 s after a failure; then the
			// spiller empties memory.
			deadline := time.Now().Add(10 * time.Second)
			for b.Stats().BufferedBytes > 4<<10 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			for i := range 2000 {
				if err := b.Add("", `{a="c"}`, time.Now().UnixNano(), fmt.Appendf(nil, "%05d", i), nil); err != nil {
					t.Fatalf("after the disk came back: %v", err)
				}
				if i%50 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			if b.Stats().Spilled == 0 {
				t.Fatal("no spill after the disk came back")
			}
			down.Store(false)
			if err := b.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			b.Shutdown(context.Background())
			if got := len(r.lines()[`|{a="c"}`]); got != 2000 {
				t.Fatalf("delivered %d of the entries logged after recovery", got)
			}
			if got := len(r.lines()[`|{a="b"}`]); got != accepted {
				t.Fatalf("delivered %d of %d accepted during the failure", got, accepted)
			}
		})
	}
}

// TestCrashLosesNothing runs a child process that logs in "always" mode with
// the exporter down and prints the index of each entry after Add returned;
// the test kills it with SIGKILL mid-logging, then a new buffer on the same
// directory must deliver every printed entry exactly once.
func TestCrashLosesNothing(t *testing.T) {
	if os.Getenv("LOKISLOG_CRASH_CHILD") != "" {
		crashChild(os.Getenv("LOKISLOG_CRASH_CHILD"))
		return
	}
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL of a child process is not available on windows")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLosesNothing$")
	cmd.Env = append(os.Environ(), "LOKISLOG_CRASH_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once it has logged a few thousand entries.
	buf := make([]byte, 1<<20)
	var got []byte
	for {
		n, err := out.Read(buf)
		got = append(got, buf[:n]...)
		if strings.Count(string(got), "\n") > 3000 || err != nil {
			break
		}
	}
	cmd.Process.Kill()
	for {
		n, err := out.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	cmd.Wait()
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	last, err := strconv.Atoi(lines[len(lines)-1])
	if err != nil { // a torn last line
		last, _ = strconv.Atoi(lines[len(lines)-2])
	}
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, SpoolDir: dir})
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Shutdown(context.Background())
	delivered := r.lines()[`|{a="b"}`]
	if len(delivered) < last+1 {
		t.Fatalf("child confirmed %d entries, %d delivered", last+1, len(delivered))
	}
	for i, l := range delivered {
		if l != strconv.Itoa(i) {
			t.Fatalf("entry %d is %q", i, l)
		}
	}
	t.Logf("child confirmed %d entries before SIGKILL; %d delivered", last+1, len(delivered))
}

func crashChild(dir string) {
	var down atomic.Bool
	down.Store(true)
	if mode := os.Getenv("LOKISLOG_CRASH_MODE"); mode == SpoolSpill {
		spillChild(dir, &down)
		return
	}
	b, err := New(Config{Exporter: &recorder{fail: switchable(&down)}, SpoolDir: dir, SpoolMode: SpoolAlways, ErrorHandler: func(error) {}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := os.Stdout
	for i := 0; ; i++ {
		if err := b.Add("", `{a="b"}`, time.Now().UnixNano(), []byte(strconv.Itoa(i)), nil); err != nil {
			os.Exit(3)
		}
		w.WriteString(strconv.Itoa(i) + "\n")
	}
}

var _ = filepath.Join

// spillChild logs spillRecords entries in "spill" mode with the exporter
// down, waits until they are all on disk, says so and waits to be killed.
func spillChild(dir string, down *atomic.Bool) {
	b, err := New(Config{Exporter: &recorder{fail: switchable(down)}, SpoolDir: dir, ErrorHandler: func(error) {},
		RetryInterval: time.Millisecond, SpillAfter: 10 * time.Millisecond, BatchWait: 5 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range spillRecords {
		if err := b.Add("", `{a="b"}`, time.Now().UnixNano(), []byte(strconv.Itoa(i)), nil); err != nil {
			os.Exit(3)
		}
	}
	for b.Stats().Spilled < spillRecords {
		time.Sleep(time.Millisecond)
	}
	os.Stdout.WriteString("spilled\n")
	select {}
}

const spillRecords = 5000

func TestCrashAfterSpillLosesNothing(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("SIGKILL of a child process is not available on windows")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLosesNothing$")
	cmd.Env = append(os.Environ(), "LOKISLOG_CRASH_CHILD="+dir, "LOKISLOG_CRASH_MODE="+SpoolSpill)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.Contains(string(buf[:n]), "spilled") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q", buf[:n])
	}
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, SpoolDir: dir})
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Shutdown(context.Background())
	delivered := r.lines()[`|{a="b"}`]
	if len(delivered) != spillRecords {
		t.Fatalf("delivered %d of %d", len(delivered), spillRecords)
	}
	for i, l := range delivered {
		if l != strconv.Itoa(i) {
			t.Fatalf("entry %d is %q", i, l)
		}
	}
}

func TestAlwaysModeSendsFromMemoryWhileLokiAnswers(t *testing.T) {
	dir := t.TempDir()
	r := &recorder{}
	b := mustNew(t, Config{Exporter: r, SpoolDir: dir, SpoolMode: SpoolAlways, BatchWait: 5 * time.Millisecond})
	logN(t, b, 2, 0, 1000, time.Millisecond)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := b.Stats()
	if s.Exported != 2000 || s.Replayed != 0 || s.SpoolEntries != 0 || s.Spilled != 2000 {
		t.Fatalf("stats %+v: want every entry written to disk, sent from memory, released", s)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnceInOrder(t, r, 2, 1000)
	// Nothing is sent again after a restart.
	r2 := &recorder{}
	b2 := mustNew(t, Config{Exporter: r2, SpoolDir: dir})
	b2.Shutdown(context.Background())
	if r2.count() != 0 {
		t.Fatalf("restart resent %d entries", r2.count())
	}
}

func TestAlwaysModeSwitchesToSpoolWhenLokiFails(t *testing.T) {
	var down atomic.Bool
	r := &recorder{fail: switchable(&down)}
	b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), SpoolMode: SpoolAlways,
		BatchWait: 2 * time.Millisecond, RetryInterval: time.Millisecond})
	logN(t, b, 2, 0, 300, time.Millisecond) // from memory
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	logN(t, b, 2, 300, 900, time.Millisecond) // the spool becomes the queue
	down.Store(false)
	logN(t, b, 2, 900, 1200, time.Millisecond)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := b.Stats()
	if s.Replayed == 0 || s.Exported != 2400 || s.SpoolEntries != 0 || len(s.Dropped) != 0 {
		t.Fatalf("stats %+v", s)
	}
	b.Shutdown(context.Background())
	checkExactlyOnceInOrder(t, r, 2, 1200)
}

// TestErrorHandlerMayLog checks that an ErrorHandler that logs through the
// same pipeline (as one that writes to slog.Default, set to this handler,
// does) neither deadlocks nor recurses. A disk error in "always" mode is
// found while Add holds the buffer's lock; it was reported there, and the
// handler's own Add then waited for that lock forever.
func TestErrorHandlerMayLog(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	var b *Buffer
	var reported atomic.Int32
	b, err := New(Config{Exporter: &recorder{}, SpoolDir: t.TempDir(), SpoolMode: SpoolAlways, spoolFS: faultyFS{broken: &broken},
		BatchWait: time.Millisecond, ErrorHandler: func(err error) {
			reported.Add(1)
			b.Add("", `{source="errors"}`, time.Now().UnixNano(), []byte(err.Error()), nil)
		}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			b.Add("", `{a="b"}`, time.Now().UnixNano(), fmt.Appendf(nil, "%05d", i), nil)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Add hung: the ErrorHandler's own Add waited for the lock its caller held")
	}
	for deadline := time.Now().Add(10 * time.Second); reported.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if reported.Load() == 0 {
		t.Fatal("the disk error was not reported")
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Log(err) // the disk stays broken: what is left may not be written
	}
}

// "spill" mode writes its batches with one write each, not through a
// mapping of a preallocated segment: the directory holds about what was
// spilled. (With the mapping, as "always" mode on Linux, the segment
// being written is preallocated to its full size.)
func TestSpillModeWritesWithoutMapping(t *testing.T) {
	dirSize := func(dir string) (n int64) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
				n += fi.Size()
			}
		}
		return n
	}
	const segment = 4 << 20
	for _, mode := range []string{SpoolSpill, SpoolAlways} {
		t.Run(mode, func(t *testing.T) {
			var down atomic.Bool
			down.Store(true)
			dir := t.TempDir()
			b := mustNew(t, Config{Exporter: &recorder{fail: switchable(&down)}, SpoolDir: dir, SpoolMode: mode,
				SpoolSegmentSize: segment, BatchWait: 5 * time.Millisecond, BatchSize: 4 << 10, MaxBufferBytes: 16 << 10,
				RetryInterval: time.Millisecond, SpillAfter: 10 * time.Millisecond})
			logN(t, b, 2, 0, 2000, time.Millisecond)
			deadline := time.Now().Add(10 * time.Second)
			for b.Stats().SpoolBytes == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			spooled, size := b.Stats().SpoolBytes, dirSize(dir)
			t.Logf("spool holds %d bytes; directory %d bytes", spooled, size)
			switch {
			case spooled == 0:
				t.Fatal("nothing spilled")
			case mode == SpoolSpill && size > spooled+64<<10:
				t.Errorf("directory is %d bytes for %d bytes spooled: a preallocated segment", size, spooled)
			case mode == SpoolAlways && runtime.GOOS == "linux" && size < segment:
				t.Errorf("directory is %d bytes: the mmap writer's segment is preallocated to %d", size, segment)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			down.Store(false)
			if err := b.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSpillModeTakesEntriesBehindTheBatchInFlight checks that with a spool
// an entry is not refused when memory holds nothing but the batch in
// flight: once that batch is spilled there is nothing left to write, and
// the entry goes to the spool behind it (it was refused buffer_full).
func TestSpillModeTakesEntriesBehindTheBatchInFlight(t *testing.T) {
	pad := []exporter.LabelPair{{Name: "pad", Value: strings.Repeat("p", 600)}}
	const labels, perBatch, n = `{s="0"}`, 2, 40
	size := len("0-00") + 16 + len("pad") + 600 + 4 // exporter.EntrySize
	mem := size + entryMem + pairMem                // what the memory bound counts
	first := perBatch*mem + len(labels)
	r := &recorder{gate: make(chan struct{})} // the first push waits until the end
	b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), BatchWait: time.Hour, RetryInterval: time.Millisecond,
		BatchSize: perBatch*size + len(labels), // sealed at its second entry
		// The first batch stays under three quarters of the bound (no
		// spill yet), and one entry more does not fit beside it.
		MaxBufferBytes: first*4/3 + 8,
	})
	if first+mem <= b.cfg.MaxBufferBytes || first > b.cfg.MaxBufferBytes/4*3 {
		t.Fatalf("sizes: batch %d, entry %d, bound %d", first, mem, b.cfg.MaxBufferBytes)
	}
	add := func(i int) {
		t.Helper()
		if err := b.Add("", labels, time.Now().UnixNano(), fmt.Appendf(nil, "0-%02d", i), pad); err != nil {
			t.Fatalf("entry %d: %v (%+v)", i, err, b.Stats())
		}
	}
	for i := range perBatch {
		add(i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		inFlight := b.inflight != nil
		b.mu.Unlock()
		if inFlight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first batch never went in flight")
		}
		time.Sleep(time.Millisecond)
	}
	for i := perBatch; i < n; i++ {
		add(i)
	}
	if st := b.Stats(); len(st.Dropped) != 0 || st.Spilled < n {
		t.Fatalf("dropped %v, spilled %d of %d", st.Dropped, st.Spilled, n)
	}
	close(r.gate)
	flushAndShutdown(t, b)
	checkExactlyOnceInOrder(t, r, 1, n)
}
