package wire

import (
	"compress/gzip"
	"sync"

	"github.com/klauspost/compress/s2"
)

// EncodeSnappy returns src compressed as one snappy block, the form Loki
// expects for protobuf pushes (not the framed stream format). The result
// uses dst's memory when its capacity is at least s2.MaxEncodedLen(len(src)),
// so a caller that keeps the returned slice and passes it back as dst
// compresses without allocating once the buffer has grown.
func EncodeSnappy(dst, src []byte) []byte {
	return s2.EncodeSnappy(dst[:0], src)
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
