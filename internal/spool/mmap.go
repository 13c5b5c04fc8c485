package spool

import (
	"errors"
	"os"
	"runtime/debug"
	"time"
)

// Outcomes of mapSegment that are not append errors.
var (
	// errNoPrealloc: the filesystem (or system) cannot preallocate; the
	// spool uses the write path from then on.
	errNoPrealloc = errors.New("preallocation not supported")
	// errMapFallback: this segment uses the write path.
	errMapFallback = errors.New("segment not mapped")
	// errMapFault: a write through the mapping faulted (SIGBUS: an I/O
	// error reading the page back, or the file was cut by someone else).
	errMapFault = errors.New("fault writing through the segment mapping")
)

// useMmap reports whether new segments are written through a mapping: on
// Linux, on the OS filesystem, unless Options.NoMmap or the filesystem
// cannot preallocate.
func (s *Spool) useMmap() bool {
	if !mmapSupported || s.o.NoMmap || s.noPrealloc {
		return false
	}
	switch fsys := s.fs.(type) {
	case OSFS, *OSFS:
		return true
	case interface{ mmapOK() bool }: // tests: the OS filesystem with faults
		return fsys.mmapOK()
	}
	return false
}

// createMapped creates segment num of size bytes, preallocated and mapped,
// and writes its header through the mapping. ok is false (with a nil
// error) when the segment should be created by the write path instead; no
// file is left then. Callers hold s.mu.
func (s *Spool) createMapped(num uint64, name string, size int64) (ok bool, err error) {
	f, err := s.fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, errorf("create segment %d: %w", num, err)
	}
	m, err := s.mapFile(f, name, size)
	if err == nil {
		err = s.startMapped(f, m, num, 0)
		if err != nil {
			unmapSegment(m)
		}
	}
	if err != nil {
		f.Close()
		if rerr := s.fs.Remove(name); rerr != nil {
			// A zero or torn header: Open removes it.
			s.cleanupError(errorf("spool: remove failed segment %d: %w", num, rerr))
			return false, errorf("create segment %d: %w", num, err)
		}
		if errors.Is(err, errNoPrealloc) {
			s.noPrealloc = true
			return false, nil
		}
		if errors.Is(err, errMapFallback) {
			return false, nil
		}
		return false, errorf("create segment %d: %w", num, err)
	}
	s.adoptMapped(num, f, m)
	return true, nil
}

// mapFile is mapSegment, with the failures a test filesystem injects.
func (s *Spool) mapFile(f File, name string, size int64) ([]byte, error) {
	if h, ok := s.fs.(interface{ mapFault(name string) error }); ok {
		if err := h.mapFault(name); err != nil {
			return nil, err
		}
	}
	return mapSegment(f, size)
}

// startMapped writes the header of segment num, with flags, through m, its
// file f's mapping, and in SyncBatch flushes f (fsync flushes the pages
// written through the mapping) and the directory.
func (s *Spool) startMapped(f File, m []byte, num uint64, flags byte) error {
	err := writeMapped(m[:headerSize], func(b []byte) { putHeader(b, num, time.Now().UnixNano(), flags) })
	if err == nil && s.o.Sync == SyncBatch {
		if err = f.Sync(); err == nil {
			err = s.fs.SyncDir(s.o.Dir)
		}
	}
	return err
}

// writeMapped runs fill on b, a part of a mapping, and turns a fault
// (SIGBUS) into an error instead of a crash.
func writeMapped(b []byte, fill func([]byte)) error { return onMapping(b, nil, fill) }

// copyMapped is writeMapped(dst, copy from src) without the indirect call.
func copyMapped(dst, src []byte) error { return onMapping(dst, src, nil) }

// onMapping copies src into b, or runs fill on b when fill is not nil,
// turning a fault into an error.
func onMapping(b, src []byte, fill func([]byte)) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r)
			}
			err = errorf("%w: %v", errMapFault, r)
		}
	}()
	if fill != nil {
		fill(b)
	} else {
		copy(b, src)
	}
	return nil
}

// putFrameMapped writes a frame into b, a part of the writer's mapping,
// like putFrameHeader after copying the payload, turning a fault into an
// error.
func putFrameMapped(b, payload []byte, entries uint32, ts int64) error {
	return writeMapped(b, func(b []byte) {
		copyYielding(b[frameHeaderSize:], payload)
		putFrameHeader(b, entries, ts)
	})
}

// copyStep is the most bytes copied into the mapping between yields of
// the P (runtime.Gosched). Copying a 1 MiB batch into fresh pages is up to
// a few milliseconds (page faults when the preparer has not been ahead),
// none of it preemptible; a logging goroutine woken meanwhile on the same
// P (every one with GOMAXPROCS=1) would wait for all of it.
const copyStep = 128 << 10

// copyYielding copies src into dst as copy does, yielding between pieces
// of copyStep bytes.
func copyYielding(dst, src []byte) {
	src = src[:min(len(src), len(dst))]
	inPieces(src, copyStep, func(p []byte) bool {
		dst = dst[copy(dst, p):]
		return true
	})
}

// unmapWriter ends the writer's mapping, if any, and cuts the file to its
// valid size, so that only the newest segment can ever have a zero tail.
// The file stays open. Callers hold s.mu.
func (s *Spool) unmapWriter() error {
	if s.wmap == nil {
		return nil
	}
	err := s.releaseMapping(s.wmap)
	s.wmap = nil
	if terr := s.w.Truncate(s.wseg.size); terr != nil {
		err = errors.Join(err, terr)
	}
	return err
}

// dropMapping ends the writer's mapping without touching the file, as a
// killed process would leave it. Callers hold s.mu.
func (s *Spool) dropMapping() {
	if s.wmap != nil {
		s.releaseMapping(s.wmap)
		s.wmap = nil
	}
}
