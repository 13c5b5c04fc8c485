package spool

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/lokislog/lokislog/exporter"
)

// batchVersion is the first byte of an encoded batch.
const batchVersion = 1

// ErrBadBatch is returned (wrapped, with the reason) by [DecodeBatch] for
// bytes that are not an encoded batch.
var ErrBadBatch = errors.New("spool: bad batch encoding")

// AppendBatch appends the encoding of b to dst and returns the extended
// slice. The encoding, all integers varints:
//
//	version byte (1)
//	tenant:  len, bytes
//	streams: count, then per stream
//	  labels:  len, bytes
//	  entries: count, then per entry
//	    timestamp: zig-zag varint, the first of a stream absolute, then
//	               the difference to the previous entry
//	    line:      len, bytes
//	    metadata:  count, then per pair: name len, bytes, value len, bytes
func AppendBatch(dst []byte, b *exporter.Batch) []byte {
	dst = append(dst, batchVersion)
	dst = appendString(dst, b.Tenant)
	dst = binary.AppendUvarint(dst, uint64(len(b.Streams)))
	for i := range b.Streams {
		st := &b.Streams[i]
		dst = appendString(dst, st.Labels)
		dst = binary.AppendUvarint(dst, uint64(len(st.Entries)))
		var prev int64
		for j := range st.Entries {
			e := &st.Entries[j]
			dst = binary.AppendVarint(dst, e.Timestamp-prev) // wraps; decoding wraps back
			prev = e.Timestamp
			dst = appendString(dst, e.Line)
			dst = binary.AppendUvarint(dst, uint64(len(e.Metadata)))
			for _, m := range e.Metadata {
				dst = appendString(dst, m.Name)
				dst = appendString(dst, m.Value)
			}
		}
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// DecodeBatch decodes a batch encoded by [AppendBatch]. Every count and
// length is checked against the bytes left before anything is allocated,
// so memory stays proportional to len(p); any malformed input returns an
// error wrapping ErrBadBatch. Lines and metadata of the result share one
// string copy of p (tenant and labels are copied on their own, so keeping
// them does not keep p's copy alive). Streams, Entries and Metadata are nil
// when empty.
func DecodeBatch(p []byte) (*exporter.Batch, error) {
	d := decoder{buf: p}
	if len(p) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadBatch)
	}
	if p[0] != batchVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadBatch, p[0])
	}
	d.off = 1
	d.all = string(p) // one copy; lines and metadata are substrings
	b := &exporter.Batch{}
	b.Tenant = d.str(true)
	ns := d.count(2)
	if ns > 0 {
		b.Streams = make([]exporter.Stream, 0, ns)
	}
	for range ns {
		if d.err != nil {
			break
		}
		var st exporter.Stream
		st.Labels = d.str(true)
		ne := d.count(3)
		if ne > 0 {
			st.Entries = make([]exporter.Entry, 0, ne)
		}
		var prev int64
		for range ne {
			if d.err != nil {
				break
			}
			var e exporter.Entry
			e.Timestamp = prev + d.varint()
			prev = e.Timestamp
			e.Line = d.str(false)
			nm := d.count(2)
			if nm > 0 {
				e.Metadata = make([]exporter.LabelPair, 0, nm)
			}
			for range nm {
				if d.err != nil {
					break
				}
				name := d.str(false)
				value := d.str(false)
				e.Metadata = append(e.Metadata, exporter.LabelPair{Name: name, Value: value})
			}
			st.Entries = append(st.Entries, e)
		}
		b.Streams = append(b.Streams, st)
	}
	if d.err == nil && d.off != len(p) {
		d.fail("%d trailing bytes", len(p)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return b, nil
}

type decoder struct {
	buf []byte
	all string
	off int
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: at byte %d: %s", ErrBadBatch, d.off, fmt.Sprintf(format, a...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf[d.off:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.off += n
	return v
}

// count reads an element count; each element takes at least minSize
// bytes, which bounds the count by the bytes left.
func (d *decoder) count(minSize int) int {
	v := d.uvarint()
	if d.err != nil {
		return 0
	}
	if left := uint64(len(d.buf) - d.off); v > left/uint64(minSize) {
		d.fail("count %d with %d bytes left", v, left)
		return 0
	}
	return int(v)
}

// str reads a length-prefixed string: a copy of its own when own is set,
// else a substring of d.all.
func (d *decoder) str(own bool) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.buf)-d.off) {
		d.fail("string of %d bytes with %d left", n, len(d.buf)-d.off)
		return ""
	}
	start := d.off
	d.off += int(n)
	if own {
		return string(d.buf[start:d.off])
	}
	return d.all[start:d.off]
}
