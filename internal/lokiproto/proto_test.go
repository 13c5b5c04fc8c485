package lokiproto

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"google.golang.org/protobuf/encoding/protowire"
)

// fromReference converts the official decoder's result to ours.
func fromReference(r *push.PushRequest) *PushRequest {
	out := &PushRequest{}
	for _, s := range r.Streams {
		ms := Stream{Labels: s.Labels, Hash: s.Hash}
		for _, e := range s.Entries {
			me := Entry{Timestamp: e.Timestamp, Line: e.Line}
			for _, m := range e.StructuredMetadata {
				me.Metadata = append(me.Metadata, LabelPair{Name: m.Name, Value: m.Value})
			}
			ms.Entries = append(ms.Entries, me)
		}
		out.Streams = append(out.Streams, ms)
	}
	return out
}

// diffRequests returns "" when a and b are equal (timestamps compared to the
// nanosecond, nil and empty slices alike) or a description of the first
// difference.
func diffRequests(a, b *PushRequest) string {
	if len(a.Streams) != len(b.Streams) {
		return fmt.Sprintf("streams: %d vs %d", len(a.Streams), len(b.Streams))
	}
	for i := range a.Streams {
		sa, sb := a.Streams[i], b.Streams[i]
		if sa.Labels != sb.Labels || sa.Hash != sb.Hash {
			return fmt.Sprintf("stream %d: labels %q/%d vs %q/%d", i, sa.Labels, sa.Hash, sb.Labels, sb.Hash)
		}
		if len(sa.Entries) != len(sb.Entries) {
			return fmt.Sprintf("stream %d: entries %d vs %d", i, len(sa.Entries), len(sb.Entries))
		}
		for j := range sa.Entries {
			ea, eb := sa.Entries[j], sb.Entries[j]
			if !ea.Timestamp.Equal(eb.Timestamp) || ea.Line != eb.Line || len(ea.Metadata) != len(eb.Metadata) {
				return fmt.Sprintf("stream %d entry %d: %v %q %v vs %v %q %v", i, j, ea.Timestamp, ea.Line, ea.Metadata, eb.Timestamp, eb.Line, eb.Metadata)
			}
			for k := range ea.Metadata {
				if ea.Metadata[k] != eb.Metadata[k] {
					return fmt.Sprintf("stream %d entry %d metadata %d: %v vs %v", i, j, k, ea.Metadata[k], eb.Metadata[k])
				}
			}
		}
	}
	return ""
}

func randString(r *rand.Rand, max int) string {
	n := r.IntN(max + 1)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return string(b)
}

func randomRequest(r *rand.Rand) push.PushRequest {
	var req push.PushRequest
	for range r.IntN(5) {
		s := push.Stream{Labels: randString(r, 40), Hash: r.Uint64() >> r.IntN(64)}
		for range r.IntN(6) {
			e := push.Entry{
				// Any valid protobuf timestamp, including before 1970.
				Timestamp: time.Unix(r.Int64N(maxValidSeconds-minValidSeconds)+minValidSeconds, r.Int64N(1e9)).UTC(),
				Line:      randString(r, 300),
			}
			for range r.IntN(4) {
				e.StructuredMetadata = append(e.StructuredMetadata, push.LabelAdapter{Name: randString(r, 10), Value: randString(r, 20)})
			}
			s.Entries = append(s.Entries, e)
		}
		req.Streams = append(req.Streams, s)
	}
	return req
}

func TestDecodePushRequestMatchesReference(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 30, 45, 123456789, time.UTC)
	tests := map[string]push.PushRequest{
		"empty":     {},
		"one entry": {Streams: []push.Stream{{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: now, Line: "hello"}}}}},
		"metadata and hash": {Streams: []push.Stream{{Labels: `{a="b", c="d"}`, Hash: 42, Entries: []push.Entry{
			{Timestamp: now, Line: "x", StructuredMetadata: push.LabelsAdapter{{Name: "trace_id", Value: "abc"}, {Name: "span_id", Value: "def"}}},
			{Timestamp: now.Add(time.Nanosecond), Line: ""},
		}}}},
		"epoch and pre-epoch": {Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{
			{Timestamp: time.Unix(0, 0).UTC(), Line: "epoch"},
			{Timestamp: time.Unix(-5, 999999999).UTC(), Line: "before"},
		}}}},
		"empty labels and line": {Streams: []push.Stream{{Entries: []push.Entry{{Timestamp: now}}}, {Labels: `{x="y"}`}}},
		"binary line":           {Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: now, Line: "\x00\xff\xfe\n"}}}}},
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			checkAgainstReference(t, in)
		})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		in := randomRequest(r)
		t.Run(fmt.Sprintf("random%d", i), func(t *testing.T) { checkAgainstReference(t, in) })
	}
}

func checkAgainstReference(t *testing.T, in push.PushRequest) {
	t.Helper()
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePushRequest(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	var ref push.PushRequest
	if err := ref.Unmarshal(b); err != nil {
		t.Fatalf("reference decode: %v", err)
	}
	if d := diffRequests(got, fromReference(&ref)); d != "" {
		t.Fatalf("differs from reference: %s", d)
	}
	if d := diffRequests(got, fromReference(&in)); d != "" {
		t.Fatalf("differs from input: %s", d)
	}
}

// Hand-built encodings: unknown fields of every wire type, groups, repeated
// scalar fields, the Parsed field, wrong wire types and truncation.
func TestDecodePushRequestEdgeCases(t *testing.T) {
	ts := func(sec, nanos uint64) []byte {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, sec)
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, nanos)
		return b
	}
	msg := func(num protowire.Number, payload []byte) []byte {
		b := protowire.AppendTag(nil, num, protowire.BytesType)
		return protowire.AppendBytes(b, payload)
	}
	cat := func(parts ...[]byte) []byte {
		var b []byte
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	unknowns := cat(
		protowire.AppendVarint(protowire.AppendTag(nil, 9, protowire.VarintType), 300),
		protowire.AppendFixed32(protowire.AppendTag(nil, 10, protowire.Fixed32Type), 1),
		protowire.AppendFixed64(protowire.AppendTag(nil, 11, protowire.Fixed64Type), 1),
		msg(12, []byte("junk")),
		protowire.AppendTag(nil, 13, protowire.StartGroupType),
		protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1),
		protowire.AppendTag(nil, 13, protowire.EndGroupType),
	)
	entry := cat(msg(1, ts(1700000000, 5)), msg(2, []byte("line")), msg(3, cat(msg(1, []byte("k")), msg(2, []byte("v")))), msg(4, cat(msg(1, []byte("p")))))
	tests := map[string]struct {
		in      []byte
		wantErr bool
	}{
		"unknown fields everywhere":    {in: cat(unknowns, msg(1, cat(unknowns, msg(1, []byte(`{a="b"}`)), msg(2, cat(unknowns, entry)))), msg(2, []byte("loki")))},
		"repeated labels: last wins":   {in: msg(1, cat(msg(1, []byte(`{a="1"}`)), msg(1, []byte(`{a="2"}`)), msg(2, entry)))},
		"repeated timestamp: replaced": {in: msg(1, msg(2, cat(msg(1, ts(5, 0)), msg(1, cat(protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 7))))))},
		"missing timestamp":            {in: msg(1, msg(2, msg(2, []byte("x"))))},
		"nanos out of range":           {in: msg(1, msg(2, msg(1, ts(1, 1e9)))), wantErr: true},
		"seconds after 9999":           {in: msg(1, msg(2, msg(1, ts(maxValidSeconds, 0)))), wantErr: true},
		"negative nanos":               {in: msg(1, msg(2, msg(1, ts(1, uint64(1<<64-1))))), wantErr: true},
		"labels as varint":             {in: msg(1, protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), 1)), wantErr: true},
		"hash as bytes":                {in: msg(1, msg(3, []byte("x"))), wantErr: true},
		"format as varint":             {in: protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 1), wantErr: true},
		"bad parsed field":             {in: msg(1, msg(2, msg(4, []byte{0x0a, 0x05}))), wantErr: true},
		"truncated length":             {in: []byte{0x0a, 0x05, 0x0a}, wantErr: true},
		"length past end":              {in: []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, wantErr: true},
		"huge length":                  {in: []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, wantErr: true},
		"field zero":                   {in: []byte{0x02, 0x00}, wantErr: true},
		"end group at top":             {in: []byte{0x0c}, wantErr: true},
		"illegal wire type":            {in: []byte{0x4e}, wantErr: true},
		"unterminated group":           {in: []byte{0x4b, 0x08, 0x01}, wantErr: true},
		"truncated fixed64":            {in: []byte{0x49, 1, 2, 3}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DecodePushRequest(tc.in)
			var ref push.PushRequest
			refErr := ref.Unmarshal(tc.in)
			if (refErr != nil) != tc.wantErr {
				t.Fatalf("reference error = %v, test expects error %v", refErr, tc.wantErr)
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				if d := diffRequests(got, fromReference(&ref)); d != "" {
					t.Fatalf("differs from reference: %s", d)
				}
			}
		})
	}
}

func TestDecodePushRequestStricterThanReference(t *testing.T) {
	// A 10-byte varint with high bits set: gogo drops them, we refuse.
	overflow := []byte{0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}
	in := append([]byte{0x0a, byte(len(overflow))}, overflow...)
	if _, err := DecodePushRequest(in); !errors.Is(err, ErrVarintOverflow) {
		t.Fatalf("error = %v, want ErrVarintOverflow", err)
	}
	// Deeply nested unknown groups.
	var deep []byte
	for range MaxDepth + 2 {
		deep = protowire.AppendTag(deep, 9, protowire.StartGroupType)
	}
	for range MaxDepth + 2 {
		deep = protowire.AppendTag(deep, 9, protowire.EndGroupType)
	}
	if _, err := DecodePushRequest(deep); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("error = %v, want ErrTooDeep", err)
	}
}

// FuzzDecodePushRequest checks that the decoder never panics and agrees with
// the official gogo-generated decoder: when we accept, it accepts with the
// same result; when it accepts and we refuse, the reason is one of the
// documented strictnesses.
func FuzzDecodePushRequest(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		in := randomRequest(r)
		b, _ := in.Marshal()
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x05, 0x0a})
	f.Add([]byte{0x4b, 0x08, 0x01, 0x4c})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodePushRequest(b)
		var ref push.PushRequest
		refErr := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("reference panicked: %v", p)
				}
			}()
			return ref.Unmarshal(b)
		}()
		switch {
		case err == nil && refErr != nil:
			t.Fatalf("we accept what the reference refuses (%v)", refErr)
		case err == nil:
			if d := diffRequests(got, fromReference(&ref)); d != "" {
				t.Fatalf("differs from reference: %s", d)
			}
		case refErr == nil:
			if !errors.Is(err, ErrVarintOverflow) && !errors.Is(err, ErrTooDeep) {
				t.Fatalf("we refuse (%v) what the reference accepts", err)
			}
		}
	})
}

func BenchmarkDecodePushRequest(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	var in push.PushRequest
	for range 10 {
		in.Streams = append(in.Streams, randomRequest(r).Streams...)
	}
	data, _ := in.Marshal()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodePushRequest(data); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLyingLengthsDoNotAllocate feeds length fields that claim far more
// bytes than present: decoding must fail without allocating for them.
func TestLyingLengthsDoNotAllocate(t *testing.T) {
	huge := protowire.AppendVarint(nil, 1<<40)
	inputs := map[string][]byte{
		"stream length":  append([]byte{0x0a}, huge...),
		"nested length":  append([]byte{0x0a, 0x07, 0x12}, huge...),
		"unknown length": append([]byte{0x62}, huge...),
		"max varint":     {0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"snappy 4GB":     {0xff, 0xff, 0xff, 0xff, 0x0f, 0x00},
		"snappy 100MB+1": append(protowire.AppendVarint(nil, 100<<20+1), 0x00),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err1 := DecodePushRequest(in)
			_, err2 := DecodeSnappy(in, 100<<20)
			runtime.ReadMemStats(&after)
			if err1 == nil && err2 == nil {
				t.Fatal("both decoders accepted a lying length")
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
				t.Fatalf("allocated %d bytes", n)
			}
		})
	}
}
