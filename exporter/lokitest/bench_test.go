package lokitest

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
)

// BenchmarkHandlerProto measures one 1,000-entry protobuf push through the
// handler (decode, validate, store), without the network.
func BenchmarkHandlerProto(b *testing.B) {
	now := time.Now()
	req := &push.PushRequest{}
	for st := range 10 {
		s := push.Stream{Labels: fmt.Sprintf(`{app="bench", shard="%d"}`, st)}
		for i := range 100 {
			s.Entries = append(s.Entries, push.Entry{
				Timestamp:          now.Add(time.Duration(i) * time.Microsecond),
				Line:               `level=INFO msg="request handled" method=GET path=/api/v1/items status=200 duration=1.2ms`,
				StructuredMetadata: push.LabelsAdapter{{Name: "trace_id", Value: "4bf92f3577b34da6a3ce929d0e0e4736"}},
			})
		}
		req.Streams = append(req.Streams, s)
	}
	body := protoBody(b, req)
	s, err := NewUnstarted()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, PushPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/x-protobuf")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, r)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		s.Reset()
	}
}
