package lokitest

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
)

// FuzzHandler sends arbitrary bodies, as protobuf or JSON, plain or
// compressed, through the handler: it must never panic, must answer one of
// Loki's statuses, and must store exactly the entries it reports accepted.
func FuzzHandler(f *testing.F) {
	now := time.Now()
	good := &push.PushRequest{Streams: []push.Stream{
		{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: now, Line: "x", StructuredMetadata: push.LabelsAdapter{{Name: "k-1", Value: "v"}}}}},
		{Labels: `{a="c", __x="1"}`, Entries: []push.Entry{{Timestamp: now, Line: "y"}}},
	}}
	raw, _ := good.Marshal()
	f.Add(uint8(0), uint8(0), protoBody(f, good))
	f.Add(uint8(0), uint8(1), gzipped(protoBody(f, good)))
	f.Add(uint8(1), uint8(0), jsonBody(f, good))
	f.Add(uint8(1), uint8(2), deflated(jsonBody(f, good)))
	f.Add(uint8(0), uint8(0), raw)
	f.Add(uint8(2), uint8(3), []byte("junk"))
	types := []string{"application/x-protobuf", "application/json", "", "text/plain"}
	encodings := []string{"", "gzip", "deflate", "snappy", "br"}
	s, err := NewUnstarted(WithLimits(Limits{MaxBodySize: 1 << 20, MaxStreams: 50}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ct, enc uint8, body []byte) {
		s.Reset()
		req := httptest.NewRequest(http.MethodPost, PushPath, bytes.NewReader(body))
		if v := types[int(ct)%len(types)]; v != "" {
			req.Header.Set("Content-Type", v)
		}
		if v := encodings[int(enc)%len(encodings)]; v != "" {
			req.Header.Set("Content-Encoding", v)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		switch rec.Code {
		case 204, 400, 413, 422, 429, 500:
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		ri := s.Requests()
		if len(ri) != 1 || ri[0].Status != rec.Code || ri[0].Accepted != len(s.Entries()) {
			t.Fatalf("requests %+v, %d entries", ri, len(s.Entries()))
		}
		if rec.Code != 204 && rec.Code != 400 && rec.Code != 429 && ri[0].Accepted != 0 {
			t.Fatalf("status %d but %d entries stored", rec.Code, ri[0].Accepted)
		}
	})
}
