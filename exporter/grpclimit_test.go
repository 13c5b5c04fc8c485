package exporter_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/exporter/lokitest"
)

// TestGRPCMessageLimit checks a batch larger than Loki's internal gRPC
// message limit (4 MiB by default; the fake answers 500 ResourceExhausted
// as Loki does): the client splits it as it splits after a 413, with no
// retry, and every entry is stored once.
func TestGRPCMessageLimit(t *testing.T) {
	fake := lokitest.NewTestServer(t)
	c, err := exporter.NewClient(exporter.Config{URL: fake.URL(), MaxRetryTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	b := &exporter.Batch{Streams: []exporter.Stream{{Labels: `{app="big"}`}}}
	raw := make([]byte, 1000)
	now := time.Now().UnixNano()
	for i := range 3000 { // about 6 MB of lines
		rand.Read(raw)
		b.Streams[0].Entries = append(b.Streams[0].Entries, exporter.Entry{
			Timestamp: now + int64(i), Line: strconv.Itoa(i) + " " + hex.EncodeToString(raw),
		})
	}
	if err := c.Export(context.Background(), b); err != nil {
		t.Fatalf("Export: %v", err)
	}
	st := c.Stats()
	if st.Splits == 0 || st.Retries != 0 || st.EntriesSent != 3000 || st.EntriesRejected != 0 {
		t.Errorf("Stats = %+v, want splits, no retry, 3000 entries sent", st)
	}
	seen := make(map[string]int)
	for _, e := range fake.Entries() {
		seen[e.Line]++
	}
	if len(seen) != 3000 {
		t.Errorf("the fake stored %d distinct lines, want 3000", len(seen))
	}
	for line, n := range seen {
		if n != 1 {
			t.Errorf("line %.20s… stored %d times", line, n)
		}
	}
	var over int
	for _, p := range fake.Requests() {
		if p.Status == 500 {
			over++
		}
	}
	if over == 0 {
		t.Error("no push was answered 500 by the fake: the batch was not over the limit")
	}
}
