package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/spool"
)

// streamStats is the expected per-stream summary of some batches.
type streamStats struct {
	entries        int64
	oldest, newest int64
}

func expectStreams(batches []exporter.Batch) (map[streamKey]*streamStats, map[string]int64, int64, int64) {
	streams := map[streamKey]*streamStats{}
	tenantEntries := map[string]int64{}
	var oldest, newest int64
	for _, b := range batches {
		for _, s := range b.Streams {
			k := streamKey{b.Tenant, s.Labels}
			st := streams[k]
			if st == nil {
				st = &streamStats{}
				streams[k] = st
			}
			for _, e := range s.Entries {
				if st.entries == 0 || e.Timestamp < st.oldest {
					st.oldest = e.Timestamp
				}
				if e.Timestamp > st.newest {
					st.newest = e.Timestamp
				}
				if oldest == 0 || e.Timestamp < oldest {
					oldest = e.Timestamp
				}
				newest = max(newest, e.Timestamp)
				st.entries++
				tenantEntries[b.Tenant]++
			}
		}
	}
	return streams, tenantEntries, oldest, newest
}

func ts(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func TestInspectText(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-30*time.Minute), 12)
	writeSpool(t, dir, batches)
	segs := segFiles(t, dir)
	if len(segs) < 3 {
		t.Fatalf("want several segments for the test, got %v", segs)
	}
	var bytes int64
	for _, s := range segs {
		fi, err := os.Stat(filepath.Join(dir, s))
		if err != nil {
			t.Fatal(err)
		}
		bytes += fi.Size()
	}
	streams, tenantEntries, oldest, newest := expectStreams(batches)
	before := snapshot(t, dir)

	r := runT(t, "inspect", "-streams", dir)
	if r.code != 0 {
		t.Fatalf("code %d: %s", r.code, r.stderr)
	}
	tenantStreams := map[string]int{}
	for k := range streams {
		tenantStreams[k.tenant]++
	}
	wantLines(t, r.stdout,
		"spool: "+dir,
		"lock: free",
		"cursor: none (no record acknowledged inside a remaining segment)",
		fmt.Sprintf("segments: %d (%d bytes)", len(segs), bytes),
		"records: 12 pending, 0 acknowledged",
		"entries: 72 pending, 0 acknowledged",
		fmt.Sprintf("time range: %s .. %s (pending entries)", ts(oldest), ts(newest)),
		fmt.Sprintf("tenants: 3: (none) (%d streams, %d entries), team-a (%d streams, %d entries), team-b (%d streams, %d entries)",
			tenantStreams[""], tenantEntries[""], tenantStreams["team-a"], tenantEntries["team-a"],
			tenantStreams["team-b"], tenantEntries["team-b"]),
		fmt.Sprintf("streams: %d", len(streams)),
		"corrupt parts: 0",
	)
	for k, st := range streams {
		wantLines(t, r.stdout, fmt.Sprintf("%s %d %s %s %s", tenantName(k.tenant), st.entries, ts(st.oldest), ts(st.newest), k.labels))
	}
	for _, s := range segs {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("segment %s not listed:\n%s", s, r.stdout)
		}
	}
	sameSnapshot(t, before, snapshot(t, dir))

	// Without -streams the streams are counted, not listed.
	r = runT(t, "inspect", dir)
	wantLines(t, r.stdout, fmt.Sprintf("streams: %d (list them with -streams)", len(streams)))
	if strings.Contains(r.stdout, "TENANT") {
		t.Errorf("streams listed without -streams:\n%s", r.stdout)
	}
}

func TestInspectJSON(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-time.Hour), 9)
	writeSpool(t, dir, batches)
	segs := segFiles(t, dir)
	streams, tenantEntries, oldest, newest := expectStreams(batches)

	rep := inspectJSON(t, dir)
	tot := rep.Totals
	if tot.Segments != len(segs) || tot.Records != 9 || tot.Entries != 54 || tot.PendingRecords != 9 ||
		tot.PendingEntries != 54 || tot.AckedRecords != 0 || tot.Tenants != 3 || tot.Streams != len(streams) || tot.CorruptParts != 0 {
		t.Errorf("totals = %+v", tot)
	}
	if rep.TimeRange == nil || rep.TimeRange.OldestUnixNano != oldest || rep.TimeRange.NewestUnixNano != newest ||
		rep.TimeRange.Oldest != ts(oldest) || rep.TimeRange.Newest != ts(newest) {
		t.Errorf("time range = %+v, want %d..%d", rep.TimeRange, oldest, newest)
	}
	if len(rep.Streams) != len(streams) {
		t.Fatalf("streams = %+v", rep.Streams)
	}
	for _, s := range rep.Streams {
		st := streams[streamKey{s.Tenant, s.Labels}]
		if st == nil || s.Entries != st.entries || s.Oldest != ts(st.oldest) || s.Newest != ts(st.newest) {
			t.Errorf("stream %+v, want %+v", s, st)
		}
	}
	for _, tr := range rep.Tenants {
		if tr.Entries != tenantEntries[tr.Tenant] {
			t.Errorf("tenant %q: %d entries, want %d", tr.Tenant, tr.Entries, tenantEntries[tr.Tenant])
		}
	}
	var sum int64
	for i, g := range rep.Segments {
		if g.File != segs[i] || g.Damaged {
			t.Errorf("segment %d = %+v, want file %s undamaged", i, g, segs[i])
		}
		sum += g.Entries
	}
	if sum != 54 {
		t.Errorf("segment entries sum to %d", sum)
	}

	// The JSON names are the documented ones.
	r := runT(t, "inspect", "-json", dir)
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"dir", "locked", "cursor", "totals", "time_range", "segments", "tenants", "streams", "corrupt"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("JSON has no %q", k)
		}
	}
}

func TestInspectAcknowledged(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-time.Hour), 8)
	writeSpool(t, dir, batches)

	// A consumer acknowledged the first 3 records.
	sp, err := spool.Open(spool.Options{Dir: dir, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	var last spool.Pos
	for range 3 {
		rec, err := sp.Next()
		if err != nil {
			t.Fatal(err)
		}
		last = rec.Pos
	}
	if err := sp.Ack(last); err != nil {
		t.Fatal(err)
	}
	sp.Close()

	rep := inspectJSON(t, dir)
	_, _, oldest, newest := expectStreams(batches[3:])
	if rep.Totals.PendingRecords != 5 || rep.Totals.PendingEntries != 30 {
		t.Errorf("pending = %d records, %d entries; want 5, 30", rep.Totals.PendingRecords, rep.Totals.PendingEntries)
	}
	if rep.TimeRange == nil || rep.TimeRange.OldestUnixNano != oldest || rep.TimeRange.NewestUnixNano != newest {
		t.Errorf("time range %+v, want %s..%s", rep.TimeRange, ts(oldest), ts(newest))
	}
	if rep.Totals.AckedRecords > 0 {
		if !rep.Cursor.Present || rep.Cursor.Segment != rep.Segments[0].Number || rep.Segments[0].AckedRecords != rep.Totals.AckedRecords {
			t.Errorf("acknowledged records on disk without a matching cursor: %+v, %+v", rep.Cursor, rep.Segments[0])
		}
	}
	var streamEntries int64
	for _, s := range rep.Streams {
		streamEntries += s.Entries
	}
	if streamEntries != 30 {
		t.Errorf("streams hold %d entries, want the 30 pending", streamEntries)
	}
}

// frameEnd returns the offset after the frame at off of segment file b.
func frameEnd(b []byte, off int) int {
	return off + 20 + int(binary.LittleEndian.Uint32(b[off:]))
}

func TestInspectCorrupt(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-time.Hour), 12)
	writeSpool(t, dir, batches)
	segs := segFiles(t, dir)
	if len(segs) < 4 {
		t.Fatalf("want at least 4 segments, got %v", segs)
	}

	// Damage segment 1 and let recovery set it aside: a *.corrupt file.
	first := filepath.Join(dir, segs[0])
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b[32+20+3] ^= 0xff // payload of the first record
	if err := os.WriteFile(first, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Options{Dir: dir, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	// A record with a good checksum whose payload is not a batch.
	if err := sp.Append([]byte("not a batch"), 4, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	setAside := segs[0] + ".corrupt"
	if _, err := os.Stat(filepath.Join(dir, setAside)); err != nil {
		t.Fatalf("recovery did not set the segment aside: %v", err)
	}

	// Now damage the second record of a middle segment and tear the tail of
	// the newest one.
	segs = segFiles(t, dir)
	middle := segs[1]
	mp := filepath.Join(dir, middle)
	mb, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	second := frameEnd(mb, 32)
	if second >= len(mb) {
		t.Fatalf("segment %s has one record; the test wants two", middle)
	}
	mb[second+25] ^= 0x55
	if err := os.WriteFile(mp, mb, 0o600); err != nil {
		t.Fatal(err)
	}
	newest := segs[len(segs)-1]
	np := filepath.Join(dir, newest)
	nb, err := os.ReadFile(np)
	if err != nil {
		t.Fatal(err)
	}
	torn := len(nb)
	if err := os.WriteFile(np, append(nb, 9, 0, 0, 0, 1, 2, 3), 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(filepath.Join(dir, "cursor.tmp"), []byte("cut short"), 0o600); err != nil {
		t.Fatal(err)
	}

	before := snapshot(t, dir)
	rep := inspectJSON(t, dir)
	text := runT(t, "inspect", dir)
	sameSnapshot(t, before, snapshot(t, dir))

	if len(rep.Temporary) != 1 || rep.Temporary[0] != "cursor.tmp" {
		t.Errorf("temporary files = %v", rep.Temporary)
	}
	kinds := map[string]corruptPart{}
	for _, p := range rep.Corrupt {
		kinds[p.Kind] = p
	}
	if len(rep.Corrupt) != 4 || rep.Totals.CorruptParts != 4 {
		t.Errorf("corrupt parts = %+v, want 4", rep.Corrupt)
	}
	if p := kinds["set_aside"]; p.File != setAside || p.Bytes != int64(len(b)) {
		t.Errorf("set-aside part = %+v, want %s of %d bytes", p, setAside, len(b))
	}
	if p := kinds["corrupt"]; p.File != middle || p.Offset != int64(second) || p.Bytes != int64(len(mb)-second) ||
		!strings.Contains(p.Reason, "checksum") || !strings.Contains(p.Recovery, ".corrupt") {
		t.Errorf("corrupt part = %+v, want %s at %d", p, middle, second)
	}
	if p := kinds["torn"]; p.File != newest || p.Offset != int64(torn) || p.Bytes != 7 || !strings.Contains(p.Recovery, "truncates") {
		t.Errorf("torn part = %+v, want %s at %d", p, newest, torn)
	}
	if p := kinds["undecodable"]; p.File != newest || p.Entries != 4 || !strings.Contains(p.Reason, "bad batch") {
		t.Errorf("undecodable part = %+v", p)
	}
	wantContains(t, "text report", norm(text.stdout),
		"corrupt parts: 4",
		fmt.Sprintf("%s: set aside (%d bytes)", setAside, len(b)),
		fmt.Sprintf("%s: corrupt at offset %d (%d bytes)", middle, second, len(mb)-second),
		fmt.Sprintf("%s: torn at offset %d (7 bytes)", newest, torn),
		"(4 entries): undecodable",
	)
}

func TestInspectLocked(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-time.Hour), 4)
	writeSpool(t, dir, batches)
	sp, err := spool.Open(spool.Options{Dir: dir, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	before := snapshot(t, dir)

	r := runT(t, "inspect", dir)
	if r.code != 0 {
		t.Fatalf("code %d: %s", r.code, r.stderr)
	}
	wantLines(t, r.stdout, "records: 4 pending, 0 acknowledged")
	wantContains(t, "inspect", r.stdout, "lock:", "held by another process")
	if rep := inspectJSON(t, dir); !rep.Locked || rep.Totals.PendingEntries != 24 {
		t.Errorf("locked=%v pending=%d, want true, 24", rep.Locked, rep.Totals.PendingEntries)
	}
	if rep := inspectJSON(t, dir, "-no-lock-check"); rep.Locked {
		t.Errorf("-no-lock-check reported a lock")
	}
	sameSnapshot(t, before, snapshot(t, dir))
	// The inspection let go of everything: the service still owns the spool.
	if err := sp.Append(spool.AppendBatch(nil, &batches[0]), 6, 1); err != nil {
		t.Errorf("append after inspect: %v", err)
	}
}

func TestBadDirectories(t *testing.T) {
	empty := t.TempDir()
	if err := os.WriteFile(filepath.Join(empty, "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(empty, "notes.txt")
	missing := filepath.Join(empty, "missing")
	tests := map[string]struct {
		dir  string
		want string
	}{
		"missing":       {missing, "no such directory"},
		"not a spool":   {empty, "is not a lokislog spool directory"},
		"not directory": {file, "is not a directory"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := snapshot(t, empty)
			for _, args := range [][]string{
				{"inspect", tc.dir},
				{"inspect", "-json", tc.dir},
				{"replay", "-url", "http://127.0.0.1:1", tc.dir},
				{"replay", "-dry-run", "-url", "http://127.0.0.1:1", tc.dir},
			} {
				r := runT(t, args...)
				if r.code != exitFail || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("%v: code %d, stderr %q; want %d and %q", args, r.code, r.stderr, exitFail, tc.want)
				}
			}
			sameSnapshot(t, before, snapshot(t, empty)) // no LOCK file created, no directory made
		})
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	writeSpool(t, dir, makeBatches(time.Now(), 1))
	tests := map[string]struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		"no command":       {nil, exitUsage, "", "Usage:"},
		"help":             {[]string{"help"}, exitOK, "lokispool inspect", ""},
		"-h":               {[]string{"-h"}, exitOK, "lokispool replay -url URL", ""},
		"help replay":      {[]string{"help", "replay"}, exitOK, "-max-age", ""},
		"help inspect":     {[]string{"help", "inspect"}, exitOK, "-streams", ""},
		"inspect -h":       {[]string{"inspect", "-h"}, exitOK, "-json", ""},
		"replay -h":        {[]string{"replay", "-h"}, exitOK, "-dry-run", ""},
		"unknown command":  {[]string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		"inspect no dir":   {[]string{"inspect"}, exitUsage, "", "want one spool directory"},
		"inspect two dirs": {[]string{"inspect", dir, dir}, exitUsage, "", "want one spool directory, got 2"},
		"bad flag":         {[]string{"inspect", "-bogus", dir}, exitUsage, "", "-bogus"},
		"replay no url":    {[]string{"replay", dir}, exitUsage, "", "-url is required"},
		"replay bad url":   {[]string{"replay", "-url", "ftp://x", dir}, exitUsage, "", `scheme "ftp"`},
		"replay protocol":  {[]string{"replay", "-url", "http://127.0.0.1:1", "-protocol", "xml", dir}, exitUsage, "", `protocol "xml"`},
		"negative max-age": {[]string{"replay", "-url", "http://127.0.0.1:1", "-max-age", "-1h", dir}, exitUsage, "", "negative"},
		"bad header":       {[]string{"replay", "-url", "http://127.0.0.1:1", "-header", "novalue", dir}, exitUsage, "", "name=value"},
		"password without user": {[]string{"replay", "-url", "http://127.0.0.1:1", "-password", "secret", dir},
			exitUsage, "", "password set without username"},
		"both auths": {[]string{"replay", "-url", "http://127.0.0.1:1", "-username", "u", "-bearer-token", "tok1", dir},
			exitUsage, "", "both basic auth and bearer token"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := runT(t, tc.args...)
			if r.code != tc.code {
				t.Errorf("code %d, want %d\nstdout: %s\nstderr: %s", r.code, tc.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stdout %q (want %q)\nstderr %q (want %q)", r.stdout, tc.stdout, r.stderr, tc.stderr)
			}
		})
	}
}

// FuzzInspect feeds arbitrary bytes to inspect as a segment file (and as a
// cursor): it must report, never panic, and never change the files.
func FuzzInspect(f *testing.F) {
	seedDir := f.TempDir()
	sp, err := spool.Open(spool.Options{Dir: seedDir, Sync: spool.SyncNever})
	if err != nil {
		f.Fatal(err)
	}
	for i, b := range makeBatches(time.Unix(1700000000, 0), 3) {
		if err := sp.Append(spool.AppendBatch(nil, &b), b.Len(), int64(i)); err != nil {
			f.Fatal(err)
		}
	}
	sp.Close()
	seg, err := os.ReadFile(filepath.Join(seedDir, "0000000000000001.seg"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg, []byte{})
	f.Add(seg[:len(seg)-3], []byte("LKSC"))
	f.Add(seg[:32], make([]byte, 32))
	f.Add(make([]byte, 100), []byte{})
	f.Fuzz(func(t *testing.T, segment, cursor []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "0000000000000001.seg"), segment, 0o600); err != nil {
			t.Fatal(err)
		}
		if len(cursor) > 0 {
			if err := os.WriteFile(filepath.Join(dir, "cursor"), cursor, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		before := snapshot(t, dir)
		rep, err := buildReport(dir, false)
		if err != nil {
			t.Fatalf("buildReport: %v", err)
		}
		if rep.Totals.PendingRecords < 0 || rep.Totals.Records > int64(len(segment)/20) {
			t.Errorf("impossible totals %+v for %d bytes", rep.Totals, len(segment))
		}
		sameSnapshot(t, before, snapshot(t, dir))
	})
}

// cursorFile returns the bytes of a valid cursor file (docs/SPOOL.md).
func cursorFile(seg uint64, off int64) []byte {
	b := make([]byte, 32)
	copy(b, "LKSC")
	b[4] = 1
	binary.LittleEndian.PutUint64(b[8:], seg)
	binary.LittleEndian.PutUint64(b[16:], uint64(off))
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestInspectCursor checks that inspect applies the cursor as recovery
// does: its pending counts must equal what a real Open finds.
func TestInspectCursor(t *testing.T) {
	base := t.TempDir()
	writeSpool(t, base, makeBatches(time.Now().Add(-time.Hour), 6)) // 3 segments of 2 records
	clean := inspectJSON(t, base)
	if len(clean.Segments) != 3 || clean.Segments[0].Records != 2 {
		t.Fatalf("fixture layout: %+v", clean.Segments)
	}
	first := clean.Segments[0].Number
	b, err := os.ReadFile(filepath.Join(base, clean.Segments[0].File))
	if err != nil {
		t.Fatal(err)
	}
	end1 := int64(frameEnd(b, 32))

	tests := map[string]struct {
		cursor      []byte
		pending     int64
		acked       int64
		wantErr     bool
		wantIgnored bool
		text        string
	}{
		"garbage": {cursor: []byte("not a cursor at all"), pending: 6, wantErr: true, text: "cursor: invalid"},
		"after the first record": {cursor: cursorFile(first, end1), pending: 5, acked: 1,
			text: fmt.Sprintf("cursor: segment %d, offset %d", first, end1)},
		"inside a record": {cursor: cursorFile(first, end1-7), pending: 6, wantIgnored: true, text: "is not a record boundary"},
		"past the data":   {cursor: cursorFile(first, 1<<20), pending: 4, acked: 2},
		"next segment":    {cursor: cursorFile(first+1, 32), pending: 4, acked: 2},
		"gone segment":    {cursor: cursorFile(first-1, 32), pending: 6, text: "is gone"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := copyDir(t, base)
			if err := os.WriteFile(filepath.Join(dir, "cursor"), tc.cursor, 0o600); err != nil {
				t.Fatal(err)
			}
			rep := inspectJSON(t, dir)
			if rep.Totals.PendingRecords != tc.pending || rep.Totals.AckedRecords != tc.acked {
				t.Errorf("pending %d, acked %d; want %d, %d", rep.Totals.PendingRecords, rep.Totals.AckedRecords, tc.pending, tc.acked)
			}
			if (rep.Cursor.Error != "") != tc.wantErr || (rep.Cursor.Ignored != "") != tc.wantIgnored {
				t.Errorf("cursor %+v", rep.Cursor)
			}
			if tc.text != "" {
				wantContains(t, "inspect", norm(runT(t, "inspect", dir).stdout), tc.text)
			}
			// The real recovery agrees.
			sp, err := spool.Open(spool.Options{Dir: copyDir(t, dir), Sync: spool.SyncNever})
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			if st := sp.Stats(); st.Records != tc.pending {
				t.Errorf("Open finds %d pending records, inspect %d", st.Records, tc.pending)
			}
		})
	}
}
