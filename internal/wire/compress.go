package wire

import (
	"compress/gzip"
	"encoding/binary"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"google.golang.org/protobuf/encoding/protowire"
)

// EncodeSnappy returns src compressed as one snappy block, the form Loki
// expects for protobuf pushes (not the framed stream format). The result
// uses dst's memory, grown as the compressed pieces need it (never past
// about [SnappyBound](len(src))), so a caller that keeps the returned
// slice and passes it back as dst compresses without allocating once the
// buffer has grown.
//
// Input over 256 KiB is compressed 256 KiB at a time and the goroutine
// yields its P between pieces (runtime.Gosched): compressing a 1 MiB batch
// takes about a millisecond on a small machine, and a logging goroutine
// queued on this P would wait that long. A snappy block is its length
// followed by literal and copy elements, and each piece's elements refer
// only to its own bytes, so the pieces' elements in order, after the whole
// length, are one valid block; matches across pieces are lost, which costs
// little at this size.
func EncodeSnappy(dst, src []byte) []byte {
	if len(src) <= snappyPiece {
		return s2.EncodeSnappy(dst[:0], src)
	}
	// dst grows as the pieces need it rather than to SnappyBound at once:
	// log lines compress to a fifth or less, and a buffer of the worst
	// case would hold that much more memory for as long as it is kept.
	d := 0
	for off := 0; off < len(src); off += snappyPiece {
		if off > 0 {
			runtime.Gosched()
		}
		piece := src[off:min(off+snappyPiece, len(src))]
		need := s2.MaxEncodedLen(len(piece))
		if off == 0 {
			need += binary.MaxVarintLen64
		}
		if cap(dst)-d < need {
			dst = slices.Grow(dst[:d], need)
		}
		dst = dst[:d+need]
		if off == 0 {
			d = binary.PutUvarint(dst, uint64(len(src)))
		}
		// The piece's own block, its length first, written at d (dst has
		// room for its worst case there); then its elements moved over
		// that length.
		out := s2.EncodeSnappy(dst[d:], piece)
		h := protowire.SizeVarint(uint64(len(piece)))
		d += copy(dst[d:], out[h:])
	}
	return dst[:d]
}

// snappyPiece is how much EncodeSnappy compresses between yields.
const snappyPiece = 256 << 10

// SnappyBound is the largest result EncodeSnappy can return for n bytes:
// the whole length, then each piece's worst case.
func SnappyBound(n int) int {
	if n <= snappyPiece {
		return s2.MaxEncodedLen(n)
	}
	return binary.MaxVarintLen64 + n/snappyPiece*s2.MaxEncodedLen(snappyPiece) + s2.MaxEncodedLen(n%snappyPiece)
}

// GzipLevel is the compression level of [AppendGzip]: the fastest, since a
// log shipper's CPU is its host's and log lines compress well even so.
const GzipLevel = gzip.BestSpeed

// gzipWriter is a pooled gzip.Writer and the buffer it writes to.
type gzipWriter struct {
	zw  *gzip.Writer
	out appendWriter
}

// gzipPool holds gzipWriters: a gzip.Writer carries several hundred KiB of
// compressor state that is worth reusing.
var gzipPool = sync.Pool{New: func() any {
	g := &gzipWriter{}
	g.zw, _ = gzip.NewWriterLevel(&g.out, GzipLevel) // the level is valid
	return g
}}

// AppendGzip appends src compressed as a gzip member to dst and returns the
// extended slice. It is safe for concurrent use.
func AppendGzip(dst, src []byte) []byte {
	g := gzipPool.Get().(*gzipWriter)
	g.out.b = dst
	g.zw.Reset(&g.out)
	// Writes into an appendWriter cannot fail.
	_, _ = g.zw.Write(src)
	_ = g.zw.Close()
	dst = g.out.b
	g.out.b = nil
	gzipPool.Put(g)
	return dst
}

// appendWriter is an io.Writer that appends to a slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
