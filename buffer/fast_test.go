package buffer

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// alwaysWithLokiDown returns an "always" mode buffer whose exports fail
// until down is cleared. It skips the test where the spool has no fast
// tail.
func alwaysWithLokiDown(t *testing.T) (*Buffer, *recorder, *atomic.Bool) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skipf("the spool's fast tail needs the mmap writer (Linux), not on %s", runtime.GOOS)
	}
	down := new(atomic.Bool)
	down.Store(true)
	r := &recorder{fail: switchable(down)}
	b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), SpoolMode: SpoolAlways,
		BatchWait: 2 * time.Millisecond, RetryInterval: time.Millisecond})
	return b, r, down
}

// fastOn reports whether Add appends through the spool's fast tail.
func fastOn(b *Buffer) bool {
	b.lock()
	defer b.mu.Unlock()
	return b.fast
}

// TestAlwaysModeFastAppendsAreCounted: while the spool is the queue in
// "always" mode, Add appends through the spool's fast tail, without the
// buffer's lock; those entries count in Stats, Flush waits for them, and
// they are delivered once, in order. When the spool drains, the buffer
// sends from memory again and fast appends stop.
func TestAlwaysModeFastAppendsAreCounted(t *testing.T) {
	b, r, down := alwaysWithLokiDown(t)
	if fastOn(b) {
		t.Fatal("fast appends on before the spool is the queue")
	}
	logN(t, b, 2, 0, 200, 0) // the first export fails: the spool becomes the queue
	deadline := time.Now().Add(10 * time.Second)
	for !fastOn(b) {
		if time.Now().After(deadline) {
			t.Fatal("fast appends still off 10 s after exports began to fail")
		}
		time.Sleep(time.Millisecond)
	}
	logN(t, b, 2, 200, 3000, 0)
	if !fastOn(b) {
		t.Fatal("fast appends turned off while the spool is the queue")
	}
	if s := b.Stats(); s.Enqueued != 6000 || s.SpoolEntries == 0 {
		t.Fatalf("stats %+v: want 6000 entries enqueued, the spool holding some", s)
	}
	down.Store(false)
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := r.count(); n != 6000 {
		t.Fatalf("Flush returned with %d of 6000 entries delivered", n)
	}
	logN(t, b, 2, 3000, 3100, time.Millisecond) // the spool drained: from memory again
	deadline = time.Now().Add(10 * time.Second)
	for fastOn(b) {
		if time.Now().After(deadline) {
			t.Fatal("fast appends still on 10 s after the spool drained")
		}
		time.Sleep(time.Millisecond)
	}
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fastOn(b) {
		t.Fatal("fast appends on after Shutdown")
	}
	checkExactlyOnceInOrder(t, r, 2, 3100)
	if s := b.Stats(); s.Enqueued != 6200 || s.Exported != 6200 || len(s.Dropped) != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestFastAppendsStopAtShutdown: an Add during and after Shutdown is
// refused while fast appends were on, and not counted.
func TestFastAppendsStopAtShutdown(t *testing.T) {
	b, _, _ := alwaysWithLokiDown(t)
	logN(t, b, 1, 0, 100, 0)
	for deadline := time.Now().Add(10 * time.Second); !fastOn(b); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("fast appends still off 10 s after exports began to fail")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	shut := make(chan struct{})
	go func() {
		defer close(shut)
		b.Shutdown(ctx) // Loki is down: the spool keeps the entries
	}()
	closed := func() bool { b.lock(); defer b.mu.Unlock(); return b.closed }
	for !closed() {
		time.Sleep(100 * time.Microsecond)
	}
	// Shutdown is still sending (until shortly before ctx's deadline):
	// the spool is open, and Add is refused all the same.
	if err := b.Add("", `{s="0"}`, time.Now().UnixNano(), []byte("late"), nil); err != ErrClosed {
		t.Fatalf("Add during Shutdown: %v, want ErrClosed", err)
	}
	<-shut
	if err := b.Add("", `{s="0"}`, time.Now().UnixNano(), []byte("later"), nil); err != ErrClosed {
		t.Fatalf("Add after Shutdown: %v, want ErrClosed", err)
	}
	if s := b.Stats(); s.Enqueued != 100 {
		t.Fatalf("stats %+v: want the 100 entries before Shutdown enqueued", s)
	}
}
