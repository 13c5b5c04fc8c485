package spool

import (
	"bytes"
	"errors"
	"testing"
)

// TestNextViewsMatchesNext checks that runs of records read with NextViews
// are the records, positions and counts Next returns, in order, across
// segments, and that every payload of a run is intact when the call
// returns.
func TestNextViewsMatchesNext(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, Sync: SyncNever, SegmentSize: 64 << 10})
	const n = 900
	for i := range n {
		size := 40 + i%7*150 // 40..940 bytes
		if err := s.Append(payload(i, size), i%5+1, int64(1000+i)); err != nil {
			t.Fatal(err)
		}
	}
	want := drain(t, s)
	if len(want) != n {
		t.Fatalf("Next returned %d records", len(want))
	}
	if err := s.Rewind(); err != nil {
		t.Fatal(err)
	}
	var got []Record
	calls := 0
	for {
		run, err := s.NextViews(nil, 100, 1<<30, true)
		if errors.Is(err, ErrEmpty) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		calls++
		if len(run) == 0 || len(run) > 100 {
			t.Fatalf("NextViews returned %d records (max 100)", len(run))
		}
		for _, r := range run { // all still valid: copy them now
			r.Payload = bytes.Clone(r.Payload)
			got = append(got, r)
		}
	}
	if len(got) != n {
		t.Fatalf("NextViews returned %d records, want %d", len(got), n)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Pos != w.Pos || g.Entries != w.Entries || g.Timestamp != w.Timestamp || !bytes.Equal(g.Payload, w.Payload) {
			t.Fatalf("record %d: %v/%d/%d (%d bytes), want %v/%d/%d (%d bytes)", i, g.Pos, g.Entries, g.Timestamp, len(g.Payload), w.Pos, w.Entries, w.Timestamp, len(w.Payload))
		}
	}
	// Runs stop at segment ends and block ends: more calls than n/100.
	if calls <= n/100 {
		t.Fatalf("%d calls for %d records of up to 100", calls, n)
	}
	// The positions are acknowledged like Next's.
	if err := s.Ack(got[n-1].Pos); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Records != 0 {
		t.Fatalf("%d records left after acknowledging all", st.Records)
	}
}

// TestNextViewsLimits checks the count and byte limits (a run stops before
// the record that would take it past maxBytes; a first record over it is
// appended alone with first, left unread without) and that a run ends
// where the read-ahead block does: records appended after the block was
// read come with the next call.
func TestNextViewsLimits(t *testing.T) {
	s := openT(t, Options{Sync: SyncNever})
	appendN(t, s, 0, 20, 100)
	run, err := s.NextViews(nil, 1000, 250, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, run); !equalInts(got, seq(0, 2)) {
		t.Fatalf("maxBytes 250 with 100-byte records: %v, want 0 1", got)
	}
	run, err = s.NextViews(run[:0], 1000, 99, false)
	if err != nil || len(run) != 0 {
		t.Fatalf("maxBytes 99 without first: %v, %v; want no record and no error", ids(t, run), err)
	}
	run, err = s.NextViews(run[:0], 1000, 99, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, run); !equalInts(got, seq(2, 3)) {
		t.Fatalf("maxBytes 99 with first: %v, want 2 alone", got)
	}
	run, err = s.NextViews(run[:0], 4, 1<<30, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, run); !equalInts(got, seq(3, 7)) {
		t.Fatalf("max 4: %v", got)
	}
	run, err = s.NextViews(run[:0], 1000, 1<<30, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, run); !equalInts(got, seq(7, 20)) {
		t.Fatalf("the rest of the block: %v", got)
	}
	appendN(t, s, 20, 5, 100) // after the block was read
	run, err = s.NextViews(run[:0], 1000, 1<<30, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(t, run); !equalInts(got, seq(20, 25)) {
		t.Fatalf("after appending: %v", got)
	}
	if _, err := s.NextViews(run[:0], 1000, 1<<30, true); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty spool: %v, want ErrEmpty", err)
	}
}

// TestNextViewsOneLockPerBlock checks what NextViews is for: thousands of
// small records in a few calls (one read each), not one call per record.
func TestNextViewsOneLockPerBlock(t *testing.T) {
	ffs := &faultFS{}
	s := openT(t, Options{FS: ffs, Sync: SyncNever})
	const n, size = 3000, 200
	appendN(t, s, 0, n, size)
	before := ffs.readAts.Load()
	calls, total := 0, 0
	var run []Record
	for total < n {
		var err error
		run, err = s.NextViews(run[:0], 1<<20, 1<<30, true)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range run {
			if id := recID(t, r.Payload); id != total+i {
				t.Fatalf("record %d is %d", total+i, id)
			}
		}
		total += len(run)
		calls++
	}
	// 3000 frames of 220 bytes: 660 KB, three 256 KiB blocks.
	if reads := ffs.readAts.Load() - before; calls > 4 || reads > 4 {
		t.Fatalf("%d calls and %d reads for %d records", calls, reads, n)
	}
}
