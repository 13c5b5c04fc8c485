// Package spool is lokislog's on-disk queue: a durable, bounded,
// crash-safe FIFO of opaque records in a directory, with
// acknowledgement-based deletion. The buffer decides when to spill and when
// to replay; this package keeps the records. [AppendBatch] and
// [DecodeBatch] encode an exporter.Batch as a record payload.
//
// For a consumer that reads many small records, [Spool.NextView] and
// [BatchDecoder.Range] read and decode a record without allocating: the
// payload and the decoded strings alias the spool's read-ahead block until
// the next read, and the consumer copies what it keeps.
//
// The file format, recovery and sync modes are described with diagrams in
// docs/SPOOL.md.
//
// # Layout
//
// The directory holds numbered segment files (0000000000000001.seg, 16 hex
// digits), a cursor file, a LOCK file and, after corruption, set-aside
// copies named <segment>.corrupt. A segment starts with a versioned header;
// each record is a frame of length, CRC-32C, entry count, timestamp and
// payload. Records never cross segments, so a segment is the unit of
// deletion and a torn write only hurts the newest one.
//
// # Guarantees
//
//   - Order: [Spool.Next] returns records in the order [Spool.Append]
//     wrote them, across restarts.
//   - Process crash: a record for which Append returned nil is in the OS
//     page cache (copied into a shared mapping of the file, or one write
//     system call; no user-space buffer), so SIGKILL, OOM-kill or a panic
//     lose nothing Append returned for, in every [SyncMode]. Power loss
//     loses what the sync mode allows.
//   - Acknowledgement: [Spool.Ack] marks every record up to a position as
//     done; a segment is deleted only when all its records are
//     acknowledged. After Close and Open, acknowledged records are never
//     returned again (0 duplicates); after a crash, at most the records
//     returned by Next and not yet acknowledged (the in-flight batch) are
//     returned again.
//   - Bounded disk: Options.MaxBytes bounds the valid bytes of the
//     segment files (Stats.Bytes); with the mmap writer the segment being
//     written also holds its preallocated, unused rest and the next
//     segment is prepared ahead (next.tmp), so the directory uses at most
//     MaxBytes + 2×SegmentSize. When full,
//     Append deletes the oldest segments (the newest logs matter most in
//     an incident) and counts the records and entries dropped. It never
//     waits for the consumer.
//   - Bounded memory: the reader checks every length against
//     Options.MaxRecordSize and the file before allocating. Memory is one
//     frame buffer (kept up to 2 MiB), one read-ahead block (256 KiB, or
//     the segment size when smaller; a record that does not fit gets a
//     block of its own size, kept up to 2 MiB) plus, per record returned
//     by Next and not acknowledged, 40 bytes.
//   - Reading: Next reads a segment in blocks, one read system call for
//     many small records, and checks each frame's length and checksum
//     before returning it. A block only holds data that was complete when
//     it was read; records appended later are read by a later call.
//   - Disk faults: an Append that fails (ENOSPC, EACCES, EROFS, EIO)
//     returns the error wrapped and leaves the spool consistent; the next
//     Append never writes after garbage. No panic, no hang.
//   - One owner: Open locks the directory (flock on Unix, LockFileEx on
//     Windows); a second Open of it, in this process or another, fails
//     with [ErrLocked].
//
// # Writing
//
// On Linux, with the OS filesystem ([OSFS]), Append copies the frame into a
// shared, writable mapping of the segment file: no system call per record.
// Each new segment is first preallocated to SegmentSize with fallocate(2),
// so a write through the mapping never needs a disk block that is not
// there: a full disk is an ENOSPC from Append at segment creation, never a
// SIGBUS. The unused rest of the segment stays zeros. When the segment is
// rolled, and at Close, it is unmapped and cut to its valid size, so only
// the newest segment can ever have a zero tail, which recovery cuts off like
// any torn tail. fsync of the file flushes the mapped pages (SyncBatch
// before Append returns, SyncInterval from the Spool's goroutine). A
// fault on the mapping (an I/O error reading a page back, the file cut by
// someone else) is turned into an Append error, not a crash.
//
// A filesystem without preallocation (EOPNOTSUPP, EINVAL) turns the mmap
// writer off for the Spool; a segment whose preallocation exceeds a file
// size limit (EFBIG) or that cannot be mapped is written with the write
// path. Elsewhere, or with Options.NoMmap, each record is one write(2) on
// a file opened with O_APPEND. macOS has no preallocation that makes a
// later write through a mapping safe from a full disk, and Windows would
// need its own file-mapping API: both use the write path. Filesystems
// whose fallocate does not reserve blocks (ZFS, some network filesystems)
// can report a full disk late, as a failed flush or a fault error from a
// later Append: use NoMmap there.
//
// # Recovery
//
// Open scans every segment, checking the header and every frame. In the
// newest segment a torn tail (partial frame, zero bytes, bad checksum) is
// truncated: it is where the last writes before a crash land. A segment
// before the newest was complete when the next one was started, so any
// damage there is corruption: the whole file is copied to <name>.corrupt
// and the segment is cut to its valid records, which are still delivered
// (or, with a bad header, the file is renamed and nothing of it is
// delivered). The cursor file then says which records of the oldest
// segment were already acknowledged. A segment prepared ahead by the mmap
// writer and never taken (its header flagged "prepared", zeros after it)
// held no record: Open removes it wherever it is, and the newest segment
// is the last one before those at the end.
//
// # Concurrency
//
// Every method is safe for concurrent use. Append never performs an fsync
// in SyncInterval mode: a goroutine owned by the Spool does, and Close
// stops it. [Spool.AppendFast] copies a framed record into the mapped
// writer under a lock of its own, not the Spool's, when that is all there
// is to do; the Spool's sections fold its appends in (docs/SPOOL.md, "The
// fast tail").
package spool
