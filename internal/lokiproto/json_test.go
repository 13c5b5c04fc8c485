package lokiproto

import (
	"testing"
	"time"
)

func TestDecodeJSON(t *testing.T) {
	ts := time.Unix(1700000000, 123456789).UTC()
	tests := map[string]struct {
		in      string
		want    *PushRequest
		wantErr bool
	}{
		"full": {
			in: `{"streams":[{"stream":{"b":"2","a":"1"},"values":[["1700000000123456789","hello",{"z":"1","trace_id":"abc"}],["1700000000123456789","two"]]}]}`,
			want: &PushRequest{Streams: []Stream{{Labels: `{a="1", b="2"}`, Entries: []Entry{
				{Timestamp: ts, Line: "hello", Metadata: []LabelPair{{"trace_id", "abc"}, {"z", "1"}}},
				{Timestamp: ts, Line: "two"},
			}}}},
		},
		"escaped strings": {
			in:   `{"streams":[{"stream":{"a":"x\"y"},"values":[["5","l\u00e9\n"]]}]}`,
			want: &PushRequest{Streams: []Stream{{Labels: `{a="x\"y"}`, Entries: []Entry{{Timestamp: time.Unix(0, 5).UTC(), Line: "lé\n"}}}}},
		},
		// Loki's decoder refuses a fourth element ("array must have at
		// least 2 and up to 3 values") and reads a missing or null line,
		// and null metadata, as nothing.
		"fourth element": {in: `{"streams":[{"stream":{"a":"b"},"values":[["5","l",{},"extra"]]}]}`, wantErr: true},
		"null line and metadata": {
			in:   `{"streams":[{"stream":{"a":"b"},"values":[["5",null,null]]}]}`,
			want: &PushRequest{Streams: []Stream{{Labels: `{a="b"}`, Entries: []Entry{{Timestamp: time.Unix(0, 5).UTC()}}}}},
		},
		"one element": {
			in:   `{"streams":[{"stream":{"a":"b"},"values":[["5"]]}]}`,
			want: &PushRequest{Streams: []Stream{{Labels: `{a="b"}`, Entries: []Entry{{Timestamp: time.Unix(0, 5).UTC()}}}}},
		},
		"no elements": {
			in:   `{"streams":[{"stream":{"a":"b"},"values":[[]]}]}`,
			want: &PushRequest{Streams: []Stream{{Labels: `{a="b"}`, Entries: []Entry{{}}}}},
		},
		"no streams":          {in: `{"streams":[]}`, want: &PushRequest{Streams: []Stream{}}},
		"empty object":        {in: `{}`, want: &PushRequest{Streams: []Stream{}}},
		"no stream labels":    {in: `{"streams":[{"values":[["1","x"]]}]}`, want: &PushRequest{Streams: []Stream{{Labels: `{}`, Entries: []Entry{{Timestamp: time.Unix(0, 1).UTC(), Line: "x"}}}}}},
		"negative timestamp":  {in: `{"streams":[{"stream":{"a":"b"},"values":[["-1","x"]]}]}`, want: &PushRequest{Streams: []Stream{{Labels: `{a="b"}`, Entries: []Entry{{Timestamp: time.Unix(0, -1).UTC(), Line: "x"}}}}}},
		"numeric timestamp":   {in: `{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}`, wantErr: true},
		"bad timestamp":       {in: `{"streams":[{"stream":{"a":"b"},"values":[["1.5","x"]]}]}`, wantErr: true},
		"overflow timestamp":  {in: `{"streams":[{"stream":{"a":"b"},"values":[["99999999999999999999","x"]]}]}`, wantErr: true},
		"numeric line":        {in: `{"streams":[{"stream":{"a":"b"},"values":[["1",2]]}]}`, wantErr: true},
		"numeric metadata":    {in: `{"streams":[{"stream":{"a":"b"},"values":[["1","x",{"k":1}]]}]}`, wantErr: true},
		"numeric label":       {in: `{"streams":[{"stream":{"a":1},"values":[]}]}`, wantErr: true},
		"invalid label name":  {in: `{"streams":[{"stream":{"a.b":"c"},"values":[]}]}`, wantErr: true},
		"label injection":     {in: `{"streams":[{"stream":{"a=\"1\", b":"c"},"values":[]}]}`, wantErr: true},
		"not json":            {in: `streams`, wantErr: true},
		"trailing data":       {in: `{"streams":[]} {}`, wantErr: true},
		"truncated":           {in: `{"streams":[{"stream":{"a":"b"},"values":[["1","x"]`, wantErr: true},
		"values not an array": {in: `{"streams":[{"stream":{"a":"b"},"values":{}}]}`, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := DecodeJSON([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if d := diffRequests(got, tc.want); d != "" {
				t.Fatalf("got %+v: %s", got, d)
			}
		})
	}
}

// FuzzDecodeJSON checks that the JSON decoder never panics and that every
// label set it produces parses.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"streams":[{"stream":{"a":"b"},"values":[["1700000000123456789","hello",{"k":"v"}]]}]}`))
	f.Add([]byte(`{"streams":[{"stream":{},"values":[["1","x"]]}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeJSON(b)
		if err != nil {
			return
		}
		for _, s := range req.Streams {
			if _, err := ParseLabels(s.Labels); err != nil {
				t.Fatalf("label set %s from JSON does not parse: %v", s.Labels, err)
			}
		}
	})
}

func TestDecodeSnappy(t *testing.T) {
	// Header claims 1 MiB of output.
	bomb := []byte{0x80, 0x80, 0x40, 0x00}
	if _, err := DecodeSnappy(bomb, 1024); err == nil {
		t.Fatal("oversized block accepted")
	}
	if _, err := DecodeSnappy([]byte{0x05, 0x00}, 1024); err == nil {
		t.Fatal("corrupt block accepted")
	}
	out, err := DecodeSnappy([]byte{0x03, 0x08, 'a', 'b', 'c'}, 1024)
	if err != nil || string(out) != "abc" {
		t.Fatalf("DecodeSnappy = %q, %v", out, err)
	}
}
