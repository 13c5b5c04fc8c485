package lokiproto

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// LabelPair is one name/value pair: a stream label or a structured metadata
// field.
type LabelPair struct {
	Name  string
	Value string
}

// Entry is one log entry as pushed.
type Entry struct {
	// Timestamp is the entry's time in UTC. An entry without a timestamp
	// field has the zero time.Time, as in Loki.
	Timestamp time.Time
	// Line is the log line, byte for byte.
	Line string
	// Metadata is the structured metadata as pushed, in wire order; nil when
	// there is none.
	Metadata []LabelPair
}

// Stream is one stream of a push: its label-set string as pushed (not yet
// parsed) and its entries in wire order.
type Stream struct {
	Labels  string
	Entries []Entry
	Hash    uint64
}

// PushRequest is a decoded push.
type PushRequest struct {
	Streams []Stream
}

// MaxDepth is how deeply unknown protobuf groups may nest before decoding
// fails with [ErrTooDeep]. Known messages nest at most four levels.
const MaxDepth = 64

// Errors returned by [DecodePushRequest] besides the ones describing a
// specific malformed field.
var (
	// ErrTruncated is returned when a field runs past the end of its message.
	ErrTruncated = errors.New("unexpected end of message")
	// ErrVarintOverflow is returned for a 10-byte varint whose value does not
	// fit in 64 bits. gogo-protobuf silently drops the extra bits; no encoder
	// produces such a varint.
	ErrVarintOverflow = errors.New("varint overflows 64 bits")
	// ErrTooDeep is returned when unknown groups nest deeper than [MaxDepth].
	ErrTooDeep = errors.New("groups nested too deeply")
)

var errIntOverflow = errors.New("integer overflow")

// Valid range of google.protobuf.Timestamp seconds: [0001-01-01, 10000-01-01).
const (
	minValidSeconds = -62135596800
	maxValidSeconds = 253402300800
)

// DecodePushRequest decodes a protobuf logproto.PushRequest (not compressed).
// It accepts exactly what Loki's gogo-generated decoder accepts, except for the
// encodings described at [ErrVarintOverflow] and [ErrTooDeep].
func DecodePushRequest(b []byte) (*PushRequest, error) {
	req := &PushRequest{}
	err := forEachField(b, "PushRequest", 2, func(num int32, typ protowire.Type, v []byte) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return wrongType(typ, "Streams")
			}
			var s Stream
			if err := decodeStream(v, &s); err != nil {
				return fmt.Errorf("stream %d: %w", len(req.Streams), err)
			}
			req.Streams = append(req.Streams, s)
		case 2:
			if typ != protowire.BytesType {
				return wrongType(typ, "Format")
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return req, nil
}

func decodeStream(b []byte, s *Stream) error {
	return forEachField(b, "StreamAdapter", 3, func(num int32, typ protowire.Type, v []byte) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return wrongType(typ, "Labels")
			}
			s.Labels = string(v)
		case 2:
			if typ != protowire.BytesType {
				return wrongType(typ, "Entries")
			}
			var e Entry
			if err := decodeEntry(v, &e); err != nil {
				return fmt.Errorf("entry %d: %w", len(s.Entries), err)
			}
			s.Entries = append(s.Entries, e)
		case 3:
			if typ != protowire.VarintType {
				return wrongType(typ, "Hash")
			}
			s.Hash = varintValue(v)
		}
		return nil
	})
}

func decodeEntry(b []byte, e *Entry) error {
	return forEachField(b, "EntryAdapter", 4, func(num int32, typ protowire.Type, v []byte) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return wrongType(typ, "Timestamp")
			}
			t, err := decodeTimestamp(v)
			if err != nil {
				return err
			}
			e.Timestamp = t
		case 2:
			if typ != protowire.BytesType {
				return wrongType(typ, "Line")
			}
			e.Line = string(v)
		case 3, 4:
			name := "StructuredMetadata"
			if num == 4 {
				name = "Parsed"
			}
			if typ != protowire.BytesType {
				return wrongType(typ, name)
			}
			var p LabelPair
			if err := decodeLabelPair(v, &p); err != nil {
				return err
			}
			if num == 3 {
				e.Metadata = append(e.Metadata, p)
			}
		}
		return nil
	})
}

func decodeLabelPair(b []byte, p *LabelPair) error {
	return forEachField(b, "LabelPairAdapter", 2, func(num int32, typ protowire.Type, v []byte) error {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return wrongType(typ, "Name")
			}
			p.Name = string(v)
		case 2:
			if typ != protowire.BytesType {
				return wrongType(typ, "Value")
			}
			p.Value = string(v)
		}
		return nil
	})
}

// decodeTimestamp decodes a google.protobuf.Timestamp and validates it as
// gogo's StdTimeUnmarshal does. Each occurrence of the field replaces the
// previous one (no merging), as in Loki.
func decodeTimestamp(b []byte) (time.Time, error) {
	var secs int64
	var nanos int32
	err := forEachField(b, "Timestamp", 2, func(num int32, typ protowire.Type, v []byte) error {
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return wrongType(typ, "Seconds")
			}
			secs = int64(varintValue(v))
		case 2:
			if typ != protowire.VarintType {
				return wrongType(typ, "Nanos")
			}
			nanos = int32(varintValue(v))
		}
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	switch {
	case secs < minValidSeconds:
		return time.Time{}, fmt.Errorf("timestamp: seconds %d before 0001-01-01", secs)
	case secs >= maxValidSeconds:
		return time.Time{}, fmt.Errorf("timestamp: seconds %d after 10000-01-01", secs)
	case nanos < 0 || nanos >= 1e9:
		return time.Time{}, fmt.Errorf("timestamp: nanos %d not in range [0, 1e9)", nanos)
	}
	return time.Unix(secs, int64(nanos)).UTC(), nil
}

func wrongType(typ protowire.Type, field string) error {
	return fmt.Errorf("wrong wire type %d for field %s", typ, field)
}

// varintValue returns the value of a varint field's raw bytes, as returned by
// forEachField (already validated).
func varintValue(v []byte) uint64 {
	x, _ := consumeVarint(v)
	return x
}

// forEachField walks the fields of one message whose known fields are numbered
// 1 to known. Unknown fields are skipped. For a known varint field fn gets the
// varint's bytes; for a known bytes field, its payload; for a known field of
// another wire type, nil (fn then reports the wrong wire type).
func forEachField(b []byte, msg string, known int32, fn func(num int32, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		tag, n := consumeVarint(b)
		if n < 0 {
			return varintErr(n)
		}
		num := int32(tag >> 3)
		typ := protowire.Type(tag & 7)
		if typ == protowire.EndGroupType {
			return fmt.Errorf("%s: end group for non-group", msg)
		}
		if num <= 0 {
			return fmt.Errorf("%s: illegal tag %d (wire type %d)", msg, num, typ)
		}
		if num > known {
			k, err := skipField(b, 0)
			if err != nil {
				return err
			}
			b = b[k:]
			continue
		}
		var v []byte
		m := n
		switch typ {
		case protowire.VarintType:
			_, k := consumeVarint(b[n:])
			if k < 0 {
				return varintErr(k)
			}
			v = b[n : n+k]
			m = n + k
		case protowire.BytesType:
			l, k := consumeVarint(b[n:])
			if k < 0 {
				return varintErr(k)
			}
			if l > uint64(len(b)-n-k) {
				return ErrTruncated
			}
			v = b[n+k : n+k+int(l)]
			m = n + k + int(l)
		}
		if err := fn(num, typ, v); err != nil {
			return err
		}
		b = b[m:]
	}
	return nil
}

// skipField returns the length of the field starting at b[0] (its tag
// included), following gogo-protobuf's skip rules: an end-group tag ends a
// group whatever its field number, and a lone end-group tag is one byte long.
func skipField(b []byte, depth int) (int, error) {
	tag, n := consumeVarint(b)
	if n < 0 {
		return 0, varintErr(n)
	}
	switch protowire.Type(tag & 7) {
	case protowire.VarintType:
		_, k := consumeVarint(b[n:])
		if k < 0 {
			return 0, varintErr(k)
		}
		return n + k, nil
	case protowire.Fixed64Type:
		if len(b)-n < 8 {
			return 0, ErrTruncated
		}
		return n + 8, nil
	case protowire.Fixed32Type:
		if len(b)-n < 4 {
			return 0, ErrTruncated
		}
		return n + 4, nil
	case protowire.BytesType:
		l, k := consumeVarint(b[n:])
		if k < 0 {
			return 0, varintErr(k)
		}
		if int64(l) < 0 {
			return 0, errors.New("negative length")
		}
		if l > uint64(len(b)-n-k) {
			return 0, ErrTruncated
		}
		return n + k + int(l), nil
	case protowire.StartGroupType:
		if depth >= MaxDepth {
			return 0, ErrTooDeep
		}
		i := n
		for {
			inner, k := consumeVarint(b[i:])
			if k < 0 {
				return 0, varintErr(k)
			}
			if protowire.Type(inner&7) == protowire.EndGroupType {
				return i + k, nil
			}
			l, err := skipField(b[i:], depth+1)
			if err != nil {
				return 0, err
			}
			i += l
		}
	case protowire.EndGroupType:
		return n, nil
	default:
		return 0, fmt.Errorf("illegal wire type %d", tag&7)
	}
}

const (
	errCodeTruncated = -1
	errCodeOverflow  = -2
	errCodeTooLong   = -3
)

// consumeVarint reads a varint with protowire and classifies failures: -1
// when the input ends inside the varint, -2 for a 10-byte varint whose value
// overflows 64 bits (which gogo accepts, dropping bits), -3 for a varint
// longer than 10 bytes (which gogo rejects too).
func consumeVarint(b []byte) (uint64, int) {
	v, n := protowire.ConsumeVarint(b)
	if n >= 0 {
		return v, n
	}
	for i := 0; i < len(b) && i < 10; i++ {
		if b[i] < 0x80 {
			// Ends within 10 bytes, so protowire refused an overflowing value.
			return 0, errCodeOverflow
		}
	}
	if len(b) >= 10 {
		return 0, errCodeTooLong
	}
	return 0, errCodeTruncated
}

func varintErr(code int) error {
	switch code {
	case errCodeOverflow:
		return ErrVarintOverflow
	case errCodeTooLong:
		return errIntOverflow
	default:
		return ErrTruncated
	}
}

// Size returns the size in bytes of r encoded as a logproto.PushRequest (the
// form in which Loki's distributor forwards a push to its ingesters over
// gRPC), empty fields left out as the generated encoder leaves them out.
func (r *PushRequest) Size() int {
	str := func(s string) int {
		if s == "" {
			return 0
		}
		return 1 + protowire.SizeBytes(len(s))
	}
	msg := func(n int) int { return 1 + protowire.SizeBytes(n) }
	n := 0
	for i := range r.Streams {
		st := &r.Streams[i]
		sn := str(st.Labels)
		if st.Hash != 0 {
			sn += 1 + protowire.SizeVarint(st.Hash)
		}
		for j := range st.Entries {
			e := &st.Entries[j]
			ts := 0
			if !e.Timestamp.IsZero() {
				if s := e.Timestamp.Unix(); s != 0 {
					ts += 1 + protowire.SizeVarint(uint64(s))
				}
				if ns := e.Timestamp.Nanosecond(); ns != 0 {
					ts += 1 + protowire.SizeVarint(uint64(ns))
				}
			}
			en := msg(ts) + str(e.Line)
			for _, m := range e.Metadata {
				en += msg(str(m.Name) + str(m.Value))
			}
			sn += msg(en)
		}
		n += msg(sn)
	}
	return n
}
