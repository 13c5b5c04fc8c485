package wire

import (
	"runtime"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// The stream, entry and label pair types are type parameters because the
// package that owns them (exporter) imports this one. Their shapes are pinned
// by the constraints below: a field added to exporter.Entry, Stream or
// LabelPair fails to compile here until the encoders learn about it.

// pair is the shape of exporter.LabelPair.
type pair = struct {
	Name  string
	Value string
}

// entry is the shape of exporter.Entry.
type entry[P Pair] = struct {
	Timestamp int64
	Line      string
	Metadata  []P
}

// stream is the shape of exporter.Stream.
type stream[E Entry[P], P Pair] = struct {
	Labels  string
	Entries []E
}

// Pair is satisfied by exporter.LabelPair.
type Pair interface{ ~pair }

// Entry is satisfied by exporter.Entry.
type Entry[P Pair] interface{ ~entry[P] }

// Stream is satisfied by exporter.Stream.
type Stream[E Entry[P], P Pair] interface{ ~stream[E, P] }

// Field tags, each one byte: field number << 3 | wire type.
const (
	bytesType  = byte(protowire.BytesType)
	varintType = byte(protowire.VarintType)

	tagStream    = 1<<3 | bytesType  // PushRequest.streams
	tagLabels    = 1<<3 | bytesType  // StreamAdapter.labels
	tagEntry     = 2<<3 | bytesType  // StreamAdapter.entries
	tagTimestamp = 1<<3 | bytesType  // EntryAdapter.timestamp
	tagLine      = 2<<3 | bytesType  // EntryAdapter.line
	tagMetadata  = 3<<3 | bytesType  // EntryAdapter.structuredMetadata
	tagName      = 1<<3 | bytesType  // LabelPairAdapter.name
	tagValue     = 2<<3 | bytesType  // LabelPairAdapter.value
	tagSeconds   = 1<<3 | varintType // Timestamp.seconds
	tagNanos     = 2<<3 | varintType // Timestamp.nanos
)

// splitTime returns ns as a google.protobuf.Timestamp: seconds and a
// non-negative nanosecond part, as time.Unix(0, ns) normalises it.
func splitTime(ns int64) (sec int64, nanos int32) {
	sec, n := ns/1e9, ns%1e9
	if n < 0 {
		sec--
		n += 1e9
	}
	return sec, int32(n)
}

// field returns the size of a length-delimited field with a one-byte tag
// and a body of n bytes.
func field(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// optString returns the size of a string field that proto3 omits when empty.
func optString(s string) int {
	if s == "" {
		return 0
	}
	return field(len(s))
}

func timestampSize(ns int64) int {
	sec, nanos := splitTime(ns)
	n := 0
	if sec != 0 {
		n += 1 + protowire.SizeVarint(uint64(sec))
	}
	if nanos != 0 {
		n += 1 + protowire.SizeVarint(uint64(nanos))
	}
	return n
}

func entrySize[P Pair](e *entry[P]) int {
	n := field(timestampSize(e.Timestamp)) + optString(e.Line)
	for k := range e.Metadata {
		m := pair(e.Metadata[k])
		n += field(optString(m.Name) + optString(m.Value))
	}
	return n
}

func streamSize[E Entry[P], P Pair](s *stream[E, P]) int {
	n := optString(s.Labels)
	for j := range s.Entries {
		e := entry[P](s.Entries[j])
		n += field(entrySize(&e))
	}
	return n
}

// PushSize returns the size of streams encoded as a logproto.PushRequest.
func PushSize[S Stream[E, P], E Entry[P], P Pair](streams []S) int {
	n := 0
	for i := range streams {
		s := stream[E, P](streams[i])
		n += field(streamSize(&s))
	}
	return n
}

// AppendPush appends streams encoded as a logproto.PushRequest (Loki's push
// body before snappy compression) to dst and returns the extended slice.
//
// The bytes are those the generated gogo code of
// github.com/grafana/loki/pkg/push marshals for the same request: fields in
// number order, proto3 defaults (empty strings, zero seconds or nanos)
// omitted, every entry's timestamp present, StreamAdapter.hash and
// PushRequest.format never set. Timestamps are nanoseconds since the Unix
// epoch, split as time.Unix(0, ns) does.
//
// dst grows at most once; nothing else is allocated. streams must not change
// during the call.
func AppendPush[S Stream[E, P], E Entry[P], P Pair](dst []byte, streams []S) []byte {
	total := PushSize(streams)
	start := len(dst)
	dst = slices.Grow(dst, total)[:start+total]
	w := backWriter{buf: dst[start:], i: total}
	// Written back to front, as gogo does: a message's length is known once
	// its body is written, so no size is computed twice.
	yieldAt := total - yieldEvery
	for si := len(streams) - 1; si >= 0; si-- {
		s := stream[E, P](streams[si])
		end := w.i
		for ei := len(s.Entries) - 1; ei >= 0; ei-- {
			if w.i < yieldAt {
				// A batch of a few MiB takes milliseconds: let a goroutine
				// waiting for this P (a logging call) run between pieces.
				yieldAt = w.i - yieldEvery
				runtime.Gosched()
			}
			e := entry[P](s.Entries[ei])
			entryEnd := w.i
			for mi := len(e.Metadata) - 1; mi >= 0; mi-- {
				m := pair(e.Metadata[mi])
				pairEnd := w.i
				w.optString(tagValue, m.Value)
				w.optString(tagName, m.Name)
				w.head(tagMetadata, pairEnd-w.i)
			}
			w.optString(tagLine, e.Line)
			tsEnd := w.i
			sec, nanos := splitTime(e.Timestamp)
			if nanos != 0 {
				w.varint(uint64(nanos))
				w.byte(tagNanos)
			}
			if sec != 0 {
				w.varint(uint64(sec))
				w.byte(tagSeconds)
			}
			w.head(tagTimestamp, tsEnd-w.i)
			w.head(tagEntry, entryEnd-w.i)
		}
		w.optString(tagLabels, s.Labels)
		w.head(tagStream, end-w.i)
	}
	// w.i is 0 here: PushSize and the writes above agree field by field.
	return dst
}

// yieldEvery is how many bytes AppendPush writes between yields of its P.
const yieldEvery = 128 << 10

// backWriter fills buf from the end towards the start.
type backWriter struct {
	buf []byte
	i   int // buf[i:] is written
}

func (w *backWriter) byte(b byte) {
	w.i--
	w.buf[w.i] = b
}

func (w *backWriter) varint(v uint64) {
	if v < 1<<7 { // tags, most lengths
		w.i--
		w.buf[w.i] = byte(v)
		return
	}
	w.i -= protowire.SizeVarint(v)
	b := w.buf[w.i:]
	i := 0
	for ; v >= 1<<7; i++ {
		b[i] = byte(v) | 0x80
		v >>= 7
	}
	b[i] = byte(v)
}

// head writes a length-delimited field's tag and length before its body of
// n bytes, which is already written.
func (w *backWriter) head(tag byte, n int) {
	w.varint(uint64(n))
	w.byte(tag)
}

func (w *backWriter) optString(tag byte, s string) {
	if s == "" {
		return
	}
	w.i -= len(s)
	copy(w.buf[w.i:], s)
	w.head(tag, len(s))
}
