package buffer

import (
	"github.com/lokislog/lokislog/exporter"
)

// recycler keeps the memory of batches that left the buffer (delivered,
// or written to the spool) for the next ones: arena chunks, entry and
// metadata slices, stream indexes. Without it every batch grows its
// slices by doubling and takes fresh chunks, all zeroed by the runtime and
// then scanned and freed by the garbage collector, under the buffer's
// lock. What it keeps is bounded (recycleChunks chunks, a few slices). It
// is guarded by Buffer.mu.
type recycler struct {
	chunks  [][]byte
	entries [][]exporter.Entry
	metas   [][]exporter.LabelPair
	indexes []map[string]int
}

const (
	recycleChunks = 32 // 2 MiB of arena chunks
	recycleSlices = 8  // entry and metadata slices, stream indexes
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

// chunk returns an empty arena chunk of chunkSize bytes.
func (r *recycler) chunk() []byte {
	if c := pop(&r.chunks); c != nil {
		return c[:0]
	}
	return make([]byte, 0, chunkSize)
}

// entrySlice returns an empty slice for a stream's entries (nil when none
// is kept).
func (r *recycler) entrySlice() []exporter.Entry { return pop(&r.entries) }

func (r *recycler) metaSlice() []exporter.LabelPair { return pop(&r.metas) }

func (r *recycler) index() map[string]int {
	if m := pop(&r.indexes); m != nil {
		return m
	}
	return make(map[string]int)
}

// put takes back the memory of s, which nothing references any more: its
// export returned without error (the Exporter keeps nothing after it
// returns) or it was written to the spool and left the queue. Callers
// hold Buffer.mu.
func (r *recycler) put(s *sealed) {
	if !s.recyclable {
		return
	}
	s.recyclable = false
	for _, c := range s.chunks {
		if len(r.chunks) < recycleChunks {
			r.chunks = append(r.chunks, c)
		}
	}
	s.chunks = nil
	for i := range s.batch.Streams {
		e := s.batch.Streams[i].Entries
		s.batch.Streams[i].Entries = nil
		if cap(e) >= minRecycledEntries && len(r.entries) < recycleSlices {
			clear(e) // no string of a recycled chunk stays reachable
			r.entries = append(r.entries, e[:0])
		}
	}
	if m := s.metas; cap(m) >= minRecycledEntries && len(r.metas) < recycleSlices {
		clear(m)
		r.metas = append(r.metas, m[:0])
	}
	s.metas = nil
	if s.index != nil && len(r.indexes) < recycleSlices {
		clear(s.index)
		r.indexes = append(r.indexes, s.index)
	}
	s.index = nil
}
