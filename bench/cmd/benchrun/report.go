package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lokislog/lokislog/bench/internal/contest"
)

// Targets of issue 4.
const (
	targetHandleRatio   = 1.0
	targetRateRatio     = 0.5
	targetCPURatio      = 2.0
	targetRSS           = 32 << 20
	targetSpillRatio    = 0.5
	targetSlowestCall   = time.Millisecond
	targetFootprintDiff = 1_000_000 // bytes (1.0 MB)
)

var lokislogs = []string{contest.LokislogMemory, contest.LokislogSpill, contest.LokislogAlways}

func report(w io.Writer, r *results) {
	m := r.Machine
	fmt.Fprintf(w, "\n## Machine\n\n%s/%s, %s, %d cores, %s", m.GOOS, m.GOARCH, m.CPU, m.Cores, m.GoVersion)
	if m.LoadStart != "" {
		fmt.Fprintf(w, "; load average %s at the start, %s at the end", m.LoadStart, m.LoadEnd)
	}
	fmt.Fprintf(w, ".\n")
	if m.Library != "" {
		fmt.Fprintf(w, "lokislog: %s.\n", m.Library)
	}
	if st := m.Stalls; st != nil {
		fmt.Fprintf(w, "Stall probe, before the contestants: one goroutine reading the clock in a loop for %v on the otherwise idle machine saw gaps up to %s (%d over 1 ms, %d over 100 µs): time its thread did not run, which any call spanning it takes too.\n",
			st.Probed.Round(time.Millisecond), dur(st.Longest), st.Over1ms, st.Over100us)
	}
	fmt.Fprintf(w, "\n")
	fmt.Fprintf(w, "Run: %s records per delivery run from %d goroutines, outage %s, Handle benchmarks %s × %s (median); took %v.\n",
		r.Options["records"], contest.Workers, r.Options["outage"], r.Options["benchtime"], r.Options["count"], r.Elapsed.Round(time.Second))
	if len(r.Steady) > 0 {
		fmt.Fprintf(w, "Steady runs: %s records/s in total for %s from %d goroutines, the outage in the middle.\n",
			r.Options["steady_rate"], r.Options["steady"], contest.Workers)
	}
	switch {
	case r.Lean && r.PeersLean:
		fmt.Fprintf(w, "lokislog and the floor ran in a binary built with `-tags nopeers` (without the peers' code), the peers in one built with `-tags noreceiver`; neither holds the receiver.\n")
	case r.Lean:
		fmt.Fprintf(w, "lokislog and the floor ran in a binary built with `-tags nopeers` (without the peers' code), the peers in one with everything (the receiver's code included).\n")
	}

	fmt.Fprintf(w, "\n## Contestants\n\n")
	fmt.Fprintf(w, "| contestant | Handle ns/op (min–max) | allocs/op | delivered | delivery rate | CPU/record | peak RSS | wire B/record | outage: delivered | outage: slowest call |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range contest.All {
		h, hok := r.Handle[c.Name]
		n, nok := r.Normal[c.Name]
		ps := r.NormalPS[c.Name]
		ou, ook := r.Outage[c.Name]
		if !hok && !nok && !ook {
			continue
		}
		cells := []string{"`" + c.Name + "`"}
		if hok {
			ns := fmt.Sprintf("%.0f", h.NsPerOp)
			if runs := r.HandleAll[c.Name]; len(runs) > 1 {
				lo, hi := runs[0].NsPerOp, runs[0].NsPerOp
				for _, x := range runs {
					lo, hi = min(lo, x.NsPerOp), max(hi, x.NsPerOp)
				}
				ns += fmt.Sprintf(" (%.0f–%.0f)", lo, hi)
			}
			if h.DropsPerOp > 0 {
				ns += fmt.Sprintf(" (%.0f%% dropped)", 100*h.DropsPerOp)
			}
			cells = append(cells, ns, fmt.Sprint(h.AllocsOp))
		} else {
			cells = append(cells, "–", "–")
		}
		if nok {
			delivered := fmt.Sprintf("%s (%s)", share(n.Delivered, n.Records), n.Ended)
			if !c.Ships {
				delivered = "– (local)"
			}
			cells = append(cells, delivered, rate(n.Delivered, n.Delivery), perRecord(ps.CPU, n.Delivered), mib(ps.MaxRSS))
			if c.Ships && n.Delivered > 0 {
				cells = append(cells, fmt.Sprintf("%.0f", float64(n.WireBytes)/float64(n.Delivered)))
			} else {
				cells = append(cells, "–")
			}
		} else {
			cells = append(cells, "–", "–", "–", "–", "–")
		}
		if ook {
			cells = append(cells, fmt.Sprintf("%s (%s)", share(ou.Delivered, ou.Records), ou.Ended), dur(ou.MaxCall))
		} else {
			cells = append(cells, "–", "–")
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}

	fmt.Fprintf(w, "\nTiming of the delivery runs (slowest and slow calls are logger.Info calls measured in the logging goroutines):\n\n")
	fmt.Fprintf(w, "| contestant | burst | logging rate | slowest call | calls > 1 ms | receiver CPU/record | outage: slowest call | outage: calls > 1 ms | outage: last record arrived |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range contest.All {
		n, nok := r.Normal[c.Name]
		if !nok {
			continue
		}
		cells := []string{"`" + c.Name + "`", dur(n.Burst), rate(n.Records, n.Burst), dur(n.MaxCall), fmt.Sprint(n.CallsOver1ms)}
		if rc, ok := r.ReceiverCPU["normal/"+c.Name]; ok && c.Ships && n.Delivered > 0 {
			cells = append(cells, perRecord(rc, n.Delivered))
		} else {
			cells = append(cells, "–")
		}
		if ou, ok := r.Outage[c.Name]; ok {
			after := "–"
			if ou.Delivery > 0 && ou.OutageAt > 0 {
				after = fmt.Sprintf("%s after the outage", dur(ou.Delivery-ou.OutageAt-ou.Outage))
			}
			cells = append(cells, dur(ou.MaxCall), fmt.Sprint(ou.CallsOver1ms), after)
		} else {
			cells = append(cells, "–", "–", "–")
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}

	reportSteady(w, r)

	// Drops counted vs missing, lokislog.
	fmt.Fprintf(w, "\nlokislog's own counters (after Shutdown), per delivery run:\n\n")
	fmt.Fprintf(w, "| run | delivered | missing | counted drops (by reason) | spilled | replayed | duplicates |\n|---|---:|---:|---|---:|---:|---:|\n")
	for _, kind := range []string{"normal", "outage", "steady"} {
		runs := runsOf(r, kind)
		for _, name := range lokislogs {
			x, ok := runs[name]
			if !ok || x.Lokislog == nil {
				continue
			}
			fmt.Fprintf(w, "| %s %s | %d | %d | %d %v | %d | %d | %d |\n", name, kind, x.Delivered, x.Records-x.Delivered,
				x.CountedDrops, x.Lokislog.Dropped, x.Lokislog.Spilled, x.Lokislog.Replayed, x.Duplicates)
		}
	}

	fmt.Fprintf(w, "\n## Targets (issue 4)\n\n| target | measured | ratio | result |\n|---|---|---:|---|\n")
	row := func(target, measured, ratio string, pass bool) {
		res := "FAIL"
		if pass {
			res = "PASS"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", target, measured, ratio, res)
	}
	missing := func(target, why string) { fmt.Fprintf(w, "| %s | %s | – | not measured |\n", target, why) }

	floorH, floorHOK := r.Handle[contest.JSONDiscard]
	floorN, floorNOK := r.Normal[contest.JSONDiscard]
	floorPS := r.NormalPS[contest.JSONDiscard]

	for _, name := range lokislogs {
		h, ok := r.Handle[name]
		t := fmt.Sprintf("`%s` Handle ns/op ≤ %.1f× JSONHandler(io.Discard)", name, targetHandleRatio)
		if !ok || !floorHOK {
			missing(t, "Handle benchmark skipped or failed")
			continue
		}
		ratio := h.NsPerOp / floorH.NsPerOp
		row(t, fmt.Sprintf("%.0f vs %.0f ns/op", h.NsPerOp, floorH.NsPerOp), fmt.Sprintf("%.2f×", ratio), ratio <= targetHandleRatio)
		row(fmt.Sprintf("`%s` allocs/op ≤ JSONHandler(io.Discard)", name),
			fmt.Sprintf("%d vs %d", h.AllocsOp, floorH.AllocsOp), "", h.AllocsOp <= floorH.AllocsOp)
	}
	// unlogged says, for a steady run, how many scheduled records were not
	// logged at all (the run hit its cap); "" when all were.
	unlogged := func(kind, name string) string {
		if st, ok := r.Steady[name]; kind == "steady" && ok && st.Records < st.Scheduled {
			return fmt.Sprintf(" (only %d of %d scheduled records logged: %s)", st.Records, st.Scheduled, strings.TrimPrefix(cappedNote(st), ", "))
		}
		return ""
	}
	for _, name := range []string{contest.LokislogSpill, contest.LokislogAlways} {
		for _, kind := range []string{"normal", "outage", "steady"} {
			t := fmt.Sprintf("`%s` 100%% delivered, %s run", name, kind)
			x, ok := runsOf(r, kind)[name]
			if !ok || x.Records == 0 {
				missing(t, "run skipped or failed")
				continue
			}
			un := unlogged(kind, name)
			ok, note := true, ""
			if kind == "steady" {
				ok, note = steadyRoundsHold(r, name, func(x steadyResult) (bool, string) {
					return x.Delivered == x.Records && x.Records == x.Scheduled, fmt.Sprintf("%d of %d", x.Delivered, x.Scheduled)
				})
			}
			row(t, fmt.Sprintf("%d of %d%s%s", x.Delivered, x.Records, un, note), fmt.Sprintf("%.4f", float64(x.Delivered)/float64(x.Records)),
				x.Delivered == x.Records && un == "" && ok)
		}
	}
	for _, kind := range []string{"normal", "outage", "steady"} {
		t := fmt.Sprintf("`%s` counted drops = missing, %s run", contest.LokislogMemory, kind)
		x, ok := runsOf(r, kind)[contest.LokislogMemory]
		if !ok || x.Lokislog == nil {
			missing(t, "run skipped or failed")
			continue
		}
		miss := x.Records - x.Delivered
		un := unlogged(kind, contest.LokislogMemory)
		ok, note := true, ""
		if kind == "steady" {
			ok, note = steadyRoundsHold(r, contest.LokislogMemory, func(x steadyResult) (bool, string) {
				return x.CountedDrops == x.Records-x.Delivered && x.Records == x.Scheduled,
					fmt.Sprintf("%d dropped, %d missing", x.CountedDrops, x.Scheduled-x.Delivered)
			})
		}
		row(t, fmt.Sprintf("%d dropped, %d missing (%s delivered)%s%s", x.CountedDrops, miss, share(x.Delivered, x.Records), un, note), "",
			x.CountedDrops == miss && un == "" && ok)
	}
	floorRate := 0.0
	if floorNOK && floorN.Delivery > 0 {
		floorRate = float64(floorN.Records) / floorN.Delivery.Seconds()
	}
	for _, name := range lokislogs {
		t := fmt.Sprintf("`%s` delivery rate ≥ %.1f× JSONHandler formatting rate", name, targetRateRatio)
		x, ok := r.Normal[name]
		if !ok || floorRate == 0 || x.Delivery == 0 {
			missing(t, "run skipped, failed or delivered nothing")
			continue
		}
		got := float64(x.Delivered) / x.Delivery.Seconds()
		ratio := got / floorRate
		all := x.Delivered == x.Records
		m := fmt.Sprintf("%s vs %s", rate(x.Delivered, x.Delivery), rate(floorN.Records, floorN.Delivery))
		if !all {
			m += fmt.Sprintf(" (only %s delivered)", share(x.Delivered, x.Records))
		}
		row(t, m, fmt.Sprintf("%.2f×", ratio), ratio >= targetRateRatio && all)
	}
	for _, name := range lokislogs {
		t := fmt.Sprintf("`%s` CPU per delivered record ≤ %.0f× JSONHandler(io.Discard)", name, targetCPURatio)
		x, ok := r.Normal[name]
		if !ok || !floorNOK || x.Delivered == 0 {
			missing(t, "run skipped, failed or delivered nothing")
			continue
		}
		got := float64(r.NormalPS[name].CPU) / float64(x.Delivered)
		floor := float64(floorPS.CPU) / float64(floorN.Records)
		ratio := got / floor
		row(t, fmt.Sprintf("%s vs %s", perRecord(r.NormalPS[name].CPU, x.Delivered), perRecord(floorPS.CPU, floorN.Records)),
			fmt.Sprintf("%.2f×", ratio), ratio <= targetCPURatio)
	}
	{
		t := fmt.Sprintf("`%s` peak RSS ≤ %d MiB (default settings + spool dir)", contest.LokislogSpill, targetRSS>>20)
		if ps, ok := r.NormalPS[contest.LokislogSpill]; ok && ps.MaxRSS > 0 {
			m := fmt.Sprintf("%s (floor process: %s)", mib(ps.MaxRSS), mib(floorPS.MaxRSS))
			row(t, m, fmt.Sprintf("%.2f×", float64(ps.MaxRSS)/targetRSS), ps.MaxRSS <= targetRSS)
		} else {
			missing(t, "run skipped or failed, or RSS not available on this system")
		}
	}
	for _, mode := range []string{"spill", "always"} {
		t := fmt.Sprintf("spool throughput ≥ %.0f%% of sequential write (buffer layer, Loki down, SpoolMode %q)", 100*targetSpillRatio, mode)
		x, ok := r.Spill[mode]
		sw, ok2 := r.SpillSeq[mode]
		if !ok || !ok2 || x.Time == 0 {
			missing(t, "skipped or failed")
			continue
		}
		spill := float64(x.Bytes) / x.Time.Seconds()
		seq := float64(sw.Bytes) / sw.Time.Seconds()
		m := fmt.Sprintf("%s/s vs %s/s (%s)", mib(int64(spill)), mib(int64(seq)), mib(x.Bytes))
		if rs, ss := r.SpillRates[mode], r.SpillSeqRates[mode]; len(rs) > 1 && len(ss) > 1 {
			m = fmt.Sprintf("%s/s (%.0f–%.0f) vs %s/s (%.0f–%.0f): medians of %d alternating rounds of %s",
				mib(int64(spill)), slices.Min(rs)/(1<<20), slices.Max(rs)/(1<<20),
				mib(int64(seq)), slices.Min(ss)/(1<<20), slices.Max(ss)/(1<<20), len(rs), mib(x.Bytes))
		}
		if mode == "spill" {
			row(t, m, fmt.Sprintf("%.2f×", spill/seq), spill/seq >= targetSpillRatio)
		} else {
			fmt.Fprintf(w, "| (info) %s | %s | %.2f× | INFO |\n", t, m, spill/seq)
		}
	}
	if x, ok := r.Outage[contest.LokislogSpill]; ok && r.SeqWrite != nil && x.SpillTime > 0 {
		spill := float64(x.SpillBytes) / x.SpillTime.Seconds()
		seq := float64(r.SeqWrite.Bytes) / r.SeqWrite.Time.Seconds()
		fmt.Fprintf(w, "| (info) spill throughput through Handle during the outage run (bounded by the logging rate) | %s/s vs %s/s (%s) | %.2f× | INFO |\n",
			mib(int64(spill)), mib(int64(seq)), mib(x.SpillBytes), spill/seq)
	}
	// The slowest Handle during the outage: the handler part (Enabled and
	// Handle) of the steady run's calls that overlapped the outage window
	// (the target's words), with the floor's over the same window of the
	// same schedule; the whole calls (the record built, then the handler
	// part) and the whole run's slowest call, start-up included, follow as
	// information.
	floorS, floorSOK := r.Steady[contest.JSONDiscard]
	outageRows := func(t string, of func(steadyResult) slowestCalls, target bool) {
		for _, name := range lokislogs {
			label := fmt.Sprintf(t, name)
			x, ok := r.Steady[name]
			switch {
			case !ok:
				if target {
					missing(label, "steady run skipped or failed")
				}
				continue
			case x.Outage <= 0 || x.OutageAt <= 0:
				if target {
					missing(label, "the steady run had no outage (-outage=0)")
				}
				continue
			}
			c := of(x)
			m := fmt.Sprintf("%s among the %d calls during the outage (%.2f–%.2f s of the steady run), %d > 1 ms%s",
				outageSlowest(c), x.OutageCalls, x.OutageAt.Seconds(), (x.OutageAt + x.Outage).Seconds(), c.Over1ms, gcPauses(x))
			if x.Capped {
				m += " (" + strings.TrimPrefix(cappedNote(x), ", ") + ")"
			}
			ok, rounds := steadyRoundsHold(r, name, func(x steadyResult) (bool, string) {
				return !x.Capped && x.Records == x.Scheduled, outageSlowest(of(x))
			})
			if rounds != "" {
				m = "median run: " + m + rounds
			}
			if floorSOK {
				_, fr := steadyRoundsHold(r, contest.JSONDiscard, func(x steadyResult) (bool, string) { return true, outageSlowest(of(x)) })
				m += fmt.Sprintf(" (floor, same window of the same schedule: %s, %d > 1 ms%s%s)", outageSlowest(of(floorS)), of(floorS).Over1ms, gcPauses(floorS), fr)
			}
			if st := r.Machine.Stalls; st != nil {
				m += fmt.Sprintf(" (stall probe: %s)", dur(st.Longest))
			}
			ratio := fmt.Sprintf("%.2f×", float64(c.Max)/float64(targetSlowestCall))
			if target {
				row(label, m, ratio, c.Max <= targetSlowestCall && !x.Capped && x.Records == x.Scheduled && ok)
			} else {
				fmt.Fprintf(w, "| %s | %s | %s | INFO |\n", label, m, ratio)
			}
		}
	}
	outageRows("`%s` slowest Handle during the outage ≤ "+targetSlowestCall.String(),
		func(x steadyResult) slowestCalls { return x.OutageHandle }, true)
	outageRows("(info) `%s` slowest whole logging call during the outage (the record built as logger.Info builds it, then Handle)",
		func(x steadyResult) slowestCalls { return x.OutageCall }, false)
	for _, name := range lokislogs {
		x, ok := r.Steady[name]
		if !ok || x.Outage <= 0 || x.OutageAt <= 0 {
			continue
		}
		m := fmt.Sprintf("%s (began %.2f s in), %d calls > 1 ms, p99.99 %s", dur(x.MaxCall), x.MaxCallAt.Seconds(), x.CallsOver1ms, dur(x.P9999))
		if floorSOK {
			m += fmt.Sprintf(" (floor, same schedule: %s, %d calls > 1 ms)", dur(floorS.MaxCall), floorS.CallsOver1ms)
		}
		fmt.Fprintf(w, "| (info) `%s` slowest whole logging call over the whole steady run, start-up included | %s | %.2f× | INFO |\n",
			name, m, float64(x.MaxCall)/float64(targetSlowestCall))
	}
	for _, name := range lokislogs {
		x, ok := r.Outage[name]
		if !ok {
			continue
		}
		m := fmt.Sprintf("%s, %d calls > 1 ms", dur(x.MaxCall), x.CallsOver1ms)
		if floorNOK {
			m += fmt.Sprintf(" (floor, burst without outage: %s, %d calls > 1 ms)", dur(floorN.MaxCall), floorN.CallsOver1ms)
		}
		fmt.Fprintf(w, "| (info) `%s` slowest Handle in the burst outage run (%d records as fast as possible: the cores are saturated, so this includes waiting for a CPU) | %s | %.2f× | INFO |\n",
			name, x.Records, m, float64(x.MaxCall)/float64(targetSlowestCall))
	}
	{
		t := "footprint: lokislog service ≤ +1.0 MB over slog.NewJSONHandler service (stripped)"
		base, ok1 := r.Footprint["slogjson"]
		l, ok2 := r.Footprint["lokislog"]
		if !ok1 || !ok2 {
			missing(t, "footprint skipped or failed")
		} else {
			d := l.Bytes - base.Bytes
			row(t, fmt.Sprintf("+%.2f MB (%d vs %d bytes)", float64(d)/1e6, l.Bytes, base.Bytes),
				fmt.Sprintf("%.2f×", float64(d)/targetFootprintDiff), d <= targetFootprintDiff)
			init := "none"
			if len(l.InitWork) > 0 {
				init = strings.Join(l.InitWork, ", ")
			}
			if !l.InitChecked {
				init = "could not run GODEBUG=inittrace=1"
			}
			fmt.Fprintf(w, "| (info) lokislog packages allocating at init | %s | – | INFO |\n", init)
		}
	}

	if len(r.Footprint) > 0 {
		fmt.Fprintf(w, "\nFootprint (net/http service logging one line per request, `go build -ldflags=\"-s -w\"`):\n\n")
		fmt.Fprintf(w, "| service | binary | over slog.NewJSONHandler | packages allocating at init (under the library's prefix) |\n|---|---:|---:|---:|\n")
		base := r.Footprint["slogjson"].Bytes
		for _, s := range footprintServices {
			f, ok := r.Footprint[s.name]
			if !ok {
				continue
			}
			fmt.Fprintf(w, "| `footprint/%s` | %.2f MB | %+.2f MB | %d (`%s`) |\n", s.name, float64(f.Bytes)/1e6, float64(f.Bytes-base)/1e6, len(f.InitWork), s.prefix)
		}
	}
	if r.SeqWrite != nil {
		if x, ok := r.Outage[contest.LokislogSpill]; ok {
			fmt.Fprintf(w, "\nSpill: lokislog wrote %s to its spool in %v during the outage; writing the same bytes sequentially (1 MiB writes + fsync) took %v.\n",
				mib(x.SpillBytes), x.SpillTime.Round(time.Millisecond), r.SeqWrite.Time.Round(time.Millisecond))
		}
		if x, ok := r.Outage[contest.LokislogAlways]; ok && x.SpillTime > 0 {
			fmt.Fprintf(w, "SpoolMode \"always\" wrote %s in %v during the outage (%s/s).\n", mib(x.SpillBytes),
				x.SpillTime.Round(time.Millisecond), mib(int64(float64(x.SpillBytes)/x.SpillTime.Seconds())))
		}
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "\n## Errors\n\n")
		for _, e := range r.Errors {
			fmt.Fprintf(w, "- %s\n", strings.ReplaceAll(e, "\n", "\n  "))
		}
	}
}

// slowestAt is the steady run's slowest call and when it began.
func slowestAt(x steadyResult) string {
	if x.MaxCall <= 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%.2f s)", dur(x.MaxCall), x.MaxCallAt.Seconds())
}

// outageSlowest is the slowest of calls during the outage, marked "GC"
// with that cycle's stop-the-world pauses when a garbage collection cycle
// of the child ended within gcWindow after it began (slowestCalls.GC).
func outageSlowest(c slowestCalls) string {
	if c.GC > 0 {
		return dur(c.Max) + " GC (pause " + dur(c.Pause) + ")"
	}
	return dur(c.Max)
}

// gcPauses describes the garbage collection cycles that ended in the
// outage window of a steady run and their longest stop-the-world pause.
func gcPauses(x steadyResult) string {
	if x.OutageGCCycles == 0 {
		return ", no GC cycle"
	}
	return fmt.Sprintf(", %d GC cycles (longest pause %s)", x.OutageGCCycles, dur(x.OutageGCPauseMax))
}

// steadyRoundsHold checks every steady run of name (all rounds): ok is
// whether check holds for each, note lists what check says of each, in
// order ("" with a single round).
func steadyRoundsHold(r *results, name string, check func(steadyResult) (bool, string)) (ok bool, note string) {
	runs := r.SteadyAll[name]
	ok = true
	var each []string
	for _, x := range runs {
		good, s := check(x)
		ok = ok && good
		each = append(each, s)
	}
	if len(runs) > 1 {
		note = fmt.Sprintf("; its %d runs: %s", len(runs), strings.Join(each, ", "))
	}
	return ok, note
}

// runsOf returns the delivery results of one kind of run: "normal",
// "outage" or "steady".
func runsOf(r *results, kind string) map[string]runResult {
	switch kind {
	case "outage":
		return r.Outage
	case "steady":
		m := make(map[string]runResult, len(r.Steady))
		for name, x := range r.Steady {
			m[name] = x.runResult
		}
		return m
	}
	return r.Normal
}

// reportSteady writes the table of the steady runs.
func reportSteady(w io.Writer, r *results) {
	if len(r.Steady) == 0 {
		return
	}
	var first steadyResult
	for _, x := range r.Steady {
		first = x
		break
	}
	fmt.Fprintf(w, "\n## Steady logging with an outage in the middle\n\n")
	fmt.Fprintf(w, "%d records/s in total from %d goroutines for %v (%d records, each goroutine logging every record due at each wake-up, about every millisecond)",
		first.Rate, contest.Workers, first.Steady, first.Scheduled)
	if first.Outage > 0 {
		fmt.Fprintf(w, "; the receiver answers 503 for %v from %v after the first record. The contestants without a receiver have the same window, with nothing to fail",
			first.Outage, steadyOutageAt(first.Steady, first.Outage))
	}
	fmt.Fprintf(w, ". Each call does what logger.Info does and is timed twice: whole (the record built, then Enabled and Handle) and its handler part alone (Enabled and Handle: the target's figure). The cores are not saturated, so a slow call waited on the handler (Loki, the disk, a lock) or on the garbage collector more than for a CPU. Logging stops %v after the first record whatever is left.\n\n", first.Cap)
	fmt.Fprintf(w, "| contestant | logged | logging took | behind schedule (max) | slowest call (began at) | slowest call during the outage | its Handle: slowest during the outage | calls > 1 ms (during the outage) | p99.9 | p99.99 | delivered |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range contest.All {
		runs := r.SteadyAll[c.Name]
		if len(runs) == 0 {
			if x, ok := r.Steady[c.Name]; ok {
				runs = []steadyResult{x}
			}
		}
		median := medianRound(runs)
		for i, x := range runs {
			label := "`" + c.Name + "`"
			if len(runs) > 1 {
				label += fmt.Sprintf(" run %d", i+1)
				if i == median {
					label += " (median, reported)"
				}
			}
			steadyRow(w, label, c.Ships, x)
		}
	}
}

// steadyRow writes one steady run's row.
func steadyRow(w io.Writer, label string, ships bool, x steadyResult) {
	logged := fmt.Sprint(x.Records)
	if x.Records < x.Scheduled {
		logged = fmt.Sprintf("%d of %d", x.Records, x.Scheduled)
	}
	took := dur(x.LoggingTime)
	if x.Capped {
		took += " (" + strings.TrimPrefix(cappedNote(x), ", ") + ")"
	}
	delivered := fmt.Sprintf("%s (%s)", share(x.Delivered, x.Records), x.Ended)
	if !ships {
		delivered = "– (local)"
	}
	fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %d (%d) | %s | %s | %s |\n", label, logged, took, dur(x.MaxLag),
		slowestAt(x), dur(x.OutageCall.Max), dur(x.OutageHandle.Max), x.CallsOver1ms, x.OutageCall.Over1ms, dur(x.P999), dur(x.P9999), delivered)
}

func share(n, of uint64) string {
	if of == 0 {
		return "–"
	}
	if n == of {
		return "100%"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(n)/float64(of))
}

func rate(n uint64, d time.Duration) string {
	if d <= 0 || n == 0 {
		return "–"
	}
	r := float64(n) / d.Seconds()
	switch {
	case r >= 1e6:
		return fmt.Sprintf("%.2fM/s", r/1e6)
	case r >= 1e3:
		return fmt.Sprintf("%.0fk/s", r/1e3)
	}
	return fmt.Sprintf("%.0f/s", r)
}

func perRecord(cpu time.Duration, n uint64) string {
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f ns", float64(cpu.Nanoseconds())/float64(n))
}

func mib(b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}
