package spool

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/lokislog/lokislog/exporter"
)

// replayRecord is the payload the buffer appends per log record in
// "always" mode: a batch of one entry with metadata, about 200 bytes.
func replayRecord() []byte {
	return AppendBatch(nil, &exporter.Batch{Streams: []exporter.Stream{{
		Labels: `{app="api", env="prod", level="info"}`,
		Entries: []exporter.Entry{{
			Timestamp: 1_700_000_000_123_456_789,
			Line:      `time=2024-01-01T00:00:00Z level=INFO msg="request served" method=GET path=/api/v1/users status=200 dur=1.2ms`,
			Metadata: []exporter.LabelPair{
				{Name: "trace_id", Value: "4bf92f3577b34da6a3ce929d0e0e4736"},
				{Name: "span_id", Value: "00f067aa0ba902b7"},
			},
		}},
	}}})
}

// replayer is one of the two ways of reading records back and merging
// their entries into a batch, as the buffer's replay does.
type replayer struct {
	name string
	// read reads one record and merges its entries.
	read func(b testing.TB, s *Spool, m *merged) Pos
}

// merged is the replay's batch: entries whose strings the replayer owns.
type merged struct {
	entries []exporter.Entry
	meta    []exporter.LabelPair
	arena   []byte
	dec     BatchDecoder
	fn      func(tenant, labels string, e exporter.Entry)
}

func (m *merged) reset() {
	m.entries, m.meta, m.arena = m.entries[:0], m.meta[:0], m.arena[:0]
}

// str copies s into the arena; the arena is big enough for a batch, so
// earlier strings stay valid.
func (m *merged) str(s string) string {
	if s == "" {
		return ""
	}
	start := len(m.arena)
	m.arena = append(m.arena, s...)
	return unsafe.String(&m.arena[start], len(s))
}

var replayers = []replayer{
	{"old=Next+DecodeBatch", func(b testing.TB, s *Spool, m *merged) Pos {
		r, err := s.Next()
		if err != nil {
			b.Fatal(err)
		}
		bt, err := DecodeBatch(r.Payload)
		if err != nil {
			b.Fatal(err)
		}
		for _, st := range bt.Streams {
			m.entries = append(m.entries, st.Entries...)
		}
		return r.Pos
	}},
	{"new=NextView+Range", func(b testing.TB, s *Spool, m *merged) Pos {
		r, err := s.NextView()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := BatchTenant(r.Payload); err != nil {
			b.Fatal(err)
		}
		if m.fn == nil {
			m.fn = func(tenant, labels string, e exporter.Entry) {
				e.Line = m.str(e.Line)
				start := len(m.meta)
				for _, p := range e.Metadata {
					m.meta = append(m.meta, exporter.LabelPair{Name: m.str(p.Name), Value: m.str(p.Value)})
				}
				e.Metadata = nil
				if len(m.meta) > start {
					e.Metadata = m.meta[start:len(m.meta):len(m.meta)]
				}
				m.entries = append(m.entries, e)
			}
		}
		if err := m.dec.Range(r.Payload, m.fn); err != nil {
			b.Fatal(err)
		}
		return r.Pos
	}},
}

const replayBatch = 1000 // records per acknowledgement

// cpuMeter reports the process CPU time per operation (all goroutines,
// the garbage collector's included) as "cpu-ns/op": on a busy machine it
// is steadier than the wall time, and it is what competes with the
// application. Call stop after the loop, and pause and resume around
// work left out (as b.StopTimer and b.StartTimer).
type cpuMeter struct {
	b      *testing.B
	start  int64
	paused int64 // CPU time spent while paused
	at     int64
}

func newCPUMeter(b *testing.B) *cpuMeter { return &cpuMeter{b: b, start: processCPU()} }

func (m *cpuMeter) pause()  { m.at = processCPU() }
func (m *cpuMeter) resume() { m.paused += processCPU() - m.at }

func (m *cpuMeter) stop(ops int) {
	if c := processCPU(); m.start >= 0 && c >= 0 && ops > 0 {
		m.b.ReportMetric(float64(c-m.start-m.paused)/float64(ops), "cpu-ns/op")
	}
}

func newMerged() *merged {
	return &merged{
		entries: make([]exporter.Entry, 0, replayBatch),
		meta:    make([]exporter.LabelPair, 0, 2*replayBatch),
		arena:   make([]byte, 0, 256*replayBatch),
	}
}

// BenchmarkReplay measures the cost per record of the buffer's "always"
// mode: Append of a ~200-byte one-entry record, reading it back, decoding
// it and merging it into a batch, and an Ack every 1000 records; the old
// (Next + DecodeBatch) and new (NextView + BatchTenant + Range, copying
// line and metadata into an arena) read paths side by side.
//
//   - read: reading, decoding and acknowledging only; the appends of each
//     1000 records are outside the timer.
//   - bulk: 1000 Appends, then 1000 reads and an Ack, as the buffer does
//     when it reads after BatchWait.
//   - lockstep: each Append is read back at once, so every read finds
//     only that record (the worst case for read-ahead).
func BenchmarkReplay(b *testing.B) {
	p := replayRecord()
	open := func(b *testing.B) *Spool {
		s, err := Open(Options{Dir: b.TempDir(), Sync: SyncNever})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	appendN := func(b *testing.B, s *Spool, n int) {
		for range n {
			if err := s.Append(p, 1, 1); err != nil {
				b.Fatal(err)
			}
		}
	}
	ack := func(b *testing.B, s *Spool, m *merged, pos Pos) {
		if len(m.entries) != replayBatch {
			b.Fatalf("merged %d entries, want %d", len(m.entries), replayBatch)
		}
		if err := s.Ack(pos); err != nil {
			b.Fatal(err)
		}
		m.reset()
	}
	for _, rp := range replayers {
		b.Run("read/"+rp.name, func(b *testing.B) {
			s, m := open(b), newMerged()
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			cpu := newCPUMeter(b)
			i := 0
			for b.Loop() {
				if i%replayBatch == 0 {
					b.StopTimer()
					cpu.pause()
					appendN(b, s, replayBatch)
					cpu.resume()
					b.StartTimer()
				}
				pos := rp.read(b, s, m)
				if i++; i%replayBatch == 0 {
					ack(b, s, m, pos)
				}
			}
			cpu.stop(i)
		})
	}
	for _, rp := range replayers {
		b.Run("bulk/"+rp.name, func(b *testing.B) {
			s, m := open(b), newMerged()
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			cpu := newCPUMeter(b)
			i := 0
			for b.Loop() {
				appendN(b, s, 1)
				if i++; i%replayBatch == 0 {
					var pos Pos
					for range replayBatch {
						pos = rp.read(b, s, m)
					}
					ack(b, s, m, pos)
				}
			}
			cpu.stop(i)
		})
	}
	for _, rp := range replayers {
		b.Run("lockstep/"+rp.name, func(b *testing.B) {
			s, m := open(b), newMerged()
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			cpu := newCPUMeter(b)
			i := 0
			for b.Loop() {
				appendN(b, s, 1)
				pos := rp.read(b, s, m)
				if i++; i%replayBatch == 0 {
					ack(b, s, m, pos)
				}
			}
			cpu.stop(i)
		})
	}
}

// TestReplayPathsAgree checks that the two read paths of BenchmarkReplay
// merge the same entries.
func TestReplayPathsAgree(t *testing.T) {
	p := replayRecord()
	if len(p) < 150 || len(p) > 250 {
		t.Fatalf("record of %d bytes, want about 200", len(p))
	}
	var got [2][]exporter.Entry
	for i, rp := range replayers {
		s := openT(t, Options{Sync: SyncNever})
		for range 3 {
			if err := s.Append(p, 1, 1); err != nil {
				t.Fatal(err)
			}
		}
		m := newMerged()
		for range 3 {
			rp.read(t, s, m)
		}
		if _, err := s.NextView(); !errors.Is(err, ErrEmpty) {
			t.Fatalf("%s: %v", rp.name, err)
		}
		got[i] = m.entries
	}
	want, _ := DecodeBatch(p)
	for i := range got {
		if len(got[i]) != 3 {
			t.Fatalf("%s merged %d entries", replayers[i].name, len(got[i]))
		}
		for _, e := range got[i] {
			if e.Line != want.Streams[0].Entries[0].Line || len(e.Metadata) != 2 || e.Metadata[1] != want.Streams[0].Entries[0].Metadata[1] {
				t.Fatalf("%s merged %+v", replayers[i].name, e)
			}
		}
	}
}
