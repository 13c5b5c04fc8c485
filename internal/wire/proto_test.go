package wire_test

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/s2"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/wire"
)

// checkPush encodes b and compares the bytes with what the reference gogo
// code marshals, then decodes them with the reference code.
func checkPush(t *testing.T, b *exporter.Batch) {
	t.Helper()
	want, err := toPush(b).Marshal()
	if err != nil {
		t.Fatalf("reference marshal: %v", err)
	}
	prefix := []byte("prefix")
	got := wire.AppendPush(bytes.Clone(prefix), b.Streams)
	if !bytes.HasPrefix(got, prefix) {
		t.Fatalf("dst prefix overwritten: %q", got[:len(prefix)])
	}
	got = got[len(prefix):]
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding differs from gogo:\n got %x\nwant %x", got, want)
	}
	if n := wire.PushSize(b.Streams); n != len(got) {
		t.Errorf("PushSize = %d, encoded %d bytes", n, len(got))
	}
	var req push.PushRequest
	if err := req.Unmarshal(got); err != nil {
		t.Fatalf("reference unmarshal: %v", err)
	}
	if back := fromPush(&req); !sameBatch(back, b) {
		t.Errorf("decoded batch differs:\n got %+v\nwant %+v", back, b)
	}
}

// sameBatch compares batches, treating nil and empty slices alike.
func sameBatch(a, b *exporter.Batch) bool {
	if len(a.Streams) != len(b.Streams) {
		return false
	}
	for i := range a.Streams {
		sa, sb := a.Streams[i], b.Streams[i]
		if sa.Labels != sb.Labels || len(sa.Entries) != len(sb.Entries) {
			return false
		}
		for j := range sa.Entries {
			ea, eb := sa.Entries[j], sb.Entries[j]
			if ea.Timestamp != eb.Timestamp || ea.Line != eb.Line || len(ea.Metadata) != len(eb.Metadata) {
				return false
			}
			if len(ea.Metadata) > 0 && !reflect.DeepEqual(ea.Metadata, eb.Metadata) {
				return false
			}
		}
	}
	return true
}

func TestAppendPushMatchesGogo(t *testing.T) {
	long := strings.Repeat("x", 20000) // three-byte length varint
	tests := map[string]*exporter.Batch{
		"empty":            {},
		"stream only":      {Streams: []exporter.Stream{{Labels: `{a="b"}`}}},
		"empty labels":     {Streams: []exporter.Stream{{Entries: []exporter.Entry{{Timestamp: 1, Line: "x"}}}}},
		"zero timestamp":   {Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{{Line: "x"}}}}},
		"empty line":       {Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{{Timestamp: 1e9}}}}},
		"negative ns":      {Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{{Timestamp: -1}, {Timestamp: -1e9 - 1}, {Timestamp: -1e9}}}}},
		"extreme times":    {Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{{Timestamp: 1<<63 - 1}, {Timestamp: -1 << 63}}}}},
		"long line":        {Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{{Timestamp: 1751284800123456789, Line: long}}}}},
		"empty metadata":   {Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{{Timestamp: 5, Line: "l", Metadata: []exporter.LabelPair{{}, {Name: "n"}, {Value: "v"}}}}}}},
		"metadata":         {Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{{Timestamp: 5, Line: "l", Metadata: []exporter.LabelPair{{Name: "trace_id", Value: "0af7651916cd43dd8448eb211c80319c"}, {Name: "big", Value: long}}}}}}},
		"several streams":  {Streams: []exporter.Stream{{Labels: `{a="1"}`, Entries: []exporter.Entry{{Timestamp: 1, Line: "one"}, {Timestamp: 2, Line: "two"}}}, {Labels: `{a="2"}`, Entries: []exporter.Entry{{Timestamp: 3, Line: "three"}}}}},
		"invalid utf8":     {Streams: []exporter.Stream{{Labels: "{a=\"\xff\"}", Entries: []exporter.Entry{{Timestamp: 1, Line: "\xfe\xff", Metadata: []exporter.LabelPair{{Name: "k", Value: "\x80"}}}}}}},
		"tenant not coded": {Tenant: "t1", Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{{Timestamp: 1, Line: "x"}}}}},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) { checkPush(t, b) })
	}
}

func TestAppendPushRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for i := range 300 {
		b := randomBatch(r)
		if !t.Run("", func(t *testing.T) { checkPush(t, b) }) {
			t.Fatalf("batch %d failed", i)
		}
	}
}

func TestAppendPushBig(t *testing.T) {
	checkPush(t, bigBatch(1<<20))
}

func TestAppendPushAllocs(t *testing.T) {
	b := bigBatch(64 << 10)
	buf := wire.AppendPush(nil, b.Streams)
	allocs := testing.AllocsPerRun(20, func() {
		buf = wire.AppendPush(buf[:0], b.Streams)
	})
	if allocs != 0 {
		t.Errorf("AppendPush into a large enough buffer: %v allocations, want 0", allocs)
	}
}

func TestEncodeSnappy(t *testing.T) {
	tests := map[string][]byte{
		"empty": {},
		"short": []byte("hello"),
		"incompressible": func() []byte {
			r := rand.New(rand.NewPCG(1, 1))
			b := make([]byte, 100000)
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}(),
		"push body": wire.AppendPush(nil, bigBatch(1<<20).Streams),
	}
	for name, src := range tests {
		t.Run(name, func(t *testing.T) {
			enc := wire.EncodeSnappy(nil, src)
			got, err := s2.Decode(nil, enc)
			if err != nil {
				t.Fatalf("s2.Decode: %v", err)
			}
			if !bytes.Equal(got, src) {
				t.Fatalf("round trip differs")
			}
			// Snappy's block header is the uvarint of the decoded length.
			if n, err := s2.DecodedLen(enc); err != nil || n != len(src) {
				t.Fatalf("DecodedLen = %d, %v; want %d", n, err, len(src))
			}
			// A large enough dst is reused.
			again := wire.EncodeSnappy(enc, src)
			if len(src) > 0 && &again[:1][0] != &enc[:1][0] {
				t.Errorf("dst with capacity %d not reused", cap(enc))
			}
			if !bytes.Equal(again, enc) {
				t.Errorf("second encoding differs")
			}
		})
	}
}

func TestEncodeSnappyAllocs(t *testing.T) {
	src := wire.AppendPush(nil, bigBatch(256<<10).Streams)
	dst := wire.EncodeSnappy(nil, src)
	allocs := testing.AllocsPerRun(10, func() { dst = wire.EncodeSnappy(dst, src) })
	if allocs != 0 {
		t.Errorf("EncodeSnappy into a reused buffer: %v allocations, want 0", allocs)
	}
}

// BenchmarkPush compares the hand encoder with the gogo reference code, both
// followed by snappy, on a batch of 1 MiB.
func BenchmarkPush(b *testing.B) {
	batch := bigBatch(1 << 20)
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		var raw, out []byte
		for b.Loop() {
			raw = wire.AppendPush(raw[:0], batch.Streams)
			out = wire.EncodeSnappy(out, raw)
		}
		b.SetBytes(int64(len(raw)))
	})
	b.Run("wire-encode-only", func(b *testing.B) {
		b.ReportAllocs()
		var raw []byte
		for b.Loop() {
			raw = wire.AppendPush(raw[:0], batch.Streams)
		}
		b.SetBytes(int64(len(raw)))
	})
	b.Run("snappy-only", func(b *testing.B) {
		b.ReportAllocs()
		raw := wire.AppendPush(nil, batch.Streams)
		var out []byte
		for b.Loop() {
			out = wire.EncodeSnappy(out, raw)
		}
		b.SetBytes(int64(len(raw)))
	})
	b.Run("gogo", func(b *testing.B) {
		b.ReportAllocs()
		var out []byte
		var n int
		for b.Loop() {
			// The reference types must be built from the batch, as a
			// client using them would.
			raw, err := toPush(batch).Marshal()
			if err != nil {
				b.Fatal(err)
			}
			out = s2.EncodeSnappy(out, raw)
			n = len(raw)
		}
		b.SetBytes(int64(n))
	})
	b.Run("gogo-marshal-only", func(b *testing.B) {
		b.ReportAllocs()
		req := toPush(batch)
		var out []byte
		var n int
		for b.Loop() {
			raw, err := req.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			out = s2.EncodeSnappy(out, raw)
			n = len(raw)
		}
		b.SetBytes(int64(n))
	})
}

// FuzzAppendPush compares the encoder with the reference code on arbitrary
// strings and timestamps.
func FuzzAppendPush(f *testing.F) {
	f.Add(`{a="b"}`, int64(1), "line", "k", "v", uint8(2))
	f.Add("", int64(-1), "", "", "", uint8(0))
	f.Fuzz(func(t *testing.T, labels string, ts int64, line, name, value string, n uint8) {
		s := exporter.Stream{Labels: labels}
		for i := range int(n % 8) {
			e := exporter.Entry{Timestamp: ts + int64(i)*1e9, Line: line[:len(line)*i/8]}
			for range i % 3 {
				e.Metadata = append(e.Metadata, exporter.LabelPair{Name: name, Value: value})
			}
			s.Entries = append(s.Entries, e)
		}
		checkPush(t, &exporter.Batch{Streams: []exporter.Stream{s, s}})
	})
}
