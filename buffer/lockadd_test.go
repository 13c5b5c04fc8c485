package buffer

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestLockAddSpinsOnlyInAlwaysMode checks which buffers spin for b.mu
// before yielding: only "always" mode with a spool and more than one P
// (see lockAdd: spinning loggers starve the export worker of a memory
// buffer, and with one P the holder cannot run while a waiter spins).
func TestLockAddSpinsOnlyInAlwaysMode(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	for _, c := range []struct {
		name  string
		spool bool
		mode  string
		procs int
		want  bool
	}{
		{"memory", false, "", 2, false},
		{"memory, always asked", false, SpoolAlways, 2, false},
		{"spill", true, SpoolSpill, 2, false},
		{"always", true, SpoolAlways, 2, true},
		{"always, one P", true, SpoolAlways, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			runtime.GOMAXPROCS(c.procs)
			cfg := Config{Exporter: &recorder{}, SpoolMode: c.mode}
			if c.spool {
				cfg.SpoolDir = t.TempDir()
			}
			b := mustNew(t, cfg)
			defer b.Shutdown(context.Background())
			if b.spinLock != c.want {
				t.Fatalf("spinLock = %v, want %v", b.spinLock, c.want)
			}
		})
	}
}

// TestLockAddOutwaitsTheSpin checks that a spinning lockAdd still gets the
// lock, and only once it is free, when the holder keeps it far longer than
// lockSpin (it falls back to yielding, then to Lock) and when it lets go
// within the spin.
func TestLockAddOutwaitsTheSpin(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	b := mustNew(t, Config{Exporter: &recorder{}, SpoolDir: t.TempDir(), SpoolMode: SpoolAlways})
	defer b.Shutdown(context.Background())
	if !b.spinLock {
		t.Fatal("an always-mode buffer does not spin")
	}
	for _, hold := range []time.Duration{5 * time.Microsecond, 100 * lockSpin} {
		var released atomic.Bool
		b.mu.Lock()
		go func() {
			time.Sleep(hold)
			released.Store(true)
			b.mu.Unlock()
		}()
		b.lockAdd()
		if !released.Load() {
			t.Fatalf("hold %v: lockAdd returned while the lock was held", hold)
		}
		b.mu.Unlock()
	}
}
