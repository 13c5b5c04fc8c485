package buffer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/lokislog/lokislog/exporter"
)

// recycler keeps the memory of batches that left the buffer (delivered,
// or written to the spool) for the next ones: arena chunks, entry and
// metadata slices, stream indexes. Without it every batch grows its
// slices by doubling and takes fresh chunks, all zeroed by the runtime and
// then scanned and freed by the garbage collector, under the buffer's
// lock. What it keeps is bounded (recycleChunks chunks, a few slices).
//
// It has a lock of its own, taken only for a push or a pop, so that
// clearing a delivered batch's slices (put) happens outside Buffer.mu,
// which every Add needs.
type recycler struct {
	mu      sync.Mutex
	chunks  [][]byte
	entries [][]exporter.Entry
	metas   [][]exporter.LabelPair
	qents   [][]qentry
	indexes []map[string]int

	// For refill, read without mu: len(chunks) and len(qents) as of the
	// last change, the entries of the last batch sealed, whether a refill
	// is under way, when a batch last came back (unix ns), and whether
	// that was more than starveAfter before the last batch opened.
	nChunks, nEntries atomic.Int32
	hint              atomic.Int32
	refilling         atomic.Bool
	lastPut           atomic.Int64
	starving          atomic.Bool
}

// starveAfter: when no batch came back for this long, nothing is being
// delivered (or spilled) and refill makes the next batches' memory ahead.
// Sooner, the batches coming back bring it: making more would only add
// garbage (and peak RSS, 4 MiB more in the benchmark's burst).
const starveAfter = 100 * time.Millisecond

const (
	recycleChunks = 24 // 1.5 MiB of arena chunks: a batch of BatchSize (1 MiB) and the ends of its chunks
	recycleSlices = 4  // entry and metadata slices, stream indexes
	// minRecycledEntries: smaller entry slices are not worth keeping.
	minRecycledEntries = 64
)

// pop takes the last element of *list, or returns the zero value.
func pop[T any](list *[]T) (v T) {
	if n := len(*list); n > 0 {
		v = (*list)[n-1]
		var zero T
		(*list)[n-1] = zero
		*list = (*list)[:n-1]
	}
	return v
}

// take pops the last element of one of r's lists under r's lock.
func take[T any](r *recycler, list *[]T) T {
	r.mu.Lock()
	v := pop(list)
	r.count()
	r.mu.Unlock()
	return v
}

// count records how many chunks and entry slices r keeps, for refill.
// Callers hold r.mu.
func (r *recycler) count() {
	r.nChunks.Store(int32(len(r.chunks)))
	r.nEntries.Store(int32(len(r.qents)))
}

// chunk returns an empty arena chunk of chunkSize bytes.
func (r *recycler) chunk() []byte {
	if c := take(r, &r.chunks); c != nil {
		return c[:0]
	}
	return make([]byte, 0, chunkSize)
}

// entrySlice returns an empty slice for a stream's entries (nil when none
// is kept).
func (r *recycler) entrySlice() []exporter.Entry { return take(r, &r.entries) }

// qentSlice returns an empty slice for a batch's entries (nil when none is
// kept).
func (r *recycler) qentSlice() []qentry { return take(r, &r.qents) }

// Refill bounds: chunks and entry slices kept ready, and the largest
// entry slice made ahead (256 KB).
const (
	spareChunks     = 2
	spareEntries    = 1
	maxHintEntries  = 8192
	hintEntriesMult = 2 // a batch that had n entries gets room for 2n
)

// low reports whether nothing comes back and the next batches may have to
// allocate their memory (under Buffer.mu, where an allocation makes every
// other Add wait).
func (r *recycler) low() bool {
	return r.starving.Load() && (r.nChunks.Load() < spareChunks || r.nEntries.Load() < spareEntries)
}

// sealed notes the entries of a batch just sealed, the size refill gives
// the entry slices it makes.
func (r *recycler) sealed(n int) {
	r.hint.Store(int32(min(max(n*hintEntriesMult, minRecycledEntries), maxHintEntries)))
}

// opened notes that a batch opened at now (once a batch: the time is the
// batch's own) and whether batches still come back.
func (r *recycler) opened(now time.Time) {
	starving := now.UnixNano()-r.lastPut.Load() > int64(starveAfter)
	if r.starving.Load() != starving {
		r.starving.Store(starving)
	}
}

// refill allocates chunks and an entry slice up to the spare counts, on a
// goroutine of its own that Add starts after setting refilling (one at a
// time): when nothing comes back (Loki down in memory-only mode, the
// buffer filling up) every new batch needs fresh memory. Made under the
// buffer's lock, zeroed and page-faulted in and now and then paying for
// the garbage collector's marking, it made the other logging goroutines
// wait; made on the logging goroutine after the lock, a 64 KiB chunk is
// where the runtime checks whether to start a collection (every large
// allocation does), and the goroutine that starts one waits out its
// stop-the-world pause inside Handle.
func (r *recycler) refill() {
	for {
		r.fill()
		r.refilling.Store(false)
		// An Add that took memory while this one filled saw refilling
		// set and started none: look again.
		if !r.low() || !r.refilling.CompareAndSwap(false, true) {
			return
		}
	}
}

// fill makes what refill makes, once.
func (r *recycler) fill() {
	var chunks [spareChunks][]byte
	for i := range max(spareChunks-int(r.nChunks.Load()), 0) {
		chunks[i] = make([]byte, 0, chunkSize)
	}
	var entries []qentry
	if r.nEntries.Load() < spareEntries {
		entries = make([]qentry, 0, max(r.hint.Load(), minRecycledEntries))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range chunks {
		if c != nil && len(r.chunks) < recycleChunks {
			r.chunks = append(r.chunks, c)
		}
	}
	if entries != nil && len(r.qents) < recycleSlices {
		r.qents = append(r.qents, entries)
	}
	r.count()
}

func (r *recycler) metaSlice() []exporter.LabelPair { return take(r, &r.metas) }

func (r *recycler) index() map[string]int {
	if m := take(r, &r.indexes); m != nil {
		return m
	}
	return make(map[string]int)
}

// put takes back the memory of s, which nothing references any more: its
// export returned without error (the Exporter keeps nothing after it
// returns) or it was written to the spool and left the queue. The caller
// owns s and need not hold Buffer.mu: the slices are cleared before r's
// lock is taken.
func (r *recycler) put(s *sealed) {
	if !s.recyclable {
		return
	}
	r.lastPut.Store(time.Now().UnixNano()) // memory comes back
	s.recyclable = false
	var kept [recycleSlices][]exporter.Entry
	entries := kept[:0]
	for i := range s.batch.Streams {
		e := s.batch.Streams[i].Entries
		s.batch.Streams[i].Entries = nil
		if cap(e) >= minRecycledEntries && len(entries) < recycleSlices { // more could not be kept
			clear(e) // no string of a recycled chunk stays reachable
			entries = append(entries, e[:0])
		}
	}
	metas := s.metas
	if cap(metas) >= minRecycledEntries {
		clear(metas)
	} else {
		metas = nil
	}
	index := s.index
	if index != nil {
		clear(index)
	}
	qents := s.qents // no pointers: nothing to clear
	if cap(qents) < minRecycledEntries {
		qents = nil
	}
	chunks := s.chunks
	s.chunks, s.metas, s.index, s.qents = nil, nil, nil, nil

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range chunks {
		if len(r.chunks) < recycleChunks && cap(c) == chunkSize { // not a big line's own
			r.chunks = append(r.chunks, c)
		}
	}
	for _, e := range entries {
		if len(r.entries) < recycleSlices {
			r.entries = append(r.entries, e)
		}
	}
	if metas != nil && len(r.metas) < recycleSlices {
		r.metas = append(r.metas, metas[:0])
	}
	if qents != nil && len(r.qents) < recycleSlices {
		r.qents = append(r.qents, qents[:0])
	}
	if index != nil && len(r.indexes) < recycleSlices {
		r.indexes = append(r.indexes, index)
	}
	r.count()
}
