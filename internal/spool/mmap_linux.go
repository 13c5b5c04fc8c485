//go:build linux

package spool

import (
	"errors"
	"fmt"
	"math"
	"syscall"
)

// mmapSupported says whether this system has the mmap writer: Linux only.
// It needs fallocate, so that a write through the mapping never faults for
// lack of disk space (macOS has no equivalent that reserves blocks), and
// Windows would need its own file-mapping API.
const mmapSupported = true

// mapSegment preallocates size bytes of f with fallocate (the file's size
// becomes size, its blocks reserved and reading as zeros) and maps them
// shared, readable and writable. On failure the file may have been
// extended; the caller removes it. The error wraps errNoPrealloc when the
// filesystem cannot preallocate, errMapFallback when this segment should
// use the write path instead, or is a disk error (ENOSPC, EIO, ...) for
// the caller to return.
func mapSegment(file File, size int64) ([]byte, error) {
	f, ok := file.(interface {
		SyscallConn() (syscall.RawConn, error)
	})
	if !ok || size > math.MaxInt {
		return nil, errMapFallback
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMapFallback, err)
	}
	var m []byte
	var ferr, merr error
	if cerr := rc.Control(func(fd uintptr) {
		for {
			ferr = syscall.Fallocate(int(fd), 0, 0, size)
			if ferr != syscall.EINTR {
				break
			}
		}
		if ferr == nil {
			m, merr = syscall.Mmap(int(fd), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
		}
	}); cerr != nil {
		return nil, fmt.Errorf("%w: %v", errMapFallback, cerr)
	}
	if ferr != nil {
		return nil, classifyFallocate(ferr)
	}
	if merr != nil {
		// Out of address space (a 32-bit process) or a mapping limit: the
		// write path still works.
		return nil, fmt.Errorf("%w: mmap: %v", errMapFallback, merr)
	}
	return m, nil
}

// classifyFallocate sorts a fallocate error: a filesystem without
// preallocation (EOPNOTSUPP, ENOSYS, EINVAL) turns the mmap writer off for
// the spool; a size over a file size limit (EFBIG, e.g. RLIMIT_FSIZE) sends
// this segment to the write path, which writes what fits; anything else
// (ENOSPC, EDQUOT, EIO, ...) is an append error.
func classifyFallocate(err error) error {
	switch {
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS), errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%w: fallocate: %v", errNoPrealloc, err)
	case errors.Is(err, syscall.EFBIG):
		return fmt.Errorf("%w: fallocate: %v", errMapFallback, err)
	}
	return fmt.Errorf("preallocate: %w", err)
}

// unmapSegment removes a mapping made by mapSegment.
func unmapSegment(m []byte) error { return syscall.Munmap(m) }

// madvPopulateWrite is MADV_POPULATE_WRITE (Linux 5.14).
const madvPopulateWrite = 23

// populate faults in every page of a fresh mapping writable, as writing
// to it would, without writing: later writes take no page fault. Older
// kernels refuse the advice (EINVAL); the writes then fault as before.
func populate(m []byte) { _ = syscall.Madvise(m, madvPopulateWrite) }

// release unmaps the pages of a range of a shared file mapping that the
// writer has passed (MADV_DONTNEED): dirty pages keep their data in the
// page cache and reach the file as usual; the process's RSS no longer
// counts them.
func release(m []byte) { _ = syscall.Madvise(m, syscall.MADV_DONTNEED) }
