package wire_test

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/loki/pkg/push"

	"github.com/lokislog/lokislog/exporter"
)

// toPush converts b to the reference types of github.com/grafana/loki/pkg/push.
func toPush(b *exporter.Batch) *push.PushRequest {
	req := &push.PushRequest{}
	for _, s := range b.Streams {
		ps := push.Stream{Labels: s.Labels}
		for _, e := range s.Entries {
			pe := push.Entry{Timestamp: time.Unix(0, e.Timestamp), Line: e.Line}
			for _, m := range e.Metadata {
				pe.StructuredMetadata = append(pe.StructuredMetadata, push.LabelAdapter{Name: m.Name, Value: m.Value})
			}
			ps.Entries = append(ps.Entries, pe)
		}
		req.Streams = append(req.Streams, ps)
	}
	return req
}

// fromPush converts a decoded reference request back to a batch.
func fromPush(req *push.PushRequest) *exporter.Batch {
	b := &exporter.Batch{}
	for _, ps := range req.Streams {
		s := exporter.Stream{Labels: ps.Labels}
		for _, pe := range ps.Entries {
			e := exporter.Entry{Timestamp: pe.Timestamp.UnixNano(), Line: pe.Line}
			for _, m := range pe.StructuredMetadata {
				e.Metadata = append(e.Metadata, exporter.LabelPair{Name: m.Name, Value: m.Value})
			}
			s.Entries = append(s.Entries, e)
		}
		b.Streams = append(b.Streams, s)
	}
	return b
}

// randomString returns a string of up to max bytes: ASCII, multi-byte UTF-8,
// control characters and, when raw is true, invalid UTF-8.
func randomString(r *rand.Rand, max int, raw bool) string {
	if max == 0 {
		return ""
	}
	n := r.IntN(max + 1)
	var sb strings.Builder
	for sb.Len() < n {
		switch k := r.IntN(20); {
		case k < 14:
			sb.WriteByte(byte('a' + r.IntN(26)))
		case k < 16:
			sb.WriteString("é€😀")
		case k < 18:
			sb.WriteByte(byte(r.IntN(0x20)))
		case k < 19:
			sb.WriteString(`"\`)
		case raw:
			sb.WriteByte(byte(0x80 + r.IntN(0x80)))
		default:
			sb.WriteByte(' ')
		}
	}
	return sb.String()
}

// randomLabels returns a valid label set in Loki's form, values escaped as
// strconv.Quote does.
func randomLabels(r *rand.Rand) string {
	n := r.IntN(5)
	var sb strings.Builder
	sb.WriteByte('{')
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("l" + strconv.Itoa(i) + "_" + string(rune('a'+r.IntN(26))))
		sb.WriteByte('=')
		sb.WriteString(strconv.Quote(randomString(r, 20, true)))
	}
	sb.WriteByte('}')
	return sb.String()
}

// randomBatch returns a batch of random streams, entries and metadata,
// covering empty and large strings, zero and negative timestamps.
func randomBatch(r *rand.Rand) *exporter.Batch {
	b := &exporter.Batch{}
	for range r.IntN(4) {
		s := exporter.Stream{Labels: randomLabels(r)}
		for range r.IntN(6) {
			e := exporter.Entry{Line: randomString(r, []int{0, 10, 200, 20000}[r.IntN(4)], true)}
			switch r.IntN(5) {
			case 0:
				e.Timestamp = 0
			case 1:
				e.Timestamp = -r.Int64N(1 << 62)
			case 2:
				e.Timestamp = r.Int64N(1e9) * 1e9 // whole seconds
			default:
				e.Timestamp = r.Int64()
			}
			for range r.IntN(3) {
				e.Metadata = append(e.Metadata, exporter.LabelPair{
					Name:  randomString(r, 8, false),
					Value: randomString(r, 300, true),
				})
			}
			s.Entries = append(s.Entries, e)
		}
		b.Streams = append(b.Streams, s)
	}
	return b
}

// bigBatch returns a batch of about size bytes of realistic log lines.
func bigBatch(size int) *exporter.Batch {
	r := rand.New(rand.NewPCG(1, 2))
	b := &exporter.Batch{}
	ts := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	for i := 0; b.Size() < size; i++ {
		if i%500 == 0 {
			b.Streams = append(b.Streams, exporter.Stream{
				Labels: `{env="prod", service_name="mu-api", level="` + []string{"info", "warn", "error"}[len(b.Streams)%3] + `"}`,
			})
		}
		s := &b.Streams[len(b.Streams)-1]
		ts += int64(r.IntN(1e6))
		s.Entries = append(s.Entries, exporter.Entry{
			Timestamp: ts,
			Line: `level=INFO msg="request handled" method=GET path=/api/v1/items/` + strconv.Itoa(r.IntN(1e6)) +
				` status=200 duration=` + strconv.Itoa(r.IntN(5000)) + `µs bytes=` + strconv.Itoa(r.IntN(1e5)) +
				` user_agent="Mozilla/5.0 (X11; Linux x86_64)"`,
			Metadata: []exporter.LabelPair{
				{Name: "trace_id", Value: strconv.FormatUint(r.Uint64(), 16) + strconv.FormatUint(r.Uint64(), 16)},
				{Name: "span_id", Value: strconv.FormatUint(r.Uint64(), 16)},
			},
		})
	}
	return b
}
