package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lokislog/lokislog/bench/internal/contest"
)

// TestMain lets the test binary serve as benchrun's children: the smoke
// test re-executes it with -role=....
func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-role=") {
			main()
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// TestSmoke runs benchrun end to end on a few thousand records with a short
// outage, for lokislog's contestants. It asserts what does not depend on
// speed: the spool modes deliver everything, memory-only drops are counted
// exactly, and the report has its tables.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: runs benchrun end to end (about 15 s)")
	}
	o := &options{
		records: 2000, outage: 300 * time.Millisecond, benchtime: "1x", count: 1,
		stall: 10 * time.Second, timeout: time.Minute, dir: t.TempDir(),
		only: strings.Join([]string{contest.LokislogMemory, contest.LokislogSpill, contest.LokislogAlways}, ","),
		skip: "footprint", spillMin: 30_000,
	}
	var out bytes.Buffer
	r, err := runTo(o, &out)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Errors) > 0 {
		t.Fatalf("errors: %v", r.Errors)
	}
	for _, name := range []string{contest.LokislogSpill, contest.LokislogAlways} {
		for kind, runs := range map[string]map[string]runResult{"normal": r.Normal, "outage": r.Outage} {
			x, ok := runs[name]
			if !ok {
				t.Errorf("%s %s: no result", name, kind)
				continue
			}
			if x.Delivered != o.records || x.Duplicates != 0 {
				t.Errorf("%s %s: delivered %d (%d duplicates) of %d", name, kind, x.Delivered, x.Duplicates, o.records)
			}
		}
	}
	for kind, runs := range map[string]map[string]runResult{"normal": r.Normal, "outage": r.Outage} {
		x := runs[contest.LokislogMemory]
		if x.Lokislog == nil || x.CountedDrops != o.records-x.Delivered {
			t.Errorf("memory-only %s: %d counted drops, %d missing", kind, x.CountedDrops, o.records-x.Delivered)
		}
	}
	if r.Outage[contest.LokislogSpill].Outage != o.outage || r.Outage[contest.LokislogSpill].OutageAt == 0 {
		t.Errorf("outage run had no outage: %+v", r.Outage[contest.LokislogSpill])
	}
	if _, ok := r.Handle[contest.JSONDiscard]; !ok {
		t.Error("no Handle result for the floor")
	}
	if s := r.Spill["spill"]; s.Bytes == 0 || s.Spilled == 0 {
		t.Errorf("spill throughput run wrote nothing: %+v", s)
	}
	for _, want := range []string{"## Machine", "## Contestants", "## Targets (issue 4)", "| `lokislog-spill` 100% delivered, outage run |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
