package receiver

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/snappy"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/lokislog/lokislog/bench/internal/receiver/ctl"
	"github.com/lokislog/lokislog/bench/internal/workload"
	"github.com/lokislog/lokislog/exporter"
	_ "github.com/lokislog/lokislog/exporter/jsongzip" // JSON pushes' default compression
)

const roleEnv = "LOKISLOG_RECEIVER_TEST_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "serve" {
		if err := Serve("127.0.0.1:0", os.Stdout, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// newServer starts a receiver in this process on 127.0.0.1.
func newServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	s := New()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func post(t *testing.T, url, ctype, enc string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func gz(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// lokiRequest builds a push with Loki's own types: ids in the line, in the
// metadata, in the labels, and one entry without an id.
func lokiRequest() push.PushRequest {
	ts := time.Unix(1700000000, 123)
	return push.PushRequest{Streams: []push.Stream{
		{Labels: `{service_name="a"}`, Entries: []push.Entry{
			{Timestamp: ts, Line: "msg=x request_id=" + workload.RequestID(0)},
			{Timestamp: ts, Line: "msg=y", StructuredMetadata: push.LabelsAdapter{{Name: "request_id", Value: workload.RequestID(1)}}},
			{Timestamp: ts, Line: "no id here"},
		}},
		{Labels: `{request_id="` + workload.RequestID(2) + `", service_name="b"}`, Entries: []push.Entry{
			{Timestamp: ts, Line: "request handled"},
		}},
	}}
}

func TestDecodeLokiPushMatchesLokiTypes(t *testing.T) {
	req := lokiRequest()
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	streams, err := decodeLokiPush(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(streams) != len(req.Streams) {
		t.Fatalf("got %d streams, want %d", len(streams), len(req.Streams))
	}
	for i, st := range req.Streams {
		got := streams[i]
		if string(got.Labels) != st.Labels || len(got.Entries) != len(st.Entries) {
			t.Fatalf("stream %d: got %q with %d entries, want %q with %d", i, got.Labels, len(got.Entries), st.Labels, len(st.Entries))
		}
		for j, e := range st.Entries {
			g := got.Entries[j]
			if g.Seconds != e.Timestamp.Unix() || int(g.Nanos) != e.Timestamp.Nanosecond() || string(g.Line) != e.Line || len(g.Meta) != len(e.StructuredMetadata) {
				t.Errorf("stream %d entry %d: got %+v, want %+v", i, j, g, e)
			}
			for k, m := range e.StructuredMetadata {
				if string(g.Meta[k].Name) != m.Name || string(g.Meta[k].Value) != m.Value {
					t.Errorf("stream %d entry %d meta %d: got %s=%s, want %s=%s", i, j, k, g.Meta[k].Name, g.Meta[k].Value, m.Name, m.Value)
				}
			}
		}
	}
}

func TestLokiProtobufPush(t *testing.T) {
	s, ts := newServer(t)
	req := lokiRequest()
	raw, _ := req.Marshal()
	body := snappy.Encode(nil, raw)
	for range 2 { // the second push repeats every id
		if code := post(t, ts.URL+LokiPushPath, "application/x-protobuf", "", body); code != http.StatusNoContent {
			t.Fatalf("status %d, want 204", code)
		}
	}
	st := s.Stats()
	want := Stats{Requests: 2, Entries: 8, Unique: 3, Duplicates: 3, Unidentified: 2, BodyBytes: 2 * uint64(len(body)), LokiProtobuf: 8}
	if st.Requests != want.Requests || st.Entries != want.Entries || st.Unique != want.Unique || st.Duplicates != want.Duplicates ||
		st.Unidentified != want.Unidentified || st.BodyBytes != want.BodyBytes || st.LokiProtobuf != want.LokiProtobuf {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	if st.WireBytes <= st.BodyBytes {
		t.Errorf("wire bytes %d not more than body bytes %d", st.WireBytes, st.BodyBytes)
	}
	if st.LastNewUnixNano == 0 {
		t.Error("LastNewUnixNano not set")
	}
	if n := s.popcount(); n != st.Unique {
		t.Errorf("bitmap holds %d ids, Unique is %d", n, st.Unique)
	}
}

// TestLokislogExporter pushes through lokislog's own Loki client, in both
// protocols (JSON with its default compression, gzip, which a program opts
// in to with the jsongzip import above), and checks every entry arrives
// once.
func TestLokislogExporter(t *testing.T) {
	for _, proto := range []string{"protobuf", "json"} {
		t.Run(proto, func(t *testing.T) {
			s, ts := newServer(t)
			c, err := exporter.NewClient(exporter.Config{URL: ts.URL, Protocol: proto})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Shutdown(context.Background())
			b := &exporter.Batch{Streams: []exporter.Stream{{Labels: `{service_name="x"}`}, {Labels: `{service_name="y"}`}}}
			const n = 100
			for i := range n {
				st := &b.Streams[i%2]
				e := exporter.Entry{Timestamp: time.Now().UnixNano(), Line: "request_id=" + workload.RequestID(uint64(i))}
				if i%3 == 0 {
					e.Line = "id in metadata"
					e.Metadata = []exporter.LabelPair{{Name: "request_id", Value: workload.RequestID(uint64(i))}}
				}
				st.Entries = append(st.Entries, e)
			}
			if err := c.Export(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			st := s.Stats()
			if st.Unique != n || st.Entries != n || st.Duplicates != 0 || st.Unidentified != 0 || st.Failed != 0 {
				t.Errorf("stats %+v, want %d unique entries", st, n)
			}
			if proto == "json" && st.LokiJSON != n || proto == "protobuf" && st.LokiProtobuf != n {
				t.Errorf("entries not counted under %s: %+v", proto, st)
			}
		})
	}
}

func otlpRequest(ids ...uint64) *collogs.ExportLogsServiceRequest {
	var recs []*logspb.LogRecord
	for i, id := range ids {
		r := &logspb.LogRecord{TimeUnixNano: 1, Body: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "request handled"}}}
		v := &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: workload.RequestID(id)}}
		if i%2 == 1 { // nested in a group
			v = &commonpb.AnyValue{Value: &commonpb.AnyValue_KvlistValue{KvlistValue: &commonpb.KeyValueList{
				Values: []*commonpb.KeyValue{{Key: "request_id", Value: v}}}}}
		}
		r.Attributes = []*commonpb.KeyValue{{Key: "status", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 200}}}, {Key: "req", Value: v}}
		recs = append(recs, r)
	}
	return &collogs.ExportLogsServiceRequest{ResourceLogs: []*logspb.ResourceLogs{{ScopeLogs: []*logspb.ScopeLogs{{LogRecords: recs}}}}}
}

func TestOTLPPush(t *testing.T) {
	req := otlpRequest(5, 6, 7)
	pb, _ := proto.Marshal(req)
	js, _ := protojson.Marshal(req)
	for _, tc := range []struct {
		name, ctype, enc string
		body             []byte
	}{
		{"protobuf", "application/x-protobuf", "", pb},
		{"protobuf-gzip", "application/x-protobuf", "gzip", gz(t, pb)},
		{"json", "application/json", "", js},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ts := newServer(t)
			if code := post(t, ts.URL+OTLPLogsPath, tc.ctype, tc.enc, tc.body); code != http.StatusOK {
				t.Fatalf("status %d, want 200", code)
			}
			st := s.Stats()
			if st.Unique != 3 || st.Entries != 3 || st.OTLP != 3 || st.Unidentified != 0 {
				t.Errorf("stats %+v, want 3 unique OTLP entries", st)
			}
		})
	}
}

func TestBadPushes(t *testing.T) {
	okRaw, _ := func() ([]byte, error) { r := lokiRequest(); return r.Marshal() }()
	for _, tc := range []struct {
		name, path, ctype, enc string
		body                   []byte
	}{
		{"not snappy", LokiPushPath, "application/x-protobuf", "", []byte("hello")},
		{"snappy of garbage", LokiPushPath, "application/x-protobuf", "", snappy.Encode(nil, []byte{0xff, 0xff, 0xff})},
		{"truncated protobuf", LokiPushPath, "application/x-protobuf", "", snappy.Encode(nil, okRaw[:len(okRaw)-3])},
		{"no streams", LokiPushPath, "application/x-protobuf", "", snappy.Encode(nil, nil)},
		{"bad json", LokiPushPath, "application/json", "", []byte(`{"streams":[`)},
		{"json bad value", LokiPushPath, "application/json", "", []byte(`{"streams":[{"stream":{"a":"b"},"values":[["x"]]}]}`)},
		{"json bad ts", LokiPushPath, "application/json", "", []byte(`{"streams":[{"stream":{"a":"b"},"values":[["x","line"]]}]}`)},
		{"bad gzip", LokiPushPath, "application/json", "gzip", []byte("nope")},
		{"unknown encoding", LokiPushPath, "application/json", "br", []byte("{}")},
		{"bad otlp", OTLPLogsPath, "application/x-protobuf", "", []byte{0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ts := newServer(t)
			if code := post(t, ts.URL+tc.path, tc.ctype, tc.enc, tc.body); code != http.StatusBadRequest {
				t.Errorf("status %d, want 400", code)
			}
			if st := s.Stats(); st.Failed != 1 || st.Entries != 0 || st.Requests != 0 {
				t.Errorf("stats %+v, want one failed push and nothing counted", st)
			}
		})
	}
}

func TestOutageAndReset(t *testing.T) {
	s, ts := newServer(t)
	c := ctl.NewClient(ts.URL)
	defer c.CloseIdleConnections()
	raw, _ := func() ([]byte, error) { r := lokiRequest(); return r.Marshal() }()
	body := snappy.Encode(nil, raw)
	if err := c.Outage(time.Hour); err != nil {
		t.Fatal(err)
	}
	if code := post(t, ts.URL+LokiPushPath, "application/x-protobuf", "", body); code != http.StatusServiceUnavailable {
		t.Fatalf("during outage: status %d, want 503", code)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Rejected != 1 || st.RejectedWireBytes < uint64(len(body)) || st.Entries != 0 || st.OutageUntilUnixNano <= time.Now().UnixNano() {
		t.Errorf("stats during outage %+v", st)
	}
	if err := c.Outage(0); err != nil {
		t.Fatal(err)
	}
	if code := post(t, ts.URL+LokiPushPath, "application/x-protobuf", "", body); code != http.StatusNoContent {
		t.Fatalf("after outage: status %d, want 204", code)
	}
	// Ids at or above n are unidentified.
	if err := c.Reset(2); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Stats(); st != (Stats{}) {
		t.Errorf("after reset: %+v, want zero", st)
	}
	post(t, ts.URL+LokiPushPath, "application/x-protobuf", "", body)
	if st := s.Stats(); st.Unique != 2 || st.Unidentified != 2 {
		t.Errorf("after reset(2): %+v, want ids 0 and 1 unique, 2 unidentified", st)
	}
	if err := c.Outage(-time.Second); err == nil {
		t.Error("negative outage accepted")
	}
	if err := c.Reset(1 << 40); err == nil {
		t.Error("huge reset accepted")
	}
}

// TestProcess starts the receiver as a child process, as cmd/benchrun does.
func TestProcess(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=serve")
	p, err := ctl.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.URL, "http://127.0.0.1:") {
		t.Errorf("URL %q not on 127.0.0.1", p.URL)
	}
	if err := p.Client.Reset(10); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Client.Stats(); err != nil {
		t.Fatal(err)
	}
	p.Client.CloseIdleConnections()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Client.Stats(); err == nil {
		t.Error("receiver still answers after Close")
	}
}

func TestServeRejectsNonLoopback(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "example.com:80"} {
		if err := Serve(addr, io.Discard, false); err == nil {
			t.Errorf("Serve(%q) accepted a non-loopback address", addr)
		}
	}
}

// FuzzDecodeLokiPush checks the protowire decoder against Loki's generated
// types: it never panics, and whatever both accept has the same shape.
func FuzzDecodeLokiPush(f *testing.F) {
	r := lokiRequest()
	raw, _ := r.Marshal()
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		streams, err := decodeLokiPush(b)
		var req push.PushRequest
		if err != nil || req.Unmarshal(b) != nil {
			return
		}
		if len(streams) != len(req.Streams) {
			t.Fatalf("%d streams, Loki's types decode %d", len(streams), len(req.Streams))
		}
		for i := range streams {
			if string(streams[i].Labels) != req.Streams[i].Labels || len(streams[i].Entries) != len(req.Streams[i].Entries) {
				t.Fatalf("stream %d differs from Loki's types", i)
			}
			for j, e := range req.Streams[i].Entries {
				if string(streams[i].Entries[j].Line) != e.Line {
					t.Fatalf("stream %d entry %d line differs", i, j)
				}
			}
		}
	})
}

// BenchmarkLokiProtobufPush is the receiver's cost per push of 4096
// entries shaped like the workload's, snappy compressed.
func BenchmarkLokiProtobufPush(b *testing.B) {
	ts := time.Now()
	st := push.Stream{Labels: `{service_name="bench"}`}
	for i := range 4096 {
		st.Entries = append(st.Entries, push.Entry{Timestamp: ts.Add(time.Duration(i)), Line: `level=INFO msg="request handled" service=checkout env=prod method=GET path=/api/v1/users/42 status=200 duration=1.234567ms request_id=` + workload.RequestID(uint64(i)) + ` user_id=42`})
	}
	req := push.PushRequest{Streams: []push.Stream{st}}
	raw, _ := req.Marshal()
	body := snappy.Encode(nil, raw)
	s := New()
	s.Reset(4096)
	r := httptest.NewRequest("POST", LokiPushPath, nil)
	r.Header.Set("Content-Type", "application/x-protobuf")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var c counter
		if err := decodeLokiProtobuf(body, &c); err != nil {
			b.Fatal(err)
		}
		s.accept(r, body, &c)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*4096), "ns/entry")
}
