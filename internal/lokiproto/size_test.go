package lokiproto

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
)

// TestSize checks Size against the length of Loki's own encoding of the
// same push, on random pushes.
func TestSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	str := func(max int) string {
		b := make([]byte, rng.IntN(max+1))
		for i := range b {
			b[i] = byte('a' + rng.IntN(26))
		}
		return string(b)
	}
	for round := range 200 {
		var ours PushRequest
		var theirs push.PushRequest
		for range rng.IntN(4) {
			st := Stream{Labels: `{a="` + str(300) + `"}`, Hash: rng.Uint64() >> rng.IntN(64)}
			ps := push.Stream{Labels: st.Labels, Hash: st.Hash}
			for range rng.IntN(5) {
				ts := time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)*int64(rng.IntN(2))).UTC()
				e := Entry{Timestamp: ts, Line: str(200)}
				pe := push.Entry{Timestamp: ts, Line: e.Line}
				for k := range rng.IntN(3) {
					m := LabelPair{Name: "k" + strconv.Itoa(k), Value: str(20)}
					e.Metadata = append(e.Metadata, m)
					pe.StructuredMetadata = append(pe.StructuredMetadata, push.LabelAdapter{Name: m.Name, Value: m.Value})
				}
				st.Entries = append(st.Entries, e)
				ps.Entries = append(ps.Entries, pe)
			}
			ours.Streams = append(ours.Streams, st)
			theirs.Streams = append(theirs.Streams, ps)
		}
		want, err := theirs.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if got := ours.Size(); got != len(want) {
			t.Fatalf("round %d: Size() = %d, Loki's encoding has %d bytes", round, got, len(want))
		}
	}
}
