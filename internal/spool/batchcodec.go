package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

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

// AppendBatchFrame appends to dst the encoding of b ([AppendBatch]) framed
// by [PutFrame]: a record that [Spool.AppendFrameMark] writes as it is.
// entries and ts are the frame's entry count and oldest timestamp.
func AppendBatchFrame(dst []byte, b *exporter.Batch, entries int, ts int64) ([]byte, error) {
	start := len(dst)
	dst = AppendBatch(append(dst, make([]byte, frameHeaderSize)...), b)
	return dst, PutFrame(dst[start:], entries, ts)
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
		return nil, errorf("%w: empty", ErrBadBatch)
	}
	if p[0] != batchVersion {
		return nil, errorf("%w: version %d", ErrBadBatch, p[0])
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

// BatchTenant returns the tenant of the encoded batch p, a string that
// aliases p (valid while p is unchanged). It checks the version byte and
// the tenant field only, with errors wrapping ErrBadBatch as
// [DecodeBatch] does; whether the rest of p is valid is for
// [BatchDecoder.Range] or DecodeBatch to say. It does not allocate.
func BatchTenant(p []byte) (string, error) {
	d := decoder{buf: p}
	if len(p) == 0 {
		return "", errorf("%w: empty", ErrBadBatch)
	}
	if p[0] != batchVersion {
		return "", errorf("%w: version %d", ErrBadBatch, p[0])
	}
	d.off = 1
	t := d.view()
	return t, d.err
}

// BatchDecoder walks batches encoded by [AppendBatch] without allocating,
// for a consumer that copies what it keeps into memory of its own (the
// buffer's replay of [Spool.NextView] payloads). Its zero value is ready
// to use; it keeps scratch space between calls (bounded: what a large
// batch needed is not kept). It is not safe for concurrent use.
type BatchDecoder struct {
	ents []rangeEntry
	meta []exporter.LabelPair
}

// rangeEntry is an entry decoded by scan, yielded once the whole batch is
// known to be valid. Its metadata is meta[m0:m1] of the decoder.
type rangeEntry struct {
	labels string
	ts     int64
	line   string
	m0, m1 int
}

// Scratch kept by a BatchDecoder between calls: enough for a batch of the
// buffer's default BatchSize (1 MiB) of lines of 128 bytes or more, which
// the replay of spill mode decodes one after the other (at 1,024 entries
// every such batch grew and dropped 0.5 MB of scratch); 0.5 MB at most.
const (
	maxKeptEntries = 8192
	maxKeptMeta    = 8192
)

// Range decodes p and calls fn for every entry, streams in order and each
// stream's entries in order, with the batch's tenant and the stream's
// labels. p is checked in full first, exactly as [DecodeBatch] checks it
// (the same bytes are accepted and the same error, wrapping ErrBadBatch,
// is returned): on an error fn is never called, so a record is used
// entirely or not at all. Streams without entries yield nothing. Range
// does not allocate (but for an error, or scratch for a larger batch than
// before).
//
// Nothing is copied: tenant, labels, e.Line and the metadata strings
// alias p and are valid only while p is unchanged (for a NextView payload,
// until the next Next, NextView, Rewind or Close); e.Metadata (nil when
// empty) is the decoder's scratch and is valid only during fn. fn copies
// what it keeps (strings.Clone, or into an arena), and must not call
// Range on the same decoder.
func (d *BatchDecoder) Range(p []byte, fn func(tenant, labels string, e exporter.Entry)) error {
	tenant, ok := d.scan(p)
	if !ok {
		d.trim()
		// Bad input is rare: let DecodeBatch, which makes the same
		// checks, say what is wrong.
		if _, err := DecodeBatch(p); err != nil {
			return err
		}
		return errorf("%w: rejected by Range, accepted by DecodeBatch", ErrBadBatch) // a bug
	}
	for i := range d.ents {
		r := &d.ents[i]
		e := exporter.Entry{Timestamp: r.ts, Line: r.line}
		if r.m1 > r.m0 {
			e.Metadata = d.meta[r.m0:r.m1:r.m1]
		}
		fn(tenant, r.labels, e)
	}
	d.trim() // not deferred: a deferred call costs the binary a wrapper function
	return nil
}

// trim drops the references to p, and scratch grown past the bounds.
func (d *BatchDecoder) trim() {
	clear(d.ents)
	d.ents = d.ents[:0]
	if cap(d.ents) > maxKeptEntries {
		d.ents = nil
	}
	clear(d.meta)
	d.meta = d.meta[:0]
	if cap(d.meta) > maxKeptMeta {
		d.meta = nil
	}
}

// scan decodes p into d.ents and d.meta, making the checks of DecodeBatch
// in the same order, and reports whether p is valid.
func (d *BatchDecoder) scan(p []byte) (tenant string, ok bool) {
	d.ents, d.meta = d.ents[:0], d.meta[:0]
	if len(p) == 0 || p[0] != batchVersion {
		return "", false
	}
	tenant, off, ok := viewAt(p, 1)
	if !ok {
		return "", false
	}
	var ns uint64
	if ns, off, ok = countAt(p, off, 2); !ok {
		return "", false
	}
	for range ns {
		var labels string
		if labels, off, ok = viewAt(p, off); !ok {
			return "", false
		}
		var ne uint64
		if ne, off, ok = countAt(p, off, 3); !ok {
			return "", false
		}
		var prev int64
		for range ne {
			r := rangeEntry{labels: labels}
			var delta int64
			if delta, off, ok = varintAt(p, off); !ok {
				return "", false
			}
			r.ts = prev + delta // wraps like AppendBatch
			prev = r.ts
			if r.line, off, ok = viewAt(p, off); !ok {
				return "", false
			}
			var nm uint64
			if nm, off, ok = countAt(p, off, 2); !ok {
				return "", false
			}
			r.m0 = len(d.meta)
			for range nm {
				var name, value string
				if name, off, ok = viewAt(p, off); !ok {
					return "", false
				}
				if value, off, ok = viewAt(p, off); !ok {
					return "", false
				}
				d.meta = append(d.meta, exporter.LabelPair{Name: name, Value: value})
			}
			r.m1 = len(d.meta)
			d.ents = append(d.ents, r)
		}
	}
	return tenant, off == len(p)
}

// uvarintAt reads the unsigned varint at p[off:], off <= len(p), accepting
// exactly what binary.Uvarint accepts. It is written to be inlined.
func uvarintAt(p []byte, off int) (uint64, int, bool) {
	var x uint64
	for s := uint(0); off < len(p); s += 7 {
		b := p[off]
		off++
		if b < 0x80 {
			if s == 63 && b > 1 {
				break // overflows 64 bits
			}
			return x | uint64(b)<<s, off, true
		}
		if s == 63 {
			break // more than 10 bytes
		}
		x |= uint64(b&0x7f) << s
	}
	return 0, off, false
}

// varintAt reads the zig-zag varint at p[off:].
func varintAt(p []byte, off int) (int64, int, bool) {
	ux, off, ok := uvarintAt(p, off)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, off, ok
}

// countAt reads an element count of elements of at least minSize bytes,
// checked against the bytes left like decoder.count.
func countAt(p []byte, off int, minSize uint64) (uint64, int, bool) {
	v, off, ok := uvarintAt(p, off)
	if !ok || v > uint64(len(p)-off)/minSize {
		return 0, off, false
	}
	return v, off, true
}

// viewAt reads a length-prefixed string aliasing p.
func viewAt(p []byte, off int) (string, int, bool) {
	n, off, ok := uvarintAt(p, off)
	if !ok || n > uint64(len(p)-off) {
		return "", off, false
	}
	if n == 0 {
		return "", off, true
	}
	return unsafe.String(&p[off], int(n)), off + int(n), true
}

type decoder struct {
	buf []byte
	all string
	off int
	err error
}

// view reads a length-prefixed string aliasing d.buf, without a copy.
func (d *decoder) view() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.buf)-d.off) {
		d.fail("string of %d bytes with %d left", n, len(d.buf)-d.off)
		return ""
	}
	if n == 0 {
		return ""
	}
	start := d.off
	d.off += int(n)
	return unsafe.String(&d.buf[start], int(n))
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = errorf("%w: at byte %d: %s", ErrBadBatch, d.off, fmt.Sprintf(format, a...))
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
