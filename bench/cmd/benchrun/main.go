// Command benchrun runs lokislog's whole benchmark suite and prints the
// results as markdown tables, with each target of issue 4 marked PASS or
// FAIL. Run it from the bench module:
//
//	cd bench && go run ./cmd/benchrun
//	cd bench && go run ./cmd/benchrun -records=100000 -outage=2s -steady=6s -steady-rounds=1 -benchtime=200ms -count=1   # smoke run
//
// It starts the receiver (a separate process on 127.0.0.1) and runs every
// measurement of a contestant in a child process of its own (benchrun
// re-executes itself), so that CPU time and peak RSS are per contestant.
// See README.md for what each figure means.
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lokislog/lokislog/bench/internal/contest"
	"github.com/lokislog/lokislog/bench/internal/receiver/ctl"
)

type options struct {
	records   uint64
	outage    time.Duration
	benchtime string
	count     int
	stall     time.Duration
	timeout   time.Duration
	only      string
	skip      string
	keep      bool
	dir       string
	jsonOut   string
	profile   string
	lean      bool
	spillMin  uint64
	spillRuns int
	// The steady run: o.steadyRate records per second in total for
	// o.steady, with the outage in the middle.
	steady       time.Duration
	steadyRate   uint64
	steadyRounds int
	// stallProbe is how long probeStalls runs before the contestants.
	stallProbe time.Duration

	// Child roles.
	role        string
	contestant  string
	receiverURL string
	result      string
	spoolMode   string
}

func main() {
	testing.Init() // the -role=handle child uses testing.Benchmark and -test.benchtime
	var o options
	flag.Uint64Var(&o.records, "records", 1_000_000, "records logged in each delivery run")
	flag.DurationVar(&o.outage, "outage", 10*time.Second, "how long the receiver answers 503 in the outage runs (0: no outage runs)")
	flag.StringVar(&o.benchtime, "benchtime", "1s", "run time of each Handle benchmark (as go test -benchtime)")
	flag.IntVar(&o.count, "count", 3, "runs of each Handle benchmark; the median is reported")
	flag.DurationVar(&o.stallProbe, "stall-probe", 5*time.Second, "before the contestants, read the clock in a loop for this long and report the longest gap: what the machine alone adds to a call (0: skip)")
	flag.DurationVar(&o.stall, "stall", 40*time.Second, "a delivery run ends when nothing new arrives for this long (after the outage)")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "a delivery run ends this long after it began, whatever arrived")
	flag.StringVar(&o.only, "only", "", "comma-separated contestants to run (default all; the floor "+contest.JSONDiscard+" always runs)")
	flag.StringVar(&o.skip, "skip", "", "comma-separated sections to skip: handle, delivery, outage, steady, spill, footprint")
	flag.DurationVar(&o.steady, "steady", 20*time.Second, "logging time of the steady runs, at -steady-rate with the -outage in the middle (0: no steady runs)")
	flag.Uint64Var(&o.steadyRate, "steady-rate", 20_000, "records per second, in total, that the steady runs log")
	flag.IntVar(&o.steadyRounds, "steady-rounds", 3, "steady runs of the floor and of lokislog's contestants, round robin; the run with the median slowest call during the outage is reported, every run's figures with it (the peers run once)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (child logs, spools)")
	flag.StringVar(&o.dir, "dir", "", "work directory, on the disk to measure (default: a new directory under $TMPDIR)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the raw results to this JSON `file`")
	flag.StringVar(&o.profile, "profile", "", "write CPU, heap, mutex and block profiles of the delivery, steady and spool throughput runs into this `directory` (the heap profile is taken at the end of the burst), and for the steady runs an execution trace of the seconds before the slowest call over 1ms (go tool trace)")
	flag.Uint64Var(&o.spillMin, "spill-records", 100_000, "the spool throughput runs add at least this many records (fewer stay in memory)")
	flag.IntVar(&o.spillRuns, "spill-rounds", 3, "rounds of the spool throughput measurement, each a spool run and a sequential write of the same bytes; medians are reported")
	flag.BoolVar(&o.lean, "lean", true, "run lokislog and the floor in a binary built without the peers (-tags nopeers)")
	flag.StringVar(&o.role, "role", "", "internal: receiver, handle, run, steady or spill")
	flag.StringVar(&o.contestant, "contestant", "", "internal: the contestant of a child")
	flag.StringVar(&o.receiverURL, "receiver", "", "internal: the receiver's URL")
	flag.StringVar(&o.result, "result", "", "internal: where a child writes its result")
	flag.StringVar(&o.spoolMode, "spool-mode", "spill", "internal: the spool mode of a -role=spill child")
	flag.Parse()

	var err error
	switch o.role {
	case "":
		err = run(&o)
	case "receiver":
		err = serveReceiver()
	case "handle":
		err = childHandle(&o)
	case "run":
		err = childRun(&o)
	case "steady":
		err = childSteady(&o)
	case "spill":
		err = childSpill(&o)
	default:
		err = fmt.Errorf("unknown -role %q", o.role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

// childStats is what the parent measures of a child process.
type childStats struct {
	CPU time.Duration `json:"cpu"` // user + system
	// MaxRSS is the child's peak resident set size: its own VmHWM where
	// it can read it (Linux), else getrusage's Maxrss.
	MaxRSS int64 `json:"max_rss"`
}

// results are all the measurements of one benchrun.
type results struct {
	Machine   machine                   `json:"machine"`
	Options   map[string]string         `json:"options"`
	Handle    map[string]handleResult   `json:"handle"`
	HandleAll map[string][]handleResult `json:"handle_all"`
	Normal    map[string]runResult      `json:"normal"`
	NormalPS  map[string]childStats     `json:"normal_process"`
	Outage    map[string]runResult      `json:"outage"`
	OutagePS  map[string]childStats     `json:"outage_process"`
	// Steady is the steady run (fixed rate, outage in the middle): of
	// several rounds, the one with the median slowest call during the
	// outage; SteadyAll has every round, in order.
	Steady    map[string]steadyResult   `json:"steady"`
	SteadyPS  map[string]childStats     `json:"steady_process"`
	SteadyAll map[string][]steadyResult `json:"steady_all"`
	steadyPS  map[string][]childStats
	SeqWrite  *seqWrite            `json:"seq_write,omitempty"`
	Footprint map[string]footprint `json:"footprint"`
	Errors    []string             `json:"errors"`
	// Lean is true when lokislog and the floor ran in a binary without the
	// peers' code (-tags nopeers).
	Lean bool `json:"lean"`
	// PeersLean is true when the peers ran in a binary without the
	// receiver (-tags noreceiver).
	PeersLean bool `json:"peers_lean"`
	// Spill is the buffer-layer spill throughput by spool mode, with the
	// sequential write of the same bytes.
	Spill    map[string]spillResult `json:"spill"`
	SpillSeq map[string]seqWrite    `json:"spill_seq"`
	// SpillRates and SpillSeqRates are every round's rates (bytes/s) by
	// spool mode; Spill and SpillSeq hold the median rounds.
	SpillRates    map[string][]float64 `json:"spill_rates"`
	SpillSeqRates map[string][]float64 `json:"spill_seq_rates"`
	// Elapsed is how long the whole run took.
	Elapsed time.Duration `json:"elapsed"`
	// ReceiverCPU is the receiver's CPU time during each delivery run
	// (Linux only), by "kind/contestant".
	ReceiverCPU map[string]time.Duration `json:"receiver_cpu"`
}

type parent struct {
	o      *options
	exe    string
	lean   string // benchrun built with -tags nopeers, or exe
	peers  string // benchrun built with -tags noreceiver, or exe
	work   string
	recv   *ctl.Process
	res    results
	nchild int
}

func run(o *options) error {
	_, err := runTo(o, os.Stdout)
	return err
}

// runTo runs everything o asks for and writes the report to out.
func runTo(o *options, out io.Writer) (*results, error) {
	if o.records == 0 || o.records > 1<<32 {
		return nil, errors.New("-records must be between 1 and 2^32")
	}
	if err := checkSteady(o); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	work := o.dir
	if work == "" {
		if work, err = os.MkdirTemp("", "lokislog-bench-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	if !o.keep {
		defer os.RemoveAll(work)
	}
	p := &parent{o: o, exe: exe, lean: exe, peers: exe, work: work}
	p.res = results{
		Machine: describeMachine(),
		Options: map[string]string{
			"records": fmt.Sprint(o.records), "outage": o.outage.String(), "benchtime": o.benchtime,
			"count": fmt.Sprint(o.count), "workers": fmt.Sprint(contest.Workers),
			"steady": o.steady.String(), "steady_rate": fmt.Sprint(o.steadyRate), "steady_rounds": fmt.Sprint(o.steadyRounds),
		},
		Handle: map[string]handleResult{}, HandleAll: map[string][]handleResult{},
		Normal: map[string]runResult{}, NormalPS: map[string]childStats{},
		Outage: map[string]runResult{}, OutagePS: map[string]childStats{},
		Steady: map[string]steadyResult{}, SteadyPS: map[string]childStats{},
		SteadyAll: map[string][]steadyResult{}, steadyPS: map[string][]childStats{},
		Footprint: map[string]footprint{}, ReceiverCPU: map[string]time.Duration{},
		Spill: map[string]spillResult{}, SpillSeq: map[string]seqWrite{},
		SpillRates: map[string][]float64{}, SpillSeqRates: map[string][]float64{},
	}
	started := time.Now()
	logf("work directory %s", work)

	cmd := exec.Command(exe, "-role=receiver")
	dieWithParent(cmd)
	p.recv, err = ctl.Start(cmd)
	if err != nil {
		return nil, err
	}
	defer p.recv.Close()
	logf("receiver at %s (pid %d)", p.recv.URL, cmd.Process.Pid)

	if !o.lean {
		// Everything runs in this binary.
	} else {
		// The children's binaries hold no receiver (Loki's and
		// OpenTelemetry's protobuf types, gRPC), whose code and
		// initialisation would count in every child's memory.
		if lean, err := buildChild(work, "benchrun-lean", "nopeers"); err != nil {
			p.fail("build benchrun -tags nopeers: %v; lokislog and the floor run in the full binary (with the peers' code)", err)
		} else {
			p.lean = lean
			p.res.Lean = true
		}
		if peers, err := buildChild(work, "benchrun-peers", "noreceiver"); err != nil {
			p.fail("build benchrun -tags noreceiver: %v; the peers run in the full binary (with the receiver's code)", err)
		} else {
			p.peers = peers
			p.res.PeersLean = true
		}
	}

	if o.stallProbe > 0 {
		// Before the contestants, on the machine with nothing of ours
		// running (the receiver is idle).
		st := probeStalls(o.stallProbe, time.Now)
		p.res.Machine.Stalls = &st
		logf("stall probe: %v reading the clock, longest gap %v, %d gaps over 1 ms, %d over 100 µs",
			st.Probed.Round(time.Millisecond), st.Longest, st.Over1ms, st.Over100us)
	}

	contestants := p.contestants()
	skip := splitList(o.skip)
	if !slices.Contains(skip, "handle") {
		p.handleBenches(contestants)
	}
	if !slices.Contains(skip, "delivery") {
		for _, c := range contestants {
			p.delivery(c, false)
		}
	}
	if o.outage > 0 && !slices.Contains(skip, "outage") {
		for _, c := range contestants {
			if c.Ships {
				p.delivery(c, true)
			}
		}
		if r, ok := p.res.Outage[contest.LokislogSpill]; ok && r.SpillBytes > 0 {
			sw, err := measureSeqWrite(work, r.SpillBytes)
			if err != nil {
				p.fail("sequential write: %v", err)
			} else {
				p.res.SeqWrite = &sw
				logf("sequential write: %d bytes in %v", sw.Bytes, sw.Time)
			}
		}
	}
	if o.steady > 0 && !slices.Contains(skip, "steady") {
		for round := range max(1, o.steadyRounds) {
			for _, c := range contestants {
				if round == 0 || c.Name == contest.JSONDiscard || slices.Contains(lokislogs, c.Name) {
					p.steadyRun(c, round)
				}
			}
		}
		p.steadyMedians()
	}
	if !slices.Contains(skip, "spill") {
		p.spillThroughput()
	}
	if !slices.Contains(skip, "footprint") {
		p.footprints()
	}
	p.res.Machine.LoadEnd = loadAvg()
	p.res.Elapsed = time.Since(started)
	logf("done in %v", p.res.Elapsed.Round(time.Second))

	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(p.res, "", "  ")
		if err := os.WriteFile(o.jsonOut, b, 0o644); err != nil {
			return nil, err
		}
	}
	report(out, &p.res)
	return &p.res, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func (p *parent) contestants() []contest.Contestant {
	only := splitList(p.o.only)
	var out []contest.Contestant
	for _, c := range contest.All {
		if len(only) == 0 || c.Name == contest.JSONDiscard || slices.Contains(only, c.Name) {
			out = append(out, c)
		}
	}
	return out
}

func (p *parent) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.res.Errors = append(p.res.Errors, msg)
	logf("ERROR: %s", msg)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", args...)
}

// child runs benchrun again with args, its output going to a log file in
// the work directory, and returns the result file's content and the
// process's resource usage.
func (p *parent) child(name, exe string, args ...string) ([]byte, childStats, error) {
	p.nchild++
	base := filepath.Join(p.work, fmt.Sprintf("%02d-%s", p.nchild, name))
	dir := base + ".d"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, childStats{}, err
	}
	defer os.RemoveAll(dir) // spools and files can be large
	result := base + ".json"
	logPath := base + ".log"
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, childStats{}, err
	}
	defer lf.Close()
	args = append(args, "-receiver="+p.recv.URL, "-result="+result, "-dir="+dir)
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	dieWithParent(cmd)
	err = cmd.Run()
	var cs childStats
	if ps := cmd.ProcessState; ps != nil {
		cs.CPU = ps.UserTime() + ps.SystemTime()
		cs.MaxRSS = maxRSS(ps)
	}
	if err != nil {
		return nil, cs, fmt.Errorf("%s: %v; last output:\n%s", name, err, tail(logPath, 10))
	}
	if b, err := os.ReadFile(result + rssSuffix); err == nil {
		// The child's own high-water mark (see peakRSS): Maxrss would
		// include this process's peak RSS until it started the child.
		if n, err := strconv.ParseInt(string(b), 10, 64); err == nil && n > 0 {
			cs.MaxRSS = n
		}
	}
	b, err := os.ReadFile(result)
	return b, cs, err
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// handleBenches runs the Handle benchmarks o.count times, round robin
// over the contestants so that other load on the machine hits them alike,
// and keeps each contestant's median.
func (p *parent) handleBenches(cs []contest.Contestant) {
	failed := map[string]bool{}
	for i := range p.o.count {
		for _, c := range cs {
			if failed[c.Name] {
				continue
			}
			b, _, err := p.child("handle-"+c.Name, p.binary(c), "-role=handle", "-contestant="+c.Name, "-test.benchtime="+p.o.benchtime)
			var r handleResult
			if err == nil {
				err = json.Unmarshal(b, &r)
			}
			if err != nil {
				p.fail("Handle benchmark %s: %v", c.Name, err)
				failed[c.Name] = true
				continue
			}
			logf("Handle %-18s run %d: %8.0f ns/op %3d allocs/op %6d B/op (N=%d, drops/op %.3f)",
				c.Name, i+1, r.NsPerOp, r.AllocsOp, r.BytesOp, r.N, r.DropsPerOp)
			p.res.HandleAll[c.Name] = append(p.res.HandleAll[c.Name], r)
		}
	}
	for name, runs := range p.res.HandleAll {
		if failed[name] {
			continue
		}
		sorted := slices.Clone(runs)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].NsPerOp < sorted[j].NsPerOp })
		p.res.Handle[name] = sorted[len(sorted)/2]
	}
}

func (p *parent) delivery(c contest.Contestant, outage bool) {
	kind, out := "normal", time.Duration(0)
	if outage {
		kind, out = "outage", p.o.outage
	}
	recv0, recvOK := procCPU(p.recv.Pid())
	b, cs, err := p.child(kind+"-"+c.Name, p.binary(c), "-role=run", "-contestant="+c.Name,
		fmt.Sprintf("-records=%d", p.o.records), "-outage="+out.String(),
		"-stall="+p.o.stall.String(), "-timeout="+p.o.timeout.String(), "-profile="+p.profileBase(kind+"-"+c.Name))
	if recv1, ok := procCPU(p.recv.Pid()); ok && recvOK {
		p.res.ReceiverCPU[kind+"/"+c.Name] = recv1 - recv0
	}
	if err != nil {
		p.fail("%s run %s: %v", kind, c.Name, err)
		return
	}
	var r runResult
	if err := json.Unmarshal(b, &r); err != nil {
		p.fail("%s run %s: %v", kind, c.Name, err)
		return
	}
	logf("%s %-18s delivered %d/%d (%s) burst %v delivery %v cpu %v (receiver %v) rss %.1f MiB; slowest call %v, %d calls > 1ms, %d > 100µs",
		kind, c.Name, r.Delivered, r.Records, r.Ended, r.Burst.Round(time.Millisecond), r.Delivery.Round(time.Millisecond),
		cs.CPU.Round(time.Millisecond), p.res.ReceiverCPU[kind+"/"+c.Name], float64(cs.MaxRSS)/(1<<20), r.MaxCall, r.CallsOver1ms, r.CallsOver100us)
	if r.Lokislog != nil {
		logf("  lokislog stats: enqueued %d exported %d spilled %d replayed %d dropped %v requests %d retries %d",
			r.Lokislog.Enqueued, r.Lokislog.Exported, r.Lokislog.Spilled, r.Lokislog.Replayed, r.Lokislog.Dropped,
			r.Lokislog.Requests, r.Lokislog.Retries)
	}
	if outage {
		p.res.Outage[c.Name], p.res.OutagePS[c.Name] = r, cs
	} else {
		p.res.Normal[c.Name], p.res.NormalPS[c.Name] = r, cs
	}
}

// spillThroughput measures the buffer-layer spill throughput in both
// spool modes, each followed by a sequential write of the same bytes. It
// adds at least o.spillMin records: too few stay in memory and never spill.
func (p *parent) spillThroughput() {
	n := max(p.o.records, p.o.spillMin)
	for _, mode := range []string{"spill", "always"} {
		// Alternate spool runs and sequential writes so that what else
		// runs on the machine weighs on both alike; report medians.
		var runs []spillResult
		var seqs []seqWrite
		for round := range max(p.o.spillRuns, 1) {
			b, _, err := p.child(fmt.Sprintf("spill-%s-%d", mode, round+1), p.lean, "-role=spill", "-spool-mode="+mode,
				fmt.Sprintf("-records=%d", n), "-timeout="+p.o.timeout.String(),
				"-profile="+p.profileBase(fmt.Sprintf("spill-%s-%d", mode, round+1)))
			var r spillResult
			if err == nil {
				err = json.Unmarshal(b, &r)
			}
			if err != nil {
				p.fail("spill throughput (%s): %v", mode, err)
				break
			}
			if r.Bytes == 0 || r.Time == 0 {
				p.fail("spill throughput (%s): nothing was spilled", mode)
				break
			}
			sw, err := measureSeqWrite(p.work, r.Bytes)
			if err != nil {
				p.fail("sequential write: %v", err)
				break
			}
			logf("spill (%s, buffer layer, round %d): %d bytes (%d entries) in %v; sequential write of the same bytes: %v",
				mode, round+1, r.Bytes, r.Spilled, r.Time, sw.Time)
			runs, seqs = append(runs, r), append(seqs, sw)
			p.res.SpillRates[mode] = append(p.res.SpillRates[mode], bytesPerSec(r.Bytes, r.Time))
			p.res.SpillSeqRates[mode] = append(p.res.SpillSeqRates[mode], bytesPerSec(sw.Bytes, sw.Time))
		}
		if len(runs) == 0 {
			continue
		}
		slices.SortFunc(runs, func(a, b spillResult) int {
			return cmp.Compare(bytesPerSec(a.Bytes, a.Time), bytesPerSec(b.Bytes, b.Time))
		})
		slices.SortFunc(seqs, func(a, b seqWrite) int {
			return cmp.Compare(bytesPerSec(a.Bytes, a.Time), bytesPerSec(b.Bytes, b.Time))
		})
		p.res.Spill[mode], p.res.SpillSeq[mode] = runs[len(runs)/2], seqs[len(seqs)/2]
	}
}

// bytesPerSec is n bytes per d.
func bytesPerSec(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() }

// seqWrite is this machine's sequential write throughput for the bytes
// lokislog spilled.
type seqWrite struct {
	Bytes int64         `json:"bytes"`
	Time  time.Duration `json:"time"`
}

// measureSeqWrite writes n bytes to a new file in dir in 1 MiB writes,
// fsyncs it, and returns how long that took.
func measureSeqWrite(dir string, n int64) (seqWrite, error) {
	sub, err := os.MkdirTemp(dir, "seqwrite-")
	if err != nil {
		return seqWrite{}, err
	}
	defer os.RemoveAll(sub)
	line := []byte("level=INFO msg=\"request handled\" method=GET path=/api/v1/users/42 status=200\n")
	buf := make([]byte, 1<<20)
	for i := 0; i < len(buf); i += copy(buf[i:], line) {
	}
	f, err := os.Create(filepath.Join(sub, "seq.dat"))
	if err != nil {
		return seqWrite{}, err
	}
	defer f.Close()
	start := time.Now()
	for left := n; left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		if _, err := f.Write(chunk); err != nil {
			return seqWrite{}, err
		}
		left -= int64(len(chunk))
	}
	if err := f.Sync(); err != nil {
		return seqWrite{}, err
	}
	return seqWrite{Bytes: n, Time: time.Since(start)}, nil
}

// profileBase returns the path prefix of a run's profiles, or "".
func (p *parent) profileBase(name string) string {
	if p.o.profile == "" {
		return ""
	}
	dir, err := filepath.Abs(p.o.profile)
	if err != nil {
		return ""
	}
	os.MkdirAll(dir, 0o755)
	return filepath.Join(dir, name)
}

// binary returns the executable that runs contestant c's children.
func (p *parent) binary(c contest.Contestant) string {
	if contest.IsPeer(c.Name) {
		return p.peers
	}
	return p.lean
}

// buildChild builds benchrun with the build tag tag into dir as name.
func buildChild(dir, name, tag string) (string, error) {
	mod, err := moduleDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.Command("go", "build", "-tags", tag, "-o", bin, "./cmd/benchrun")
	cmd.Dir = mod
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	return bin, nil
}
