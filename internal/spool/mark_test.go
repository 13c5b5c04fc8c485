package spool

import (
	"errors"
	"fmt"
	"testing"
)

func TestReleaseAcknowledgesUnreadRecords(t *testing.T) {
	eachWriter(t, func(t *testing.T, noMmap bool) {
		for _, segSize := range []int64{1 << 20, 200} { // one segment; many
			t.Run(fmt.Sprint(segSize), func(t *testing.T) {
				dir := t.TempDir()
				s := openT(t, Options{NoMmap: noMmap, Dir: dir, SegmentSize: segSize, MaxBytes: 1 << 20})
				var marks []Mark
				for i := range 10 {
					m, err := s.AppendMark(fmt.Appendf(nil, "record-%02d-%s", i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), 2, int64(i))
					if err != nil {
						t.Fatal(err)
					}
					marks = append(marks, m)
				}
				// A consumer read 3 records, the writer delivered 6 from memory.
				for range 3 {
					if _, err := s.Next(); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Release(marks[5]); err != nil {
					t.Fatal(err)
				}
				if st := s.Stats(); st.Records != 4 || st.Entries != 8 || st.Unread != 4 {
					t.Fatalf("after release: %+v", st)
				}
				rec, err := s.Next()
				if err != nil || string(rec.Payload[:9]) != "record-06" {
					t.Fatalf("next after release: %q, %v", rec.Payload, err)
				}
				if err := s.Release(marks[5]); err != nil { // again: nothing
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				// A restart sends only what was not released.
				s = openT(t, Options{NoMmap: noMmap, Dir: dir, SegmentSize: segSize, MaxBytes: 1 << 20})
				var got []string
				for {
					rec, err := s.Next()
					if errors.Is(err, ErrEmpty) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, string(rec.Payload[:9]))
				}
				if fmt.Sprint(got) != "[record-06 record-07 record-08 record-09]" {
					t.Fatalf("after restart: %v", got)
				}
				// Release everything: the spool empties and keeps working.
				var last Mark
				for i := 10; i < 12; i++ {
					if last, err = s.AppendMark([]byte(fmt.Sprintf("record-%02d", i)), 1, 0); err != nil {
						t.Fatal(err)
					}
				}
				if err := s.Release(last); err != nil {
					t.Fatal(err)
				}
				if st := s.Stats(); st.Records != 0 || st.Entries != 0 || st.Unread != 0 {
					t.Fatalf("after releasing all: %+v", st)
				}
				if _, err := s.Next(); !errors.Is(err, ErrEmpty) {
					t.Fatalf("next: %v", err)
				}
				if _, err := s.AppendMark([]byte("record-12"), 1, 0); err != nil {
					t.Fatal(err)
				}
				if rec, err := s.Next(); err != nil || string(rec.Payload) != "record-12" {
					t.Fatalf("next after refill: %q %v", rec.Payload, err)
				}
			})
		}
	})
}

// TestAppendFrameMark checks records framed by PutFrame before the append,
// on the mmap writer and the write path: they read back like Append's,
// with their entry counts and timestamps, and Marks release them; a frame
// whose header does not match is refused and nothing is written.
func TestAppendFrameMark(t *testing.T) {
	for _, noMmap := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoMmap=%v", noMmap), func(t *testing.T) {
			s := openT(t, Options{SegmentSize: 1000, NoMmap: noMmap, MaxRecordSize: 600})
			var marks []Mark
			for i := range 30 {
				frame := append(make([]byte, FrameHeaderSize), payload(i, 80)...)
				if err := PutFrame(frame, i%5+1, int64(1000+i)); err != nil {
					t.Fatal(err)
				}
				m, err := s.AppendFrameMark(frame)
				if err != nil {
					t.Fatalf("AppendFrameMark %d: %v", i, err)
				}
				marks = append(marks, m)
			}
			bad := append(make([]byte, FrameHeaderSize), payload(99, 80)...)
			if err := PutFrame(bad, 1, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AppendFrameMark(bad[:len(bad)-1]); err == nil {
				t.Fatal("a frame cut after PutFrame was accepted")
			}
			big := make([]byte, FrameHeaderSize+601)
			PutFrame(big, 1, 1)
			if _, err := s.AppendFrameMark(big); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("frame over MaxRecordSize: %v, want ErrTooLarge", err)
			}
			recs := drain(t, s)
			if got := ids(t, recs); !equalInts(got, seq(0, 30)) {
				t.Fatalf("read back %v", got)
			}
			for i, r := range recs {
				if r.Entries != i%5+1 || r.Timestamp != int64(1000+i) {
					t.Fatalf("record %d: %d entries at %d", i, r.Entries, r.Timestamp)
				}
			}
			if err := s.Release(marks[29]); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Records != 0 || st.Acked != 30 {
				t.Fatalf("after Release: %+v", st)
			}
		})
	}
}
