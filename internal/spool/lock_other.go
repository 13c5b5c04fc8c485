//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly || windows)

package spool

import (
	"io"
	"os"
	"path/filepath"
	"sync"
)

// On this platform there is no file lock: the lock only excludes a second
// Spool in the same process (a map of held paths). Two processes on the same
// directory are not detected. docs/SPOOL.md says so.

var held sync.Map // absolute lock path -> struct{}

type processLock struct{ name string }

func (l processLock) Close() error { held.Delete(l.name); return nil }

func lockFile(name string) (io.Closer, error) {
	abs, err := filepath.Abs(name)
	if err != nil {
		abs = name
	}
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	f.Close()
	if _, loaded := held.LoadOrStore(abs, struct{}{}); loaded {
		return nil, ErrLocked
	}
	return processLock{name: abs}, nil
}

func syncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
