package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lokislog/lokislog/internal/spool"
)

// inspectReport is what inspect prints, as text or JSON.
type inspectReport struct {
	Dir       string          `json:"dir"`
	Locked    bool            `json:"locked"`
	LockError string          `json:"lock_error,omitempty"`
	Cursor    cursorReport    `json:"cursor"`
	Totals    totalsReport    `json:"totals"`
	TimeRange *timeRange      `json:"time_range"` // of the pending entries; null when none
	Segments  []segmentReport `json:"segments"`
	Tenants   []tenantReport  `json:"tenants"`
	Streams   []streamReport  `json:"streams"`
	Corrupt   []corruptPart   `json:"corrupt"`
	Temporary []string        `json:"temporary_files"`
	Vanished  int             `json:"vanished_segments"`
}

type cursorReport struct {
	Present bool   `json:"present"`
	Segment uint64 `json:"segment"`
	Offset  int64  `json:"offset"`
	// Error: the file is invalid; Ignored: it does not apply.
	Error   string `json:"error,omitempty"`
	Ignored string `json:"ignored,omitempty"`
	// Note explains a valid cursor whose segment is gone.
	Note string `json:"note,omitempty"`
}

type totalsReport struct {
	Segments int   `json:"segments"`
	Bytes    int64 `json:"bytes"`
	// Records and Entries count the valid records on disk; Pending the
	// unacknowledged ones, Acked the acknowledged ones still on disk.
	Records        int64 `json:"records"`
	Entries        int64 `json:"entries"`
	PendingRecords int64 `json:"pending_records"`
	PendingEntries int64 `json:"pending_entries"`
	AckedRecords   int64 `json:"acked_records"`
	AckedEntries   int64 `json:"acked_entries"`
	Tenants        int   `json:"tenants"`
	Streams        int   `json:"streams"`
	CorruptParts   int   `json:"corrupt_parts"`
}

type timeRange struct {
	Oldest         string `json:"oldest"`
	Newest         string `json:"newest"`
	OldestUnixNano int64  `json:"oldest_unix_nano"`
	NewestUnixNano int64  `json:"newest_unix_nano"`
}

type segmentReport struct {
	Number       uint64 `json:"number"`
	File         string `json:"file"`
	Size         int64  `json:"size"`
	Created      string `json:"created,omitempty"`
	Records      int64  `json:"records"`
	Entries      int64  `json:"entries"`
	AckedRecords int64  `json:"acked_records"`
	AckedEntries int64  `json:"acked_entries"`
	// OldestRecord and NewestRecord come from the record headers (the
	// oldest entry of each record).
	OldestRecord string `json:"oldest_record,omitempty"`
	NewestRecord string `json:"newest_record,omitempty"`
	Damaged      bool   `json:"damaged"`
}

type tenantReport struct {
	Tenant  string `json:"tenant"`
	Streams int    `json:"streams"`
	Entries int64  `json:"entries"`
}

type streamReport struct {
	Tenant  string `json:"tenant"`
	Labels  string `json:"labels"`
	Entries int64  `json:"entries"`
	Oldest  string `json:"oldest"`
	Newest  string `json:"newest"`
}

// corruptPart is one damaged part of the spool.
type corruptPart struct {
	File    string `json:"file"`
	Segment uint64 `json:"segment"`
	// Kind is "set_aside" (a *.corrupt file), "torn", "zeroed", "corrupt",
	// "changed" (damage in a segment, see spool.Damage) or "undecodable" (a
	// record whose checksum is right but whose payload is not a batch).
	Kind     string `json:"kind"`
	Offset   int64  `json:"offset"`
	Bytes    int64  `json:"bytes"`
	Entries  int    `json:"entries,omitempty"`
	Reason   string `json:"reason"`
	Recovery string `json:"recovery"`
}

func (a *app) inspectFlags() (*flag.FlagSet, *inspectOpts) {
	o := &inspectOpts{}
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.BoolVar(&o.json, "json", false, "print a JSON report instead of text")
	fs.BoolVar(&o.streams, "streams", false, "list every stream (tenant, labels, entries, time range) in the text report")
	fs.BoolVar(&o.noLockCheck, "no-lock-check", false,
		"do not probe the directory lock (the probe holds it for an instant when it is free)")
	setUsage(fs, `Usage: lokispool inspect [-json] [-streams] [-no-lock-check] DIR

Reports the spool in DIR: segments, records, entries, the time range of the
pending (unacknowledged) entries, tenants and streams, the acknowledged
cursor, and corrupt parts (set-aside *.corrupt files, damage in segments,
undecodable records). Read only: nothing is truncated, renamed or removed,
and it works while a service holds the spool.
`)
	return fs, o
}

type inspectOpts struct {
	json, streams, noLockCheck bool
}

func (a *app) inspect(args []string) int {
	fs, o := a.inspectFlags()
	pos, help, err := parse(fs, args)
	switch {
	case help:
		fs.SetOutput(a.stdout)
		fs.Usage()
		return exitOK
	case err != nil:
		return exitUsage // the flag package printed it
	case len(pos) != 1:
		return a.usageError(fs, "want one spool directory, got %d arguments", len(pos))
	}
	dir := pos[0]
	if msg := checkDir(dir); msg != "" {
		fmt.Fprintf(a.stderr, "lokispool inspect: %s\n", msg)
		return exitFail
	}
	rep, err := buildReport(dir, !o.noLockCheck)
	if err != nil {
		fmt.Fprintf(a.stderr, "lokispool inspect: %v\n", err)
		return exitFail
	}
	if o.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(a.stderr, "lokispool inspect: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	printReport(a.stdout, rep, o.streams)
	return exitOK
}

type streamKey struct{ tenant, labels string }

type streamAgg struct {
	entries        int64
	oldest, newest int64
}

// buildReport inspects dir and sums up what it holds.
func buildReport(dir string, lockCheck bool) (*inspectReport, error) {
	streams := map[streamKey]*streamAgg{}
	var corrupt []corruptPart
	var oldest, newest int64
	have := false
	in, err := spool.Inspect(dir, spool.InspectOptions{
		SkipLockCheck: !lockCheck,
		Record: func(r spool.InspectedRecord) error {
			if r.Acknowledged {
				return nil
			}
			b, err := spool.DecodeBatch(r.Payload)
			if err != nil {
				corrupt = append(corrupt, corruptPart{
					File: segmentFile(r.Pos.Segment), Segment: r.Pos.Segment, Kind: "undecodable",
					Offset: r.Pos.Offset, Bytes: int64(len(r.Payload)), Entries: r.Entries, Reason: err.Error(),
					Recovery: "replay counts its entries as corrupt and acknowledges it",
				})
				return nil
			}
			for _, st := range b.Streams {
				k := streamKey{b.Tenant, st.Labels}
				agg := streams[k]
				if agg == nil {
					agg = &streamAgg{}
					streams[k] = agg
				}
				for _, e := range st.Entries {
					if agg.entries == 0 || e.Timestamp < agg.oldest {
						agg.oldest = e.Timestamp
					}
					if agg.entries == 0 || e.Timestamp > agg.newest {
						agg.newest = e.Timestamp
					}
					agg.entries++
					if !have || e.Timestamp < oldest {
						oldest = e.Timestamp
					}
					if !have || e.Timestamp > newest {
						newest = e.Timestamp
					}
					have = true
				}
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}

	rep := &inspectReport{
		Dir: in.Dir, Locked: in.Locked, LockError: in.LockError,
		Cursor: cursorReport{
			Present: in.Cursor.Present, Segment: in.Cursor.Segment, Offset: in.Cursor.Offset,
			Error: in.Cursor.Error, Ignored: in.Cursor.Ignored,
		},
		Segments:  []segmentReport{},
		Tenants:   []tenantReport{},
		Streams:   []streamReport{},
		Corrupt:   []corruptPart{},
		Temporary: append([]string{}, in.Temporary...),
		Vanished:  in.Vanished,
	}
	if c := &rep.Cursor; c.Present && c.Error == "" &&
		!slices.ContainsFunc(in.Segments, func(g spool.SegmentInfo) bool { return g.Number == c.Segment }) {
		c.Note = fmt.Sprintf("segment %d is gone: every record before it was acknowledged", c.Segment)
	}
	t := &rep.Totals
	for _, g := range in.Segments {
		rep.Segments = append(rep.Segments, segmentReport{
			Number: g.Number, File: g.Name, Size: g.Size, Created: fmtTime(g.Created),
			Records: g.Records, Entries: g.Entries, AckedRecords: g.AckedRecords, AckedEntries: g.AckedEntries,
			OldestRecord: fmtTime(g.OldestRecord), NewestRecord: fmtTime(g.NewestRecord),
			Damaged: g.Damage != nil,
		})
		t.Segments++
		t.Bytes += g.Size
		t.Records += g.Records
		t.Entries += g.Entries
		t.AckedRecords += g.AckedRecords
		t.AckedEntries += g.AckedEntries
		if d := g.Damage; d != nil {
			rep.Corrupt = append(rep.Corrupt, corruptPart{
				File: g.Name, Segment: g.Number, Kind: d.Kind, Offset: d.Offset, Bytes: d.Bytes,
				Reason: d.Reason, Recovery: d.Recovery,
			})
		}
	}
	t.PendingRecords = t.Records - t.AckedRecords
	t.PendingEntries = t.Entries - t.AckedEntries
	for _, sa := range in.SetAside {
		rep.Corrupt = append(rep.Corrupt, corruptPart{
			File: sa.Name, Segment: sa.Segment, Kind: "set_aside", Bytes: sa.Size,
			Reason:   "set aside by recovery after damage was found",
			Recovery: "never read or deleted by the spool; delete it when no longer needed",
		})
	}
	rep.Corrupt = append(rep.Corrupt, corrupt...)
	slices.SortStableFunc(rep.Corrupt, func(x, y corruptPart) int {
		return cmp.Or(cmp.Compare(x.Segment, y.Segment), cmp.Compare(x.Offset, y.Offset))
	})
	t.CorruptParts = len(rep.Corrupt)

	tenants := map[string]*tenantReport{}
	for k, agg := range streams {
		rep.Streams = append(rep.Streams, streamReport{
			Tenant: k.tenant, Labels: k.labels, Entries: agg.entries,
			Oldest: fmtTime(agg.oldest), Newest: fmtTime(agg.newest),
		})
		tr := tenants[k.tenant]
		if tr == nil {
			tr = &tenantReport{Tenant: k.tenant}
			tenants[k.tenant] = tr
		}
		tr.Streams++
		tr.Entries += agg.entries
	}
	slices.SortFunc(rep.Streams, func(x, y streamReport) int {
		return cmp.Or(strings.Compare(x.Tenant, y.Tenant), strings.Compare(x.Labels, y.Labels))
	})
	for _, tr := range tenants {
		rep.Tenants = append(rep.Tenants, *tr)
	}
	slices.SortFunc(rep.Tenants, func(x, y tenantReport) int { return strings.Compare(x.Tenant, y.Tenant) })
	t.Tenants, t.Streams = len(rep.Tenants), len(rep.Streams)
	if have {
		rep.TimeRange = &timeRange{
			Oldest: fmtTime(oldest), Newest: fmtTime(newest),
			OldestUnixNano: oldest, NewestUnixNano: newest,
		}
	}
	return rep, nil
}

// printReport writes rep as text.
func printReport(w io.Writer, rep *inspectReport, listStreams bool) {
	t := rep.Totals
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "spool:\t%s\n", rep.Dir)
	switch {
	case rep.Locked:
		fmt.Fprintf(tw, "lock:\theld by another process: this is a snapshot read without the lock, the files may change while read\n")
	case rep.LockError != "":
		fmt.Fprintf(tw, "lock:\tunknown (%s)\n", rep.LockError)
	default:
		fmt.Fprintf(tw, "lock:\tfree\n")
	}
	c := rep.Cursor
	switch {
	case !c.Present:
		fmt.Fprintf(tw, "cursor:\tnone (no record acknowledged inside a remaining segment)\n")
	case c.Error != "":
		fmt.Fprintf(tw, "cursor:\tinvalid (%s): ignored, the spool is replayed from its oldest record\n", c.Error)
	case c.Ignored != "":
		fmt.Fprintf(tw, "cursor:\tsegment %d, offset %d: ignored: %s\n", c.Segment, c.Offset, c.Ignored)
	case c.Note != "":
		fmt.Fprintf(tw, "cursor:\tsegment %d, offset %d (%s)\n", c.Segment, c.Offset, c.Note)
	default:
		fmt.Fprintf(tw, "cursor:\tsegment %d, offset %d\n", c.Segment, c.Offset)
	}
	fmt.Fprintf(tw, "segments:\t%d (%d bytes)\n", t.Segments, t.Bytes)
	fmt.Fprintf(tw, "records:\t%d pending, %d acknowledged\n", t.PendingRecords, t.AckedRecords)
	fmt.Fprintf(tw, "entries:\t%d pending, %d acknowledged\n", t.PendingEntries, t.AckedEntries)
	if tr := rep.TimeRange; tr != nil {
		fmt.Fprintf(tw, "time range:\t%s .. %s (pending entries)\n", tr.Oldest, tr.Newest)
	} else {
		fmt.Fprintf(tw, "time range:\tnone (no pending entry)\n")
	}
	fmt.Fprintf(tw, "tenants:\t%d", t.Tenants)
	for i, tr := range rep.Tenants {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(tw, "%s%s (%d streams, %d entries)", sep, tenantName(tr.Tenant), tr.Streams, tr.Entries)
	}
	fmt.Fprintln(tw)
	if listStreams {
		fmt.Fprintf(tw, "streams:\t%d\n", t.Streams)
	} else {
		fmt.Fprintf(tw, "streams:\t%d (list them with -streams)\n", t.Streams)
	}
	fmt.Fprintf(tw, "corrupt parts:\t%d\n", t.CorruptParts)
	if len(rep.Temporary) > 0 {
		fmt.Fprintf(tw, "temporary files:\t%s (left by a crash; the next Open removes them)\n", strings.Join(rep.Temporary, ", "))
	}
	if rep.Vanished > 0 {
		fmt.Fprintf(tw, "vanished:\t%d segments were deleted while read\n", rep.Vanished)
	}
	tw.Flush()

	if len(rep.Segments) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SEGMENT\tSIZE\tRECORDS\tENTRIES\tACKED\tOLDEST RECORD\tNEWEST RECORD\tDAMAGED")
		for _, g := range rep.Segments {
			damaged := "no"
			if g.Damaged {
				damaged = "yes"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", g.File, g.Size, g.Records, g.Entries,
				g.AckedRecords, dash(g.OldestRecord), dash(g.NewestRecord), damaged)
		}
		tw.Flush()
	}

	if len(rep.Corrupt) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "corrupt parts:")
		for _, p := range rep.Corrupt {
			switch p.Kind {
			case "set_aside":
				fmt.Fprintf(w, "  %s: set aside (%d bytes): %s\n", p.File, p.Bytes, p.Recovery)
			case "undecodable":
				fmt.Fprintf(w, "  %s: record at offset %d (%d entries): undecodable: %s; %s\n",
					p.File, p.Offset, p.Entries, p.Reason, p.Recovery)
			default:
				fmt.Fprintf(w, "  %s: %s at offset %d (%d bytes): %s; %s\n", p.File, p.Kind, p.Offset, p.Bytes, p.Reason, p.Recovery)
			}
		}
	}

	if listStreams && len(rep.Streams) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TENANT\tENTRIES\tOLDEST\tNEWEST\tLABELS")
		for _, s := range rep.Streams {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", tenantName(s.Tenant), s.Entries, s.Oldest, s.Newest, s.Labels)
		}
		tw.Flush()
	}
}

func tenantName(t string) string {
	if t == "" {
		return "(none)"
	}
	return t
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fmtTime formats a Unix ns timestamp in UTC; "" for 0.
func fmtTime(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

// segmentFile is the file name of segment n.
func segmentFile(n uint64) string { return fmt.Sprintf("%016x.seg", n) }
