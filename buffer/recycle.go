package buffer

import (
	"sync"

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
	indexes []map[string]int
}

const (
	recycleChunks = 16 // 1 MiB of arena chunks
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
	defer r.mu.Unlock()
	return pop(list)
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
	chunks := s.chunks
	s.chunks, s.metas, s.index = nil, nil, nil

	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range chunks {
		if len(r.chunks) < recycleChunks {
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
	if index != nil && len(r.indexes) < recycleSlices {
		r.indexes = append(r.indexes, index)
	}
}
