package buffer

import (
	"errors"
	"fmt"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/spool"
)

// errDiskBackoff is returned by spill while the disk is left alone after a
// failed write.
var errDiskBackoff = errors.New("spool: disk failed recently")

// spiller writes queued batches to the spool when memory passes half its
// bound, when the spool is the queue, or when an export runs longer than
// SpillAfter. Started by New, stopped by Shutdown (spillerStop).
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
		b.mu.Lock()
		now := time.Now()
		// The worker seals batches when it is free; while it is stuck in a
		// long export, seal them here so they can go to disk.
		for _, ob := range b.open {
			if now.Sub(ob.created) >= b.cfg.BatchWait && b.inflight != nil {
				b.sealLocked(ob)
			}
		}
		need := b.spoolActive && len(b.queue) > 0 ||
			b.bytes > b.cfg.MaxBufferBytes/2 ||
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
func (b *Buffer) spill(final bool) error {
	b.spillMu.Lock()
	defer b.spillMu.Unlock()
	b.mu.Lock()
	if !final && time.Now().Before(b.diskRetryAt) {
		b.mu.Unlock()
		return errDiskBackoff
	}
	var items []*sealed
	if b.inflight != nil && !b.inflight.onDisk {
		items = append(items, b.inflight)
	}
	for _, s := range b.queue {
		if !s.onDisk {
			items = append(items, s)
		}
	}
	if len(items) == 0 {
		b.mu.Unlock()
		return nil
	}
	b.spilling = true
	b.spoolActive = true
	b.mu.Unlock()

	var err error
	written := 0
	for _, it := range items {
		b.spillBuf = spool.AppendBatch(b.spillBuf[:0], it.batch)
		err = b.sp.Append(b.spillBuf, it.n, it.created.UnixNano())
		if err != nil {
			b.diskErrors.Add(1)
			err = fmt.Errorf("spill %d entries: %w", it.n, err)
			break
		}
		written++
		b.spilled.Add(uint64(it.n))
		b.mu.Lock()
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
		}
		b.mu.Unlock()
	}
	if cap(b.spillBuf) > 4<<20 {
		b.spillBuf = nil
	}
	b.mu.Lock()
	b.spilling = false
	if err != nil {
		b.diskRetryAt = time.Now().Add(time.Second)
		if written == 0 && b.sp.Stats().Records == 0 {
			b.spoolActive = false
		}
	}
	b.mu.Unlock()
	if err != nil {
		b.errs.report(fmt.Errorf("%w (kept in memory)", err))
	}
	b.signal()
	return err
}

// replay is the batch the worker read from the spool and has not settled.
type replay struct {
	batch   *exporter.Batch
	n       int
	last    spool.Pos
	hasLast bool
	// carry is a record read ahead that belongs to the next batch.
	carry      *exporter.Batch
	carryPos   spool.Pos
	carryBytes int
}

type step int

const (
	stepDone step = iota
	stepEmpty
	stepFailed
)

// replayStep reads (or keeps) a batch from the spool and exports it.
func (b *Buffer) replayStep(rp *replay) step {
	if rp.batch == nil {
		if empty := b.readReplay(rp); empty {
			return stepEmpty
		}
		if rp.batch == nil {
			return stepDone
		}
	}
	err := b.exp.Export(b.exportCtx, rp.batch)
	done, delivered, rejected := b.classify(err, rp.batch, rp.n)
	b.exported.Add(uint64(delivered))
	b.replayed.Add(uint64(delivered))
	if done {
		b.ack(rp.last)
		b.settle(delivered + rejected)
		rp.batch, rp.n, rp.hasLast = nil, 0, false
		return stepDone
	}
	if rem := remainingOf(err); rem != nil {
		rp.batch, rp.n = rem, rem.Len()
		b.settle(delivered + rejected)
	}
	return stepFailed
}

// readReplay fills rp.batch with records from the spool, oldest first, up to
// BatchSize bytes and one tenant. Entries older than MaxAge are dropped
// here. It reports whether the spool had nothing to read.
func (b *Buffer) readReplay(rp *replay) (empty bool) {
	b.mu.Lock()
	gen := b.spoolGen
	b.unreadBytes = 0
	b.firstUnread = time.Now()
	b.mu.Unlock()

	var merged *exporter.Batch
	index := map[string]int{}
	size, n, tooOld := 0, 0, 0
	read := false
	minTS := time.Now().Add(-b.cfg.MaxAge).UnixNano()
	for size < b.cfg.BatchSize {
		var bt *exporter.Batch
		var pos spool.Pos
		var bytes int
		if rp.carry != nil {
			bt, pos, bytes = rp.carry, rp.carryPos, rp.carryBytes
			rp.carry = nil
		} else {
			rec, err := b.sp.Next()
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
			bytes = len(rec.Payload)
			pos = rec.Pos
			bt, err = spool.DecodeBatch(rec.Payload)
			if err != nil {
				// A record with a good checksum but a bad payload: count
				// its entries as corrupt and move past it.
				b.drop(ReasonCorrupt, rec.Entries)
				b.settle(rec.Entries)
				b.errs.report(fmt.Errorf("spool record %v: %w", rec.Pos, err))
				rp.last, rp.hasLast = pos, true
				read = true
				continue
			}
		}
		read = true
		if merged != nil && bt.Tenant != merged.Tenant {
			rp.carry, rp.carryPos, rp.carryBytes = bt, pos, bytes
			break
		}
		if merged == nil {
			merged = &exporter.Batch{Tenant: bt.Tenant}
		}
		for _, st := range bt.Streams {
			i, ok := index[st.Labels]
			if !ok {
				i = len(merged.Streams)
				index[st.Labels] = i
				merged.Streams = append(merged.Streams, exporter.Stream{Labels: st.Labels})
			}
			for _, e := range st.Entries {
				if e.Timestamp < minTS {
					tooOld++
					continue
				}
				merged.Streams[i].Entries = append(merged.Streams[i].Entries, e)
				n++
			}
		}
		size += bytes
		rp.last, rp.hasLast = pos, true
	}
	if tooOld > 0 {
		b.drop(ReasonTooOld, tooOld)
		b.settle(tooOld)
		b.errs.report(fmt.Errorf("replay: dropped %d entries older than %v", tooOld, b.cfg.MaxAge))
	}
	if !read {
		b.mu.Lock()
		if b.spoolGen == gen && !b.spilling && rp.carry == nil {
			b.spoolActive = false
			b.flushWant = false
		}
		b.mu.Unlock()
		return true
	}
	if n == 0 {
		// Everything read was dropped: acknowledge it.
		if rp.hasLast {
			b.ack(rp.last)
			rp.hasLast = false
		}
		return false
	}
	rp.batch, rp.n = merged, n
	return false
}

func (b *Buffer) ack(pos spool.Pos) {
	if err := b.sp.Ack(pos); err != nil {
		b.errs.report(fmt.Errorf("spool ack: %w", err))
	}
}
