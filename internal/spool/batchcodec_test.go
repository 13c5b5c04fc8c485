package spool

import (
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/lokislog/lokislog/exporter"
)

func sampleBatch() *exporter.Batch {
	return &exporter.Batch{
		Tenant: "team-a",
		Streams: []exporter.Stream{
			{Labels: `{app="api", env="prod"}`, Entries: []exporter.Entry{
				{Timestamp: 1_700_000_000_000_000_000, Line: `level=info msg="started"`},
				{Timestamp: 1_700_000_000_000_000_500, Line: "second", Metadata: []exporter.LabelPair{{Name: "trace_id", Value: "abc"}, {Name: "empty", Value: ""}}},
				{Timestamp: 1_699_999_999_000_000_000, Line: "older (out of order)"},
			}},
			{Labels: `{app="worker"}`, Entries: []exporter.Entry{{Timestamp: math.MinInt64, Line: ""}, {Timestamp: math.MaxInt64, Line: "max"}}},
			{Labels: `{}`},
		},
	}
}

func TestBatchRoundTrip(t *testing.T) {
	tests := map[string]*exporter.Batch{
		"sample":      sampleBatch(),
		"empty":       {},
		"tenant only": {Tenant: "x"},
		"unicode":     {Streams: []exporter.Stream{{Labels: `{a="ü"}`, Entries: []exporter.Entry{{Timestamp: -5, Line: "日本語\x00\xff"}}}}},
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			p := AppendBatch(nil, b)
			got, err := DecodeBatch(p)
			if err != nil {
				t.Fatalf("DecodeBatch: %v", err)
			}
			if !reflect.DeepEqual(got, b) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
			}
			if got.Len() != b.Len() {
				t.Fatalf("Len %d, want %d", got.Len(), b.Len())
			}
			// Every strict prefix is an error, never a panic.
			for i := range len(p) {
				if _, err := DecodeBatch(p[:i]); !errors.Is(err, ErrBadBatch) {
					t.Fatalf("prefix of %d/%d bytes: %v", i, len(p), err)
				}
			}
		})
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	valid := AppendBatch(nil, sampleBatch())
	tests := map[string][]byte{
		"empty":          nil,
		"bad version":    append([]byte{9}, valid[1:]...),
		"trailing bytes": append(append([]byte{}, valid...), 0),
		"huge tenant":    {batchVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge streams":   {batchVersion, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"huge entries":   {batchVersion, 0, 1, 0, 0xff, 0xff, 0xff, 0x7f},
		"huge metadata":  {batchVersion, 0, 1, 0, 1, 0, 0, 0xff, 0xff, 0x7f},
		"bad varint":     {batchVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			if b, err := DecodeBatch(p); !errors.Is(err, ErrBadBatch) || b != nil {
				t.Fatalf("DecodeBatch = %v, %v; want ErrBadBatch", b, err)
			}
		})
	}
}

func TestAppendBatchReusesBuffer(t *testing.T) {
	b := sampleBatch()
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() { buf = AppendBatch(buf[:0], b) })
	if allocs != 0 {
		t.Fatalf("AppendBatch allocates %v times with a large enough buffer", allocs)
	}
}

func FuzzBatchRoundTrip(f *testing.F) {
	f.Add("tenant", `{a="b"}`, int64(1), int64(-7), "line", "k", "v", uint8(3))
	f.Add("", "", int64(math.MinInt64), int64(math.MaxInt64), "", "", "", uint8(0))
	f.Fuzz(func(t *testing.T, tenant, labels string, ts, delta int64, line, mk, mv string, n uint8) {
		b := &exporter.Batch{Tenant: tenant}
		for s := range int(n % 4) {
			st := exporter.Stream{Labels: labels + string(rune('a'+s))}
			for e := range int(n/4) % 5 {
				en := exporter.Entry{Timestamp: ts + int64(e)*delta, Line: line}
				if e%2 == 1 {
					en.Metadata = []exporter.LabelPair{{Name: mk, Value: mv}, {Name: mv, Value: mk}}
				}
				st.Entries = append(st.Entries, en)
			}
			b.Streams = append(b.Streams, st)
		}
		got, err := DecodeBatch(AppendBatch(nil, b))
		if err != nil {
			t.Fatalf("DecodeBatch: %v", err)
		}
		if !reflect.DeepEqual(got, b) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add(AppendBatch(nil, sampleBatch()))
	f.Add(AppendBatch(nil, &exporter.Batch{}))
	f.Add([]byte{batchVersion, 0, 0xff, 0xff, 0x7f})
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := DecodeBatch(p)
		if err != nil {
			if !errors.Is(err, ErrBadBatch) || b != nil {
				t.Fatalf("DecodeBatch = %v, %v", b, err)
			}
			return
		}
		// What decodes re-encodes to a batch that decodes the same.
		b2, err := DecodeBatch(AppendBatch(nil, b))
		if err != nil || !reflect.DeepEqual(b, b2) {
			t.Fatalf("re-encoding: %v\n%+v\n%+v", err, b, b2)
		}
	})
}
