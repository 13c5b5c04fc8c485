//go:build linux

package spool

import (
	"errors"
	"math"
	"sync/atomic"
	"syscall"
	"unsafe"
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
		return nil, errorf("%w: %v", errMapFallback, err)
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
		return nil, errorf("%w: %v", errMapFallback, cerr)
	}
	if ferr != nil {
		return nil, classifyFallocate(ferr)
	}
	if merr != nil {
		// Out of address space (a 32-bit process) or a mapping limit: the
		// write path still works.
		return nil, errorf("%w: mmap: %v", errMapFallback, merr)
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
		return errorf("%w: fallocate: %v", errNoPrealloc, err)
	case errors.Is(err, syscall.EFBIG):
		return errorf("%w: fallocate: %v", errMapFallback, err)
	}
	return errorf("preallocate: %w", err)
}

// unmapSegment removes a mapping made by mapSegment.
func unmapSegment(m []byte) error { return syscall.Munmap(m) }

// populate faults in every page of a fresh mapping writable, as the
// writer's copies would: they then take no page fault. It touches the
// pages from Go (touchPages) rather than asking the kernel to
// (MADV_POPULATE_WRITE): the page faults then run on the preparer's
// thread while it holds its P, instead of on a thread in a system call
// that the scheduler no longer counts, which took a CPU from the logging
// goroutines on a busy machine, the one holding the buffer's lock
// included. A fault (SIGBUS) ends it; the writer meets the same page.
func populate(m []byte) { _ = writeMapped(m, touchPages) }

// populateFirst faults in m writable in a system call
// (MADV_POPULATE_WRITE, Linux 5.14; older kernels refuse it and the touch
// of a later step, or the writer, takes the fault). A thread in a system
// call is one the Go scheduler replaces: populateFirst is for the first
// step of a new file, whose first fault takes milliseconds.
func populateFirst(m []byte) { _ = syscall.Madvise(m, 23) }

// touchPages makes each page of m present and writable: a compare-and-swap
// of zero with zero on a word of each 4 KiB is a write access that changes
// nothing, even where the writer has already filled that word. (m starts
// on a page boundary: populate gets windows, in 64 KiB steps.)
func touchPages(m []byte) {
	for i := 0; i+4 <= len(m); i += touchStep {
		atomic.CompareAndSwapUint32((*uint32)(unsafe.Pointer(&m[i])), 0, 0)
	}
}

// release unmaps the pages of a range of a shared file mapping that the
// writer has passed (MADV_DONTNEED): dirty pages keep their data in the
// page cache and reach the file as usual; the process's RSS no longer
// counts them.
func release(m []byte) { _ = syscall.Madvise(m, syscall.MADV_DONTNEED) }
