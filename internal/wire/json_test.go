package wire_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/wire"
)

// jsonPush is Loki's JSON push body as encoding/json reads it.
type jsonPush struct {
	Streams []struct {
		Stream map[string]string `json:"stream"`
		Values [][]any           `json:"values"`
	} `json:"streams"`
}

// validUTF8 returns s with each invalid byte replaced by U+FFFD, as a JSON
// decoder sees the encoder's output.
func validUTF8(s string) string { return string([]rune(s)) }

// parseLabels returns the pairs of a label set, failing the test on error.
func parseLabels(t testing.TB, s string) map[string]string {
	t.Helper()
	m := map[string]string{}
	if err := wire.ParseLabels(s, func(n, v string) { m[n] = validUTF8(v) }); err != nil {
		t.Fatalf("ParseLabels(%q): %v", s, err)
	}
	return m
}

// checkJSON decodes a JSON push body and compares it with b.
func checkJSON(t testing.TB, body []byte, b *exporter.Batch) {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("invalid JSON: %q", body)
	}
	var got jsonPush
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(got.Streams) != len(b.Streams) {
		t.Fatalf("%d streams, want %d", len(got.Streams), len(b.Streams))
	}
	for i, s := range b.Streams {
		gs := got.Streams[i]
		if want := parseLabels(t, s.Labels); !reflect.DeepEqual(gs.Stream, want) {
			t.Errorf("stream %d labels = %v, want %v", i, gs.Stream, want)
		}
		if len(gs.Values) != len(s.Entries) {
			t.Fatalf("stream %d: %d values, want %d", i, len(gs.Values), len(s.Entries))
		}
		for j, e := range s.Entries {
			v := gs.Values[j]
			wantLen := 2
			if len(e.Metadata) > 0 {
				wantLen = 3
			}
			if len(v) != wantLen {
				t.Fatalf("value %d/%d has %d elements, want %d", i, j, len(v), wantLen)
			}
			if v[0] != strconv.FormatInt(e.Timestamp, 10) {
				t.Errorf("value %d/%d timestamp = %v, want %d", i, j, v[0], e.Timestamp)
			}
			if v[1] != validUTF8(e.Line) {
				t.Errorf("value %d/%d line = %q, want %q", i, j, v[1], validUTF8(e.Line))
			}
			if wantLen == 3 {
				want := map[string]any{}
				for _, m := range e.Metadata {
					want[validUTF8(m.Name)] = validUTF8(m.Value)
				}
				if !reflect.DeepEqual(v[2], want) {
					t.Errorf("value %d/%d metadata = %v, want %v", i, j, v[2], want)
				}
			}
		}
	}
}

func TestAppendJSON(t *testing.T) {
	tests := map[string]struct {
		batch *exporter.Batch
		want  string
	}{
		"empty": {&exporter.Batch{}, `{"streams":[]}`},
		"one": {
			&exporter.Batch{Streams: []exporter.Stream{{
				Labels:  `{app="api", env="prod"}`,
				Entries: []exporter.Entry{{Timestamp: 1700000000000000001, Line: `msg="hi"`}},
			}}},
			`{"streams":[{"stream":{"app":"api","env":"prod"},"values":[["1700000000000000001","msg=\"hi\""]]}]}`,
		},
		"metadata": {
			&exporter.Batch{Streams: []exporter.Stream{{
				Labels:  `{a="b"}`,
				Entries: []exporter.Entry{{Timestamp: -5, Line: "x", Metadata: []exporter.LabelPair{{Name: "trace_id", Value: "abc"}, {Name: "k", Value: "v"}}}},
			}}},
			`{"streams":[{"stream":{"a":"b"},"values":[["-5","x",{"trace_id":"abc","k":"v"}]]}]}`,
		},
		"escapes": {
			&exporter.Batch{Streams: []exporter.Stream{{
				Labels:  `{a="q\"b\\s\nn\té\u00e9\xc3\xa9\xff"}`,
				Entries: []exporter.Entry{{Timestamp: 1, Line: "tab\tnl\ncr\rnul\x00bad\xffsep\u2028<&>"}},
			}}},
			`{"streams":[{"stream":{"a":"q\"b\\s\nn\tééé\ufffd"},"values":[["1","tab\tnl\ncr\rnul\u0000bad\ufffdsep\u2028<&>"]]}]}`,
		},
		"two streams": {
			&exporter.Batch{Streams: []exporter.Stream{
				{Labels: `{}`, Entries: []exporter.Entry{{Timestamp: 1, Line: "a"}, {Timestamp: 2, Line: "b"}}},
				{Labels: `{ x="1" }`},
			}},
			`{"streams":[{"stream":{},"values":[["1","a"],["2","b"]]},{"stream":{"x":"1"},"values":[]}]}`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := wire.AppendJSON([]byte("pre"), tt.batch.Streams)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "pre"+tt.want {
				t.Fatalf("got  %s\nwant pre%s", got, tt.want)
			}
			checkJSON(t, got[3:], tt.batch)
		})
	}
}

func TestAppendJSONBadLabels(t *testing.T) {
	b := &exporter.Batch{Streams: []exporter.Stream{
		{Labels: `{a="b"}`, Entries: []exporter.Entry{{Timestamp: 1, Line: "x"}}},
		{Labels: `{a="b", a="c"}`, Entries: []exporter.Entry{{Timestamp: 1, Line: "x"}}},
	}}
	got, err := wire.AppendJSON([]byte("pre"), b.Streams)
	var le *wire.LabelsError
	if !errors.As(err, &le) || le.Stream != 1 {
		t.Fatalf("err = %v, want a LabelsError for stream 1", err)
	}
	if !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("error %q does not say what is wrong", err)
	}
	if string(got) != "pre" {
		t.Errorf("dst = %q, want it truncated to %q", got, "pre")
	}
}

func TestAppendJSONRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		b := randomBatch(r)
		got, err := wire.AppendJSON(nil, b.Streams)
		if err != nil {
			t.Fatalf("labels %v: %v", b.Streams, err)
		}
		checkJSON(t, got, b)
	}
}

func TestParseLabels(t *testing.T) {
	type kv = [2]string
	tests := map[string]struct {
		in   string
		want []kv
		err  string // part of the error, "" for success
	}{
		"empty set":         {in: `{}`},
		"empty set spaces":  {in: `{ }`},
		"one":               {in: `{a="b"}`, want: []kv{{"a", "b"}}},
		"prometheus form":   {in: `{app="api", env="prod"}`, want: []kv{{"app", "api"}, {"env", "prod"}}},
		"no space":          {in: `{a="1",b="2"}`, want: []kv{{"a", "1"}, {"b", "2"}}},
		"spaces":            {in: `{ a="1" ,  b="2" }`, want: []kv{{"a", "1"}, {"b", "2"}}},
		"empty value":       {in: `{a=""}`, want: []kv{{"a", ""}}},
		"underscore digits": {in: `{_x9="v", A_1="w"}`, want: []kv{{"_x9", "v"}, {"A_1", "w"}}},
		"escapes":           {in: `{a="\"\\\n\t\x41\101\u00e9\U0001F600"}`, want: []kv{{"a", "\"\\\n\tAAé😀"}}},
		"raw bytes kept":    {in: "{a=\"\xff\x00\"}", want: []kv{{"a", "\xff\x00"}}},
		"escaped raw byte":  {in: `{a="\xff"}`, want: []kv{{"a", "\xff"}}},
		"comma in value":    {in: `{a="x, b=\"y\""}`, want: []kv{{"a", `x, b="y"`}}},

		"empty":            {in: ``, err: `expected "{"`},
		"no brace":         {in: `a="b"`, err: `expected "{"`},
		"unclosed":         {in: `{a="b"`, err: `expected "," or "}"`},
		"unclosed empty":   {in: `{`, err: "expected a label name"},
		"trailing comma":   {in: `{a="b",}`, err: "expected a label name"},
		"trailing text":    {in: `{a="b"} `, err: "after"},
		"digit first":      {in: `{1a="b"}`, err: "expected a label name"},
		"bad name char":    {in: `{a-b="c"}`, err: `expected "="`},
		"space before =":   {in: `{a ="b"}`, err: `expected "="`},
		"unquoted":         {in: `{a=b}`, err: "expected a quoted value"},
		"single quotes":    {in: `{a='b'}`, err: "expected a quoted value"},
		"unterminated":     {in: `{a="b}`, err: "unterminated"},
		"escaped end":      {in: `{a="b\"}`, err: "unterminated"},
		"newline":          {in: "{a=\"b\nc\"}", err: "newline"},
		"bad escape":       {in: `{a="\q"}`, err: "invalid escape"},
		"single quote esc": {in: `{a="\'"}`, err: "invalid escape"},
		"surrogate":        {in: `{a="\ud800"}`, err: "invalid escape"},
		"short hex":        {in: `{a="\x4"}`, err: "invalid escape"},
		"duplicate":        {in: `{a="1", b="2", a="3"}`, err: `duplicate label name "a"`},
		"missing comma":    {in: `{a="1" b="2"}`, err: `expected "," or "}"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var got []kv
			err := wire.ParseLabels(tt.in, func(n, v string) { got = append(got, kv{n, v}) })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseLabelsMany(t *testing.T) {
	// More names than the scanner tracks without allocating.
	var sb strings.Builder
	sb.WriteByte('{')
	for i := range 40 {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("l" + strconv.Itoa(i) + `="v"`)
	}
	n := 0
	if err := wire.ParseLabels(sb.String()+"}", func(string, string) { n++ }); err != nil || n != 40 {
		t.Fatalf("40 labels: n = %d, err = %v", n, err)
	}
	err := wire.ParseLabels(sb.String()+`, l35="dup"}`, func(string, string) {})
	if err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Fatalf("duplicate among 41 labels: err = %v", err)
	}
}

// FuzzParseLabels checks that the parser never panics, that a set it accepts
// prints back (Prometheus style) to a set it parses the same, and that the
// JSON encoder writes it as a valid JSON object of the same pairs.
func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{`{}`, `{a="b"}`, `{a="b", c="d"}`, `{a="\"\\\n"}`, `{a="\xff\u00e9"}`, `{ a="1" ,b="2" }`, `{a="b",}`, "{a=\"\xff\"}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var names, values []string
		err := wire.ParseLabels(s, func(n, v string) { names = append(names, n); values = append(values, v) })
		b := &exporter.Batch{Streams: []exporter.Stream{{Labels: s, Entries: []exporter.Entry{{Timestamp: 1, Line: "x"}}}}}
		body, jerr := wire.AppendJSON(nil, b.Streams)
		if (err == nil) != (jerr == nil) {
			t.Fatalf("ParseLabels err = %v, AppendJSON err = %v", err, jerr)
		}
		if err != nil {
			if len(body) != 0 {
				t.Fatalf("AppendJSON wrote %q on error", body)
			}
			return
		}
		// Print and parse again.
		var sb strings.Builder
		sb.WriteByte('{')
		for i := range names {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(names[i] + "=" + strconv.Quote(values[i]))
		}
		sb.WriteByte('}')
		var names2, values2 []string
		if err := wire.ParseLabels(sb.String(), func(n, v string) { names2 = append(names2, n); values2 = append(values2, v) }); err != nil {
			t.Fatalf("reprinted %q: %v", sb.String(), err)
		}
		if !reflect.DeepEqual(names, names2) || !reflect.DeepEqual(values, values2) {
			t.Fatalf("reprinted %q parses to %q %q, want %q %q", sb.String(), names2, values2, names, values)
		}
		checkJSON(t, body, b)
	})
}

// FuzzAppendJSON checks that any line and metadata give valid JSON that
// decodes to the same text (invalid bytes as U+FFFD).
func FuzzAppendJSON(f *testing.F) {
	f.Add(int64(1), "line", "k", "v")
	f.Add(int64(-1), "\x00\xff\"\\\u2028", "\n", "\xc3")
	f.Fuzz(func(t *testing.T, ts int64, line, name, value string) {
		b := &exporter.Batch{Streams: []exporter.Stream{{Labels: `{a="b"}`, Entries: []exporter.Entry{
			{Timestamp: ts, Line: line},
			{Timestamp: ts, Line: line, Metadata: []exporter.LabelPair{{Name: name, Value: value}}},
		}}}}
		body, err := wire.AppendJSON(nil, b.Streams)
		if err != nil {
			t.Fatal(err)
		}
		checkJSON(t, body, b)
	})
}

func TestAppendJSONAllocs(t *testing.T) {
	b := bigBatch(64 << 10)
	b.Streams[0].Labels = `{a="escaped \"value\""}` // escapes take the slow path
	buf, err := wire.AppendJSON(nil, b.Streams)
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() { buf, _ = wire.AppendJSON(buf[:0], b.Streams) })
	// One allocation at most per stream with escaped labels; none per entry.
	if allocs > 1 {
		t.Errorf("AppendJSON: %v allocations per batch of %d entries, want at most 1", allocs, b.Len())
	}
}

func TestAppendGzip(t *testing.T) {
	src, err := wire.AppendJSON(nil, bigBatch(64<<10).Streams)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 3 {
				out := wire.AppendGzip([]byte("pre"), src)
				if string(out[:3]) != "pre" {
					t.Errorf("prefix lost")
					return
				}
				zr, err := gzip.NewReader(bytes.NewReader(out[3:]))
				if err != nil {
					t.Errorf("gzip reader: %v", err)
					return
				}
				got, err := io.ReadAll(zr)
				if err != nil || !bytes.Equal(got, src) {
					t.Errorf("round trip: err %v, equal %v", err, bytes.Equal(got, src))
					return
				}
				if len(out) > len(src)/2 {
					t.Errorf("gzip of log lines: %d bytes from %d", len(out), len(src))
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkJSON(b *testing.B) {
	batch := bigBatch(1 << 20)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			buf, _ = wire.AppendJSON(buf[:0], batch.Streams)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encode+gzip", func(b *testing.B) {
		b.ReportAllocs()
		var buf, out []byte
		for b.Loop() {
			buf, _ = wire.AppendJSON(buf[:0], batch.Streams)
			out = wire.AppendGzip(out[:0], buf)
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("encoding-json", func(b *testing.B) {
		// Reference point: encoding/json on an equivalent structure.
		b.ReportAllocs()
		type stream struct {
			Stream map[string]string `json:"stream"`
			Values [][]any           `json:"values"`
		}
		var req struct {
			Streams []stream `json:"streams"`
		}
		for _, s := range batch.Streams {
			st := stream{Stream: map[string]string{"env": "prod"}}
			for _, e := range s.Entries {
				meta := map[string]string{}
				for _, m := range e.Metadata {
					meta[m.Name] = m.Value
				}
				st.Values = append(st.Values, []any{strconv.FormatInt(e.Timestamp, 10), e.Line, meta})
			}
			req.Streams = append(req.Streams, st)
		}
		var n int
		for b.Loop() {
			out, err := json.Marshal(&req)
			if err != nil {
				b.Fatal(err)
			}
			n = len(out)
		}
		b.SetBytes(int64(n))
	})
}
