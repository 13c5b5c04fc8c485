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
