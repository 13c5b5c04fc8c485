package buffer

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/spool"
)

// errDiskBackoff is returned by spill while the disk is left alone after a
// failed write.
var errDiskBackoff = errors.New("spool: disk failed recently")

// spiller writes queued batches to the spool when memory passes three
// quarters of its bound, when the spool is the queue, or when an export runs
// longer than SpillAfter. Started by New, stopped by Shutdown (spillerStop).
func (b *Buffer) spiller() {
	defer close(b.spillerDone)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-b.spillWake:
		case <-tick.C:
		case <-b.spillerStop:
			return
		}
		b.lock()
		now := time.Now()
		// The worker seals batches when it is free; while it is stuck in a
		// long export, seal them here so they can go to disk.
		for _, ob := range b.open {
			if now.Sub(ob.created) >= b.cfg.BatchWait && b.inflight != nil {
				b.sealLocked(ob)
			}
		}
		need := b.spoolActive && len(b.queue) > 0 ||
			b.bytes > b.cfg.MaxBufferBytes/4*3 ||
			b.inflight != nil && !b.inflight.onDisk && now.Sub(b.exportStart) >= b.cfg.SpillAfter ||
			len(b.queue) > 0 && now.Sub(b.queue[0].created) >= b.cfg.SpillAfter+b.cfg.BatchWait
		b.mu.Unlock()
		if need {
			b.spill(false)
		}
	}
}

// spill writes the in-flight batch (when it is not on disk yet) and every
// queued batch to the spool, oldest first, and frees their memory (the
// in-flight one stays in memory until its export ends). From the first
// write on, the spool is the queue. With final, it is Shutdown's last
// chance and ignores an earlier disk failure.
//
// Batches are written one at a time (spillOne), each under spillMu: an Add
// that finds memory full and spills itself waits for one batch write at
// most, not for everything queued.
func (b *Buffer) spill(final bool) error {
	for {
		done, err := b.spillOne(final)
		if done || err != nil {
			return err
		}
	}
}

// spillOne writes the oldest batch in memory that is not on disk yet. It
// reports done when there was none.
func (b *Buffer) spillOne(final bool) (done bool, err error) {
	b.spillMu.Lock()
	defer b.spillMu.Unlock()
	b.lock()
	if !final && time.Now().Before(b.diskRetryAt) {
		b.mu.Unlock()
		return true, errDiskBackoff
	}
	if b.diskFallback {
		// "always" mode after a failed write: the open batches hold
		// entries that are only in memory.
		for _, ob := range b.open {
			b.sealLocked(ob)
		}
	}
	var it *sealed
	if b.inflight != nil && !b.inflight.onDisk {
		it = b.inflight
	} else {
		for _, s := range b.queue {
			if !s.onDisk {
				it = s
				break
			}
		}
	}
	if it == nil {
		// Every entry kept only in memory during a disk failure is on
		// disk now, and Add (which needs mu) cannot add another before
		// "always" mode writes to the spool again.
		b.diskFallback = false
		b.setFastLocked(true)
		b.mu.Unlock()
		return true, nil
	}
	b.spilling = true
	b.spoolActive = true
	b.setFastLocked(true)
	b.mu.Unlock()

	// The batch is encoded as a framed record, which the spool writes as
	// it is (AppendFrameMark: one write, no copy), into a buffer made once
	// of the batch's size (what it counts in memory, more than its
	// encoding): grown by append from nothing, the first spill's buffer
	// allocated about five times that in steps, clearing each new tail in
	// a call that cannot be preempted.
	if n := it.size + len(it.batch.Tenant) + 64; cap(b.spillBuf) < n {
		b.spillBuf = make([]byte, 0, n)
	}
	b.spillBuf, err = spool.AppendBatchFrame(b.spillBuf[:0], b.build(it), it.n, it.created.UnixNano())
	if err == nil {
		// Encoding and writing a batch are each up to a few hundred
		// microseconds of CPU; let a logging goroutine waiting for this P
		// (GOMAXPROCS=1) run between the two.
		runtime.Gosched()
		_, err = b.sp.AppendFrameMark(b.spillBuf)
	}
	if cap(b.spillBuf) > 4<<20 {
		b.spillBuf = nil
	}
	var recycle *sealed
	b.lock()
	b.spilling = false
	if err == nil {
		b.spilled.Add(uint64(it.n))
		it.onDisk = true
		b.spoolGen++
		if it != b.inflight {
			for i, q := range b.queue {
				if q == it {
					b.queue = append(b.queue[:i], b.queue[i+1:]...)
					break
				}
			}
			b.bytes -= it.size
			b.entries -= it.n
			recycle = it // encoded and written: nothing refers to it
		}
	} else {
		b.diskErrors.Add(1)
		err = fmt.Errorf("spill %d entries: %w", it.n, err)
		b.setFastLocked(false) // before the spool is looked at
		b.diskRetryAt = time.Now().Add(time.Second)
		if b.sp.Stats().Records == 0 {
			b.spoolActive = false
		}
		b.setFastLocked(true)
	}
	b.mu.Unlock()
	if recycle != nil {
		b.recycle.put(recycle)
	}
	if err != nil {
		b.errs.report(fmt.Errorf("%w (kept in memory)", err))
	}
	b.signal()
	return false, err
}

// yieldEvery is how many bytes of spool records readReplay decodes between
// yields of its P (runtime.Gosched): reading a whole batch is several
// milliseconds of CPU on a small machine, and a logging goroutine queued
// meanwhile on the same P (every one with GOMAXPROCS=1) would wait for all
// of it. An execution trace of the benchmark's steady run had 256 KiB
// (read, decoded and copied) take 1.1 ms while a logging call waited.
const yieldEvery = 64 << 10

// replay is the batch the worker read from the spool and has not settled.
type replay struct {
	batch   *exporter.Batch
	n       int
	last    spool.Pos
	hasLast bool
	// pending holds the records read and not merged yet, oldest first:
	// views of the spool's read-ahead block (viewing) while readReplay
	// runs, copies when they are kept for the next batch (another
	// tenant's). views is the slice NextViews fills, kept for its
	// capacity.
	pending []spool.Record
	views   []spool.Record
	viewing bool
	// settledPart counts entries of the records from the first read to
	// last that were already delivered or rejected (a *PartialError):
	// only batch's entries are still to be sent.
	settledPart int

	// dec decodes records without allocating; arena and metas own the
	// lines and metadata copied out of the spool's read-ahead block.
	dec   spool.BatchDecoder
	arena arena
	metas []exporter.LabelPair
	// index maps batch's stream labels to their position; failed is set
	// once an export of batch failed. A batch delivered at its first
	// export gives its memory (arena chunks, entry slices, index) back
	// to the recycler, as batches sent from memory do; one whose export
	// failed does not, since the error (a PartialError's Remaining) may
	// still refer to it.
	index  map[string]int
	failed bool
}

// settledReplay ends rp's batch once it was delivered or rejected, recycling its
// memory when no export of it failed.
func (b *Buffer) settledReplay(rp *replay, err error) {
	if rp.batch != nil && err == nil && !rp.failed {
		b.recycle.put(&sealed{batch: rp.batch, recyclable: true, chunks: rp.arena.chunks, index: rp.index})
		clear(rp.metas[:cap(rp.metas)]) // no string of a recycled chunk stays reachable
	}
	rp.arena.cur, rp.arena.chunks, rp.index, rp.metas = nil, nil, nil, rp.metas[:0]
	rp.batch, rp.n, rp.hasLast, rp.settledPart, rp.failed = nil, 0, false, 0, false
}

type step int

const (
	stepDone step = iota
	stepEmpty
	stepFailed
)

// replayStep reads (or keeps) a batch from the spool into rp and exports
// it.
//
// With ahead (not nil: "always" mode) and quiet (nothing was logged since
// the worker last looked), the batch is exported on a goroutine of its own
// while this one reads the next batch into ahead: reading a batch back is
// about as much CPU as encoding and sending it, and the two then overlap.
// While the application logs, the export side stays one goroutine and
// leaves the application the other CPU. Once rp is settled, swap reports
// that the caller is to swap the two (when something was read ahead).
// What the read ahead consumes is acknowledged only after rp (see
// readReplay's early). (The export, not the read, has the goroutine: the
// replay structs stay on the worker's stack.)
func (b *Buffer) replayStep(rp, ahead *replay, quiet bool) (st step, swap bool) {
	if rp.batch == nil {
		if empty := b.readReplay(rp, false); empty {
			return stepEmpty, false
		}
		if rp.batch == nil {
			return stepDone, false
		}
	}
	var err error
	read := ahead != nil && ahead.batch == nil && !ahead.hasLast && len(ahead.pending) == 0 && quiet
	if read {
		ahead.pending, rp.pending = rp.pending, nil // the next batch begins with them
		b.sending = rp.batch
		go b.exportSending(b.exp)
		b.readReplay(ahead, true)
		err = <-b.sent
	} else {
		err = b.exp.Export(b.exportCtx, rp.batch)
	}
	done, delivered, rejected := b.classify(err, rp.batch, rp.n)
	b.exported.Add(uint64(delivered))
	b.replayed.Add(uint64(delivered))
	if done {
		b.ack(rp.last)
		b.settle(delivered + rejected)
		b.settledReplay(rp, err)
		if !read && (ahead == nil || ahead.batch == nil && !ahead.hasLast) {
			return stepDone, false // nothing read ahead: rp keeps its pending records
		}
		if ahead.batch == nil && ahead.hasLast {
			b.ack(ahead.last) // all of it was dropped (too old, corrupt)
			ahead.hasLast = false
		}
		return stepDone, true
	}
	rp.failed = true
	if rem := remainingOf(err); rem != nil {
		rp.batch, rp.n = rem, rem.Len()
		rp.settledPart += delivered + rejected
		b.settle(delivered + rejected)
	}
	return stepFailed, false
}

// exportSending exports b.sending through e and sends the outcome on b.sent.
func (b *Buffer) exportSending(e exporter.Exporter) { b.sent <- e.Export(b.exportCtx, b.sending) }

// readReplay fills rp.batch with records from the spool, oldest first, up to
// BatchSize bytes and one tenant. Entries older than MaxAge are dropped
// here. It reports whether the spool had nothing to read.
//
// early is set for a read ahead of a batch not yet settled (replayStep):
// it then acknowledges nothing (records it dropped stay in rp.last for the
// caller to acknowledge in order) and leaves spoolActive as it is (the
// next read that finds the spool empty turns it off).
//
// Records are read in runs with NextViews (one lock per run) and decoded
// with BatchDecoder.Range: no allocation per record. Their strings alias
// the spool's read-ahead block, valid until the next read, so merge copies
// what the batch keeps: lines and metadata into rp.arena, labels and tenant
// once per batch.
func (b *Buffer) readReplay(rp *replay, early bool) (empty bool) {
	b.lock()
	gen := b.spoolGen
	b.unreadBytes = 0
	b.firstUnread = time.Now()
	b.mu.Unlock()

	var merged *exporter.Batch
	index := b.recycle.index()
	size, n, tooOld, sinceYield := 0, 0, 0, 0
	read := false
	minTS := time.Now().Add(-b.cfg.MaxAge).UnixNano()
	cur := -1 // stream of the last entry merged
	merge := func(tenant, labels string, e exporter.Entry) {
		if e.Timestamp < minTS {
			tooOld++
			return
		}
		if merged == nil {
			merged = &exporter.Batch{Tenant: strings.Clone(tenant)}
		}
		if cur < 0 || merged.Streams[cur].Labels != labels {
			i, ok := index[labels]
			if !ok {
				own := strings.Clone(labels)
				i = len(merged.Streams)
				index[own] = i
				merged.Streams = append(merged.Streams, exporter.Stream{Labels: own, Entries: b.recycle.entrySlice()})
			}
			cur = i
		}
		e.Line = rp.arena.strs(e.Line)
		if len(e.Metadata) > 0 {
			if cap(rp.metas)-len(rp.metas) < len(e.Metadata) {
				rp.metas = make([]exporter.LabelPair, 0, max(256, len(e.Metadata)))
			}
			start := len(rp.metas)
			for _, m := range e.Metadata {
				rp.metas = append(rp.metas, exporter.LabelPair{Name: rp.arena.strs(m.Name), Value: rp.arena.strs(m.Value)})
			}
			e.Metadata = rp.metas[start:len(rp.metas):len(rp.metas)]
		}
		merged.Streams[cur].Entries = append(merged.Streams[cur].Entries, e)
		n++
	}
	for size < b.cfg.BatchSize {
		if len(rp.pending) == 0 {
			// Read up to what the batch can take: none is left over
			// unless another tenant's record ends the batch. A record
			// that does not fit a batch begun already is left in the
			// spool for the next one (a spilled batch is a record of up
			// to BatchSize bytes: two in one request would double what
			// encoding it holds in memory).
			var err error
			rp.pending, err = b.sp.NextViews(rp.views[:0], maxViews, b.cfg.BatchSize-size, merged == nil)
			rp.views, rp.viewing = rp.pending, true
			if err == nil && len(rp.pending) == 0 {
				break
			}
			if err != nil {
				var ce *spool.CorruptionError
				if errors.As(err, &ce) {
					b.errs.report(err)
					continue
				}
				if !errors.Is(err, spool.ErrEmpty) {
					b.errs.report(fmt.Errorf("read spool: %w", err))
				}
				break
			}
		}
		payload, pos, entries := rp.pending[0].Payload, rp.pending[0].Pos, rp.pending[0].Entries
		read = true
		tenant, err := spool.BatchTenant(payload)
		if err == nil && merged != nil && tenant != merged.Tenant {
			break // another tenant: the record starts the next batch
		}
		rp.pending = rp.pending[1:]
		if err == nil {
			err = rp.dec.Range(payload, merge) // all or nothing
		}
		if err != nil {
			// A record with a good checksum but a bad payload: count
			// its entries as corrupt and move past it.
			b.drop(ReasonCorrupt, entries)
			b.settle(entries)
			b.errs.report(fmt.Errorf("spool record %v: %w", pos, err))
			rp.last, rp.hasLast = pos, true
			continue
		}
		size += len(payload)
		rp.last, rp.hasLast = pos, true
		if sinceYield += len(payload); sinceYield >= yieldEvery {
			sinceYield = 0
			runtime.Gosched()
		}
	}
	if rp.viewing && len(rp.pending) > 0 {
		// Records kept for the next batch: copies, since the views are
		// gone at the next read of the spool.
		kept := make([]spool.Record, len(rp.pending))
		for i, r := range rp.pending {
			r.Payload = bytes.Clone(r.Payload)
			kept[i] = r
		}
		rp.pending = kept
	}
	rp.viewing = false
	if tooOld > 0 {
		b.drop(ReasonTooOld, tooOld)
		b.settle(tooOld)
		b.errs.report(fmt.Errorf("replay: dropped %d entries older than %v", tooOld, b.cfg.MaxAge))
	}
	if !read {
		if early {
			return true
		}
		b.lock()
		b.setFastLocked(false) // every append counted in spoolGen, none after
		if b.spoolGen == gen && !b.spilling && len(rp.pending) == 0 {
			b.spoolActive = false
			b.flushWant = false
		}
		b.setFastLocked(true)
		b.mu.Unlock()
		return true
	}
	if n == 0 {
		// Everything read was dropped: acknowledge it.
		if rp.hasLast && !early {
			b.ack(rp.last)
			rp.hasLast = false
		}
		return false
	}
	rp.batch, rp.n, rp.index = merged, n, index
	return false
}

// maxViews is the most records readReplay takes from one NextViews.
const maxViews = 1024

func (b *Buffer) ack(pos spool.Pos) {
	if err := b.sp.Ack(pos); err != nil {
		b.errs.report(fmt.Errorf("spool ack: %w", err))
	}
}
