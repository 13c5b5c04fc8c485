package lokitest

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/s2"
)

// client is an HTTP client whose idle connections are closed when the test
// ends, so that goleak sees no client goroutines.
func client(t testing.TB) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// answer is what a push got back.
type answer struct {
	status int
	body   string
	header http.Header
	err    error
}

func post(t testing.TB, c *http.Client, url string, body []byte, header map[string]string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+PushPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}
}

// protoBody marshals and snappy-encodes a push as Loki clients do.
func protoBody(t testing.TB, req *push.PushRequest) []byte {
	t.Helper()
	b, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return s2.EncodeSnappy(nil, b)
}

func pushProto(t testing.TB, c *http.Client, url string, req *push.PushRequest, header map[string]string) answer {
	t.Helper()
	h := map[string]string{"Content-Type": "application/x-protobuf"}
	for k, v := range header {
		h[k] = v
	}
	return post(t, c, url, protoBody(t, req), h)
}

type jsonStream struct {
	Stream map[string]string `json:"stream"`
	Values [][]any           `json:"values"`
}

// jsonBody encodes a push in Loki's JSON format. Streams' labels must be
// simple `{a="b", ...}` strings; metadata goes as the third element.
func jsonBody(t testing.TB, req *push.PushRequest) []byte {
	t.Helper()
	var out struct {
		Streams []jsonStream `json:"streams"`
	}
	out.Streams = []jsonStream{}
	for _, s := range req.Streams {
		js := jsonStream{Stream: labelMap(t, s.Labels)}
		for _, e := range s.Entries {
			v := []any{strconv.FormatInt(e.Timestamp.UnixNano(), 10), e.Line}
			if len(e.StructuredMetadata) > 0 {
				md := map[string]string{}
				for _, m := range e.StructuredMetadata {
					md[m.Name] = m.Value
				}
				v = append(v, md)
			}
			js.Values = append(js.Values, v)
		}
		out.Streams = append(out.Streams, js)
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

func deflated(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// noTimeChecks switches off the timestamp checks, for tests that push
// arbitrary timestamps.
var noTimeChecks = WithLimits(Limits{MaxAge: -1, CreationGracePeriod: -1, OrderingWindow: -1})

func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
