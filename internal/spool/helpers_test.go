package spool

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(childMain(dir))
	}
	goleak.VerifyTestMain(m)
}

// payload returns a record of size bytes that starts with id i.
func payload(i, size int) []byte {
	p := []byte(fmt.Sprintf("rec-%06d;", i))
	for len(p) < size {
		p = append(p, byte('a'+i%26))
	}
	return p[:max(size, len(p))]
}

// recID returns the id payload put in p.
func recID(t testing.TB, p []byte) int {
	t.Helper()
	s, ok := strings.CutPrefix(string(p), "rec-")
	if !ok || len(s) < 7 {
		t.Fatalf("payload %q has no id", p)
	}
	n, err := strconv.Atoi(s[:6])
	if err != nil {
		t.Fatalf("payload %q: %v", p, err)
	}
	return n
}

func openT(t testing.TB, o Options) *Spool {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	s, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendN(t testing.TB, s *Spool, from, n, size int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := s.Append(payload(i, size), i%5+1, int64(1000+i)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

// drain returns every unread record.
func drain(t testing.TB, s *Spool) []Record {
	t.Helper()
	var out []Record
	for {
		r, err := s.Next()
		if errors.Is(err, ErrEmpty) {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, r)
	}
}

func ids(t testing.TB, recs []Record) []int {
	t.Helper()
	out := make([]int, len(recs))
	for i, r := range recs {
		out[i] = recID(t, r.Payload)
	}
	return out
}

func seq(from, to int) []int { // [from, to)
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// crash abandons s like a killed process would: no flush, no cursor write,
// files closed and the lock released so the directory can be reopened.
func crash(s *Spool) {
	s.muLock()
	s.closed = true
	s.muUnlock()
	if s.stop != nil {
		close(s.stop)
		<-s.done
	}
	if s.pr != nil {
		// A prepared segment stays on disk, as a crash leaves it.
		s.muLock()
		p := s.pr.ready
		s.pr.ready = nil
		s.muUnlock()
		s.stopPreparer()
		if p != nil {
			unmapSegment(p.m)
			p.f.Close()
		}
	}
	s.muLock()
	s.closeFiles() // closing flushes nothing
	s.muUnlock()
	s.lock.Close()
}

// faultFS wraps the OS filesystem and fails operations chosen by hook.
type faultFS struct {
	OSFS
	mu      sync.Mutex
	hook    func(op, name string) error
	partial bool // a failing write first writes half its bytes
	mmap    bool // let the spool use the mmap writer on these files

	syncs   atomic.Int64 // File.Sync calls
	readAts atomic.Int64 // File.ReadAt calls
}

func (f *faultFS) mmapOK() bool { return f.mmap }

// mapFault fails the preallocation and mapping of a segment (op "map"); the
// error is returned as mapSegment's.
func (f *faultFS) mapFault(name string) error {
	err, _ := f.check("map", name)
	return err
}

func (f *faultFS) set(partial bool, hook func(op, name string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hook, f.partial = hook, partial
}

func (f *faultFS) check(op, name string) (error, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hook == nil {
		return nil, false
	}
	return f.hook(op, name), f.partial
}

// failOn returns a hook failing op on files whose name ends in suffix.
func failOn(err error, suffix string, ops ...string) func(op, name string) error {
	return func(op, name string) error {
		for _, o := range ops {
			if o == op && strings.HasSuffix(name, suffix) {
				return err
			}
		}
		return nil
	}
}

func (f *faultFS) MkdirAll(path string, perm os.FileMode) error {
	if err, _ := f.check("mkdir", path); err != nil {
		return &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	return f.OSFS.MkdirAll(path, perm)
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	op := "open"
	if flag&os.O_CREATE != 0 {
		op = "create"
	}
	if err, _ := f.check(op, name); err != nil {
		return nil, &os.PathError{Op: op, Path: name, Err: err}
	}
	file, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f, name: name}, nil
}

func (f *faultFS) Rename(oldpath, newpath string) error {
	if err, _ := f.check("rename", newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return f.OSFS.Rename(oldpath, newpath)
}

func (f *faultFS) Remove(name string) error {
	if err, _ := f.check("remove", name); err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return f.OSFS.Remove(name)
}

func (f *faultFS) Lock(name string) (io.Closer, error) {
	if err, _ := f.check("lock", name); err != nil {
		return nil, &os.PathError{Op: "lock", Path: name, Err: err}
	}
	return f.OSFS.Lock(name)
}

func (f *faultFS) ReadDir(name string) ([]os.DirEntry, error) {
	if err, _ := f.check("readdir", name); err != nil {
		return nil, &os.PathError{Op: "readdir", Path: name, Err: err}
	}
	return f.OSFS.ReadDir(name)
}

func (f *faultFS) SyncDir(name string) error {
	if err, _ := f.check("syncdir", name); err != nil {
		return err
	}
	return f.OSFS.SyncDir(name)
}

type faultFile struct {
	*os.File
	fs   *faultFS
	name string
}

func (f *faultFile) Write(p []byte) (int, error) {
	if err, partial := f.fs.check("write", f.name); err != nil {
		n := 0
		if partial {
			n, _ = f.File.Write(p[:len(p)/2])
		}
		return n, &os.PathError{Op: "write", Path: f.name, Err: err}
	}
	return f.File.Write(p)
}

func (f *faultFile) Sync() error {
	f.fs.syncs.Add(1)
	if err, _ := f.fs.check("sync", f.name); err != nil {
		return &os.PathError{Op: "sync", Path: f.name, Err: err}
	}
	return f.File.Sync()
}

func (f *faultFile) Truncate(size int64) error {
	if err, _ := f.fs.check("truncate", f.name); err != nil {
		return &os.PathError{Op: "truncate", Path: f.name, Err: err}
	}
	return f.File.Truncate(size)
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.readAts.Add(1)
	if err, _ := f.fs.check("readat", f.name); err != nil {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: err}
	}
	return f.File.ReadAt(p, off)
}
