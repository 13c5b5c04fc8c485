//go:build !linux

package spool

// mmapSupported says whether this system has the mmap writer: Linux only.
// macOS has no preallocation that reserves blocks (F_PREALLOCATE does not
// make a later write through a mapping safe from a full disk) and Windows
// needs its own file-mapping API, so both keep the write path.
const mmapSupported = false

func mapSegment(File, int64) ([]byte, error) { return nil, errNoPrealloc }

func unmapSegment([]byte) error { return nil }

func populate([]byte) {}

func populateFirst([]byte) {}

func release([]byte) {}
