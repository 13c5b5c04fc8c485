package receiver

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The Loki push schema (pkg/push/push.proto of github.com/grafana/loki):
//
//	PushRequest      { repeated StreamAdapter streams = 1; string format = 2; }
//	StreamAdapter    { string labels = 1; repeated EntryAdapter entries = 2; uint64 hash = 3; }
//	EntryAdapter     { Timestamp timestamp = 1; string line = 2;
//	                   repeated LabelPairAdapter structuredMetadata = 3; repeated LabelPairAdapter parsed = 4; }
//	LabelPairAdapter { string name = 1; string value = 2; }
//	Timestamp        { int64 seconds = 1; int32 nanos = 2; }
//
// The receiver decodes it with protowire rather than Loki's generated types:
// those register the same gogo proto names as loki-client-go (which
// slog-loki uses), and a binary holding both prints warnings at start.
// receiver_test checks this decoder against Loki's types.

// lokiEntry is one decoded entry.
type lokiEntry struct {
	Seconds int64
	Nanos   int32
	Line    []byte
	Meta    []lokiPair
}

type lokiPair struct{ Name, Value []byte }

// lokiStream is one decoded stream.
type lokiStream struct {
	Labels  []byte
	Entries []lokiEntry
}

// fields calls fn for each field of the message b.
func fields(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v, x); err != nil {
			return err
		}
	}
	return nil
}

// want checks that field num has wire type typ.
func want(num protowire.Number, typ, wantTyp protowire.Type) error {
	if typ != wantTyp {
		return fmt.Errorf("field %d: wire type %d, want %d", num, typ, wantTyp)
	}
	return nil
}

// decodeLokiPush decodes a (decompressed) Loki PushRequest into streams;
// the tests use it to compare with Loki's types.
func decodeLokiPush(b []byte) ([]lokiStream, error) {
	var streams []lokiStream
	err := walkLokiPush(b, func(i int, labels []byte) error {
		streams = append(streams, lokiStream{Labels: labels})
		return nil
	}, func(e *lokiEntry) error {
		st := &streams[len(streams)-1]
		c := *e
		c.Meta = append([]lokiPair(nil), e.Meta...)
		st.Entries = append(st.Entries, c)
		return nil
	})
	return streams, err
}

// walkLokiPush decodes a (decompressed) Loki PushRequest, calling stream
// for each stream (before its entries) and entry for each of its entries.
// The entry passed is reused: it is valid only during the call. A stream's
// labels field may come after its entries on the wire; walkLokiPush finds
// it first.
func walkLokiPush(b []byte, stream func(i int, labels []byte) error, entry func(e *lokiEntry) error) error {
	n := 0
	var e lokiEntry
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if err := want(num, typ, protowire.BytesType); err != nil {
				return err
			}
			if err := walkLokiStream(v, n, stream, entry, &e); err != nil {
				return fmt.Errorf("stream %d: %w", n, err)
			}
			n++
		case 2:
			return want(num, typ, protowire.BytesType)
		}
		return nil
	})
}

func walkLokiStream(b []byte, i int, stream func(int, []byte) error, entry func(*lokiEntry) error, e *lokiEntry) error {
	// First pass: the labels (and wire types of the other fields).
	var labels []byte
	if err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if err := want(num, typ, protowire.BytesType); err != nil {
				return err
			}
			labels = v
		case 2:
			return want(num, typ, protowire.BytesType)
		case 3:
			return want(num, typ, protowire.VarintType)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := stream(i, labels); err != nil {
		return err
	}
	j := 0
	return fields(b, func(num protowire.Number, _ protowire.Type, v []byte, _ uint64) error {
		if num != 2 {
			return nil
		}
		if err := decodeLokiEntry(v, e); err != nil {
			return fmt.Errorf("entry %d: %w", j, err)
		}
		j++
		return entry(e)
	})
}

// decodeLokiEntry decodes an EntryAdapter into e, reusing e.Meta.
func decodeLokiEntry(b []byte, e *lokiEntry) error {
	*e = lokiEntry{Meta: e.Meta[:0]}
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			if err := want(num, typ, protowire.BytesType); err != nil {
				return err
			}
			return fields(v, func(num protowire.Number, typ protowire.Type, _ []byte, x uint64) error {
				switch num {
				case 1:
					if err := want(num, typ, protowire.VarintType); err != nil {
						return err
					}
					e.Seconds = int64(x)
				case 2:
					if err := want(num, typ, protowire.VarintType); err != nil {
						return err
					}
					e.Nanos = int32(x)
				}
				return nil
			})
		case 2:
			if err := want(num, typ, protowire.BytesType); err != nil {
				return err
			}
			e.Line = v
		case 3, 4:
			if err := want(num, typ, protowire.BytesType); err != nil {
				return err
			}
			var p lokiPair
			if err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				switch num {
				case 1:
					p.Name = v
				case 2:
					p.Value = v
				default:
					return nil
				}
				return want(num, typ, protowire.BytesType)
			}); err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			if num == 3 {
				e.Meta = append(e.Meta, p)
			}
		}
		return nil
	})
}
