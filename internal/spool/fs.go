package spool

import (
	"io"
	"io/fs"
	"os"
)

// FS is the small set of file operations the spool uses. It exists so tests
// can inject disk faults (ENOSPC, EACCES, EROFS, ...) around the real
// filesystem; [OSFS] is the default. Implementations must be safe for
// concurrent use.
type FS interface {
	// MkdirAll creates a directory and its parents, like [os.MkdirAll].
	MkdirAll(path string, perm fs.FileMode) error
	// OpenFile opens a file, like [os.OpenFile].
	OpenFile(name string, flag int, perm fs.FileMode) (File, error)
	// ReadDir lists a directory, like [os.ReadDir].
	ReadDir(name string) ([]fs.DirEntry, error)
	// Rename renames a file, replacing the target, like [os.Rename].
	Rename(oldpath, newpath string) error
	// Remove removes a file, like [os.Remove].
	Remove(name string) error
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable. It is a no-op where directories cannot be synced (Windows).
	SyncDir(name string) error
	// Lock takes an exclusive lock on the file name for the life of the
	// returned Closer, creating the file (mode 0600) if needed. It returns
	// an error wrapping [ErrLocked] when another holder has it, in this
	// process or another.
	Lock(name string) (io.Closer, error)
}

// File is an open file of an [FS]. *os.File implements it.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (fs.FileInfo, error)
}

// OSFS is the [FS] of the operating system.
type OSFS struct{}

// MkdirAll implements [FS].
func (OSFS) MkdirAll(path string, perm fs.FileMode) error { return os.MkdirAll(path, perm) }

// OpenFile implements [FS].
func (OSFS) OpenFile(name string, flag int, perm fs.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err // avoid a non-nil interface holding a nil *os.File
	}
	return f, nil
}

// ReadDir implements [FS].
func (OSFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }

// Rename implements [FS].
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// Remove implements [FS].
func (OSFS) Remove(name string) error { return os.Remove(name) }

// SyncDir implements [FS].
func (OSFS) SyncDir(name string) error { return syncDir(name) }

// Lock implements [FS].
func (OSFS) Lock(name string) (io.Closer, error) { return lockFile(name) }

// errFileClosed is what a File returns when used after Close.
var errFileClosed = os.ErrClosed
