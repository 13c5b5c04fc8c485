package buffer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/spool"
)

// The chaos test drives a Buffer with several logging goroutines, random
// Flush calls and a scripted exporter whose answers follow a seeded random
// schedule, with a disk that breaks and heals, a random Shutdown deadline
// and (with a spool) a restart on the same directory. At the end it checks
// the buffer's central promise (doc.go, "Guarantees"): every entry Add
// accepted was delivered or counted exactly once in Stats.Dropped under a
// reason the mode allows, in order per stream, without duplicates beyond
// the documented ones.
//
// It runs in a synctest bubble: the buffer's 1 s timers (disk back-off,
// spiller tick, drop reports) and the exporter's delays cost no wall time.
// The spool does real file I/O, which never blocks durably, so it fits.
//
// Replay one case: go test -race -run 'TestChaos/mode=spill/seed=17$' ./buffer/
// More seeds: LOKISLOG_CHAOS_SEEDS=500 go test -run TestChaos ./buffer/
// LOKISLOG_CHAOS_DEBUG=1 logs every entry missing at the end. A seed fixes
// the configuration and every random schedule (answers, faults, writers,
// flushes); goroutine interleavings still vary, so a failing seed may need
// a few runs (-count=20) to fail again.

// chaosID names one entry: the run (process) that logged it, the writer
// goroutine, its stream and its sequence number in that stream.
type chaosID struct{ run, w, s, seq int }

func (id chaosID) String() string { return fmt.Sprintf("r%d/w%d/s%d/#%d", id.run, id.w, id.s, id.seq) }

type chaosStream struct{ run, w, s int }

// settleReasons are the reasons of entries Add accepted and that left
// without being delivered; refusal reasons are those of Adds that returned
// an error.
var (
	settleReasons  = []string{ReasonRejected, ReasonTooOld, ReasonSpoolFull, ReasonCorrupt, ReasonShutdown}
	refusalReasons = []string{ReasonBufferFull, ReasonDiskError, ReasonTooLarge, ReasonClosed}
)

// chaosParams is one seed's configuration.
type chaosParams struct {
	seed       uint64
	mode       string // "", spill, always
	writers    int
	streams    int // per writer
	adds       int // per writer and run
	maxPad     int
	bigSeq     int // sequence number of an entry larger than MaxBufferBytes; -1: none
	withMeta   bool
	cfg        Config
	diskFaults bool // a faulty filesystem (write path); else the OS one (mmap on Linux)
	cursorFail bool // the faults include cursor writes (duplicates after a restart allowed)
	// answer weights: ok, retryable, permanent, partial, slow, hang
	weights [6]int
	// memory mode: end the run with a healthy exporter and a Flush, or
	// with a Shutdown under a random deadline while the faults go on.
	memFinalHealthy      bool
	twoInFlight          bool // memory mode: an Exporter2 too (odd seeds)
	shutdownDeadline     time.Duration
	shutdownDuringAdds   bool
	diskBrokenAtShutdown bool
}

func newChaosParams(mode string, seed uint64) chaosParams {
	rng := rand.New(rand.NewPCG(seed, 0x6c6f6b69))
	p := chaosParams{seed: seed, mode: mode}
	p.writers = 2 + rng.IntN(3)
	p.streams = 1 + rng.IntN(3)
	p.adds = 100 + rng.IntN(300)
	p.maxPad = 10 + rng.IntN(150)
	p.withMeta = rng.IntN(2) == 0
	p.bigSeq = -1
	if rng.IntN(5) == 0 {
		p.bigSeq = rng.IntN(p.adds)
	}
	p.cfg = Config{
		BatchWait:         time.Duration(1+rng.IntN(10)) * time.Millisecond,
		BatchSize:         256 + rng.IntN(2048),
		RetryInterval:     time.Duration(1+rng.IntN(5)) * time.Millisecond,
		SpillAfter:        time.Duration(5+rng.IntN(50)) * time.Millisecond,
		SpoolMode:         mode,
		SpoolSync:         []string{"", "never", "never", "batch"}[rng.IntN(4)],
		SpoolSyncInterval: time.Duration(10+rng.IntN(200)) * time.Millisecond,
	}
	p.cfg.MaxBufferBytes = p.cfg.BatchSize*2 + rng.IntN(16<<10)
	if mode != "" && rng.IntN(4) == 0 {
		p.cfg.MaxSpoolBytes = int64(32<<10 + rng.IntN(96<<10))
		p.cfg.SpoolSegmentSize = int64(2<<10 + rng.IntN(14<<10))
	}
	p.diskFaults = mode != "" && rng.IntN(3) != 0
	p.cursorFail = p.diskFaults && rng.IntN(4) == 0
	p.weights = [6]int{40 + rng.IntN(40), rng.IntN(25), rng.IntN(6), rng.IntN(12), rng.IntN(15), rng.IntN(6)}
	p.memFinalHealthy = rng.IntN(2) == 0
	p.shutdownDeadline = []time.Duration{0, time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond,
		100 * time.Millisecond, 500 * time.Millisecond, 3 * time.Second}[rng.IntN(7)]
	p.shutdownDuringAdds = rng.IntN(4) == 0
	p.diskBrokenAtShutdown = p.diskFaults && rng.IntN(5) == 0
	p.twoInFlight = mode == "" && seed%2 == 1 // not drawn: the other draws stay as they were
	return p
}

// line is the entry's line: its id and a padding that depends on the id
// only, so that a delivered line can be checked byte for byte.
func (p *chaosParams) line(id chaosID) string {
	h := fnv.New32a()
	fmt.Fprint(h, id.String())
	n := int(h.Sum32() % uint32(p.maxPad))
	if id.seq == p.bigSeq && id.w == 0 {
		n = p.cfg.MaxBufferBytes + 1
	}
	return id.String() + "|" + strings.Repeat(string(rune('a'+(id.seq+id.s)%26)), n)
}

func (p *chaosParams) tenant(w, s int) string { return []string{"", "t1"}[(w+s)%2] }
func (p *chaosParams) labels(w, s int) string { return fmt.Sprintf(`{w="%d",s="%d"}`, w, s) }

func parseChaosID(line string) (chaosID, bool) {
	head, _, ok := strings.Cut(line, "|")
	if !ok {
		return chaosID{}, false
	}
	var id chaosID
	_, err := fmt.Sscanf(head, "r%d/w%d/s%d/#%d", &id.run, &id.w, &id.s, &id.seq)
	return id, err == nil
}

// chaosFS is a filesystem whose writes fail with ENOSPC while broken:
// segment files and their creation, and (with cursor) the cursor file.
type chaosFS struct {
	spool.OSFS
	broken *atomic.Bool
	cursor bool
}

func (f chaosFS) fails(name string) bool {
	if !f.broken.Load() || strings.HasSuffix(name, "LOCK") {
		return false
	}
	return f.cursor || !strings.Contains(filepath.Base(name), "cursor")
}

func (f chaosFS) OpenFile(name string, flag int, perm fs.FileMode) (spool.File, error) {
	if flag&(os.O_CREATE|os.O_WRONLY|os.O_RDWR) != 0 && f.fails(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return chaosFile{File: file, fs: f, name: name}, nil
}

type chaosFile struct {
	spool.File
	fs   chaosFS
	name string
}

func (f chaosFile) Write(p []byte) (int, error) {
	if f.fs.fails(f.name) {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

// Export answers.
const (
	ansOK = iota
	ansRetry
	ansPermanent
	ansPartial
	ansSlow
	ansHang
)

// chaosExporter answers Export calls from a seeded schedule and records
// what it accepted (a nil answer, or the delivered part of a
// *PartialError) and what it rejected.
type chaosExporter struct {
	p       *chaosParams
	run     int
	healthy atomic.Bool // every call succeeds (the end of a run)
	down    atomic.Bool // every call fails (an outage)

	mu        sync.Mutex
	rng       *rand.Rand
	calls     int
	delivered []chaosID        // in delivery order
	via       []int8           // for each of delivered: 0 through Exporter, 1 through Exporter2
	partial   map[chaosID]bool // delivered or rejected as the first part of a PartialError
	rejected  map[chaosID]int  // rejected permanently (how many times)
	bad       []string         // malformed batches
	shut      int
	shut2     int // Shutdown calls through Exporter2
}

// chaosSecond is a run's chaosExporter as its Buffer's Exporter2: what it
// delivers is marked as such (via).
type chaosSecond struct{ *chaosExporter }

func (e chaosSecond) Export(ctx context.Context, b *exporter.Batch) error {
	return e.export(ctx, b, 1)
}

func (e chaosSecond) Shutdown(context.Context) error {
	e.mu.Lock()
	e.shut2++
	e.mu.Unlock()
	return nil
}

func newChaosExporter(p *chaosParams, run int) *chaosExporter {
	return &chaosExporter{p: p, run: run, rng: rand.New(rand.NewPCG(p.seed, uint64(run))),
		partial: map[chaosID]bool{}, rejected: map[chaosID]int{}}
}

func (e *chaosExporter) Export(ctx context.Context, b *exporter.Batch) error {
	return e.export(ctx, b, 0)
}

func (e *chaosExporter) export(ctx context.Context, b *exporter.Batch, via int8) error {
	e.mu.Lock()
	e.calls++
	ans := ansOK
	if !e.healthy.Load() {
		if e.down.Load() {
			ans = ansRetry
		} else {
			total := 0
			for _, w := range e.p.weights {
				total += w
			}
			r := e.rng.IntN(total)
			for i, w := range e.p.weights {
				if r < w {
					ans = i
					break
				}
				r -= w
			}
		}
	}
	delay := time.Duration(1+e.rng.IntN(30)) * time.Millisecond
	if ans == ansHang {
		delay = time.Duration(20+e.rng.IntN(200)) * time.Millisecond
	}
	ids := e.idsLocked(b)
	n := len(ids)
	cut, rej := 0, 0
	if ans == ansPartial {
		if n < 2 {
			ans = ansOK
		} else {
			cut = 1 + e.rng.IntN(n-1) // entries [0, cut) were handled
			if e.rng.IntN(3) == 0 {
				rej = e.rng.IntN(cut + 1) // the last rej of them rejected
			}
		}
	}
	e.mu.Unlock()

	switch ans {
	case ansRetry:
		return errors.New("503 service unavailable")
	case ansHang:
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("push: %w", ctx.Err())
		case <-t.C:
			return errors.New("push: timeout")
		}
	case ansSlow:
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return fmt.Errorf("push: %w", ctx.Err())
		case <-t.C:
		}
	case ansPermanent:
		e.mu.Lock()
		for _, id := range ids {
			e.rejected[id]++
		}
		e.mu.Unlock()
		return &exporter.PermanentError{Status: 400, Reason: "chaos says no", Entries: n}
	case ansPartial:
		e.mu.Lock()
		for i, id := range ids[:cut] {
			if i < cut-rej {
				e.delivered = append(e.delivered, id)
				e.via = append(e.via, via)
				e.partial[id] = true
			} else {
				e.rejected[id]++
				e.partial[id] = true
			}
		}
		e.mu.Unlock()
		perr := &exporter.PartialError{Remaining: suffix(b, n-cut), Err: errors.New("503 after a part")}
		if rej > 0 {
			perr.Rejected = &exporter.PermanentError{Status: 400, Reason: "chaos rejects some", Entries: rej}
		}
		return perr
	}
	e.mu.Lock()
	e.delivered = append(e.delivered, ids...)
	for range ids {
		e.via = append(e.via, via)
	}
	e.mu.Unlock()
	return nil
}

// suffix returns the last k entries of b, in order, sharing b's strings
// (as an exporter's Remaining does).
func suffix(b *exporter.Batch, k int) *exporter.Batch {
	out := &exporter.Batch{Tenant: b.Tenant}
	skip := b.Len() - k
	for _, s := range b.Streams {
		if skip >= len(s.Entries) {
			skip -= len(s.Entries)
			continue
		}
		out.Streams = append(out.Streams, exporter.Stream{Labels: s.Labels, Entries: s.Entries[skip:]})
		skip = 0
	}
	return out
}

// idsLocked checks every entry of b (line, metadata, tenant and labels
// against its id) and returns their ids in order.
func (e *chaosExporter) idsLocked(b *exporter.Batch) []chaosID {
	var ids []chaosID
	for _, s := range b.Streams {
		for _, en := range s.Entries {
			id, ok := parseChaosID(en.Line)
			switch {
			case !ok:
				e.bad = append(e.bad, fmt.Sprintf("unparsable line %.60q", en.Line))
				continue
			case en.Line != e.p.line(id):
				e.bad = append(e.bad, fmt.Sprintf("%v: line changed: %.80q", id, en.Line))
			case b.Tenant != e.p.tenant(id.w, id.s) || s.Labels != e.p.labels(id.w, id.s):
				e.bad = append(e.bad, fmt.Sprintf("%v: in tenant %q stream %s", id, b.Tenant, s.Labels))
			case e.p.withMeta && (len(en.Metadata) != 1 || en.Metadata[0].Name != "id" || en.Metadata[0].Value != id.String()):
				e.bad = append(e.bad, fmt.Sprintf("%v: metadata %v", id, en.Metadata))
			}
			ids = append(ids, id)
		}
	}
	return ids
}

func (e *chaosExporter) Shutdown(context.Context) error {
	e.mu.Lock()
	e.shut++
	e.mu.Unlock()
	return nil
}

func (e *chaosExporter) deliveredSet() map[chaosID]bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[chaosID]bool, len(e.delivered))
	for _, id := range e.delivered {
		m[id] = true
	}
	return m
}

// chaosRun is what one process (Buffer) did.
type chaosRun struct {
	run                  int
	exp                  *chaosExporter
	accepted             [][]int8 // by writer, by sequence number: the stream + 1, or 0 when Add refused it
	refused              int      // Adds that returned an error
	stats                Stats
	shutErr              error
	cursorErr            bool // a cursor write failed: a restart may send acknowledged records again
	diskBrokenAtShutdown bool
	lateReports          atomic.Int32 // ErrorHandler calls after Shutdown returned
	lateErr              atomic.Value
}

type chaosHarness struct {
	run1Events map[chaosID]int // deliveries and rejections in the first run
	t          *testing.T
	p          chaosParams
	dir        string
	runs       []*chaosRun
	fail       []string
}

func (h *chaosHarness) errorf(format string, a ...any) {
	h.fail = append(h.fail, fmt.Sprintf(format, a...))
}

// settleDrops sums the reasons of accepted entries that left undelivered.
func settleDrops(s Stats) uint64 {
	var n uint64
	for _, r := range settleReasons {
		n += s.Dropped[r]
	}
	return n
}

func (h *chaosHarness) runOnce(run int, final bool) {
	t, p := h.t, &h.p
	r := &chaosRun{run: run, exp: newChaosExporter(p, run), accepted: make([][]int8, p.writers)}
	h.runs = append(h.runs, r)
	rng := rand.New(rand.NewPCG(p.seed, uint64(100+run)))
	var broken atomic.Bool
	var shutReturned atomic.Bool
	cfg := p.cfg
	cfg.Exporter = r.exp
	if p.twoInFlight {
		cfg.Exporter2 = chaosSecond{r.exp}
	}
	cfg.ErrorHandler = func(err error) {
		if shutReturned.Load() {
			r.lateReports.Add(1)
			r.lateErr.Store(err)
		}
	}
	if p.mode != "" {
		cfg.SpoolDir = h.dir
		if p.diskFaults {
			cfg.spoolFS = chaosFS{broken: &broken, cursor: p.cursorFail}
		}
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("run %d: New: %v", run, err)
	}

	stop := make(chan struct{})
	var bg sync.WaitGroup
	// Faults: the disk breaks and heals, Loki goes down and comes back.
	bg.Go(func() {
		frng := rand.New(rand.NewPCG(p.seed, uint64(200+run)))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1+frng.IntN(40)) * time.Millisecond):
			}
			if p.diskFaults {
				broken.Store(frng.IntN(3) == 0)
			}
			r.exp.down.Store(frng.IntN(6) == 0)
		}
	})
	// Writers.
	var writers sync.WaitGroup
	var progress = make([]atomic.Int64, p.writers) // Adds returned, by writer
	var refused atomic.Int64
	for w := range p.writers {
		r.accepted[w] = make([]int8, p.adds)
		wrng := rand.New(rand.NewPCG(p.seed, uint64(1000*run+w)))
		writers.Go(func() {
			for i := range p.adds {
				s := wrng.IntN(p.streams)
				id := chaosID{run: run, w: w, s: s, seq: i}
				var meta []exporter.LabelPair
				if p.withMeta {
					meta = []exporter.LabelPair{{Name: "id", Value: id.String()}}
				}
				err := b.Add(p.tenant(w, s), p.labels(w, s), time.Now().UnixNano(), []byte(p.line(id)), meta)
				switch {
				case err == nil:
					r.accepted[w][i] = int8(s + 1)
				case errors.Is(err, ErrFull), errors.Is(err, ErrTooLarge):
					refused.Add(1)
				case errors.Is(err, ErrClosed):
					refused.Add(1)
					progress[w].Store(int64(i + 1))
					return
				default:
					h.errorf("run %d: Add %v: %v", run, id, err)
				}
				progress[w].Store(int64(i + 1))
				if wrng.IntN(8) == 0 {
					time.Sleep(time.Duration(wrng.IntN(3000)) * time.Microsecond)
				}
			}
		})
	}
	// Flushes with short deadlines. A nil Flush means that everything
	// Add accepted before the call was delivered or counted.
	flushStop := make(chan struct{})
	var flusher sync.WaitGroup
	flusher.Go(func() {
		rng := rand.New(rand.NewPCG(p.seed, uint64(300+run)))
		for {
			select {
			case <-flushStop:
				return
			case <-time.After(time.Duration(2+rng.IntN(30)) * time.Millisecond):
			}
			snap := make([]int, p.writers)
			for w := range snap {
				snap[w] = int(progress[w].Load())
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1+rng.IntN(40))*time.Millisecond)
			err := b.Flush(ctx)
			cancel()
			if err != nil {
				if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrClosed) {
					h.errorf("run %d: Flush: %v", run, err)
				}
				continue
			}
			got := r.exp.deliveredSet()
			missing := 0
			for w, n := range snap {
				for i := range n {
					if s := r.accepted[w][i]; s > 0 && !got[chaosID{run, w, int(s) - 1, i}] {
						missing++
					}
				}
			}
			if st := b.Stats(); uint64(missing) > settleDrops(st) {
				h.errorf("run %d: Flush returned nil with %d entries accepted before it neither delivered nor counted (dropped %v)", run, missing, st.Dropped)
			}
		}
	})

	shutdown := func(ctx context.Context) time.Duration {
		start := time.Now()
		r.shutErr = b.Shutdown(ctx)
		shutReturned.Store(true)
		return time.Since(start)
	}
	if final {
		writers.Wait()
		close(flushStop)
		flusher.Wait()
		close(stop)
		bg.Wait()
		broken.Store(false)
		r.exp.down.Store(false)
		r.exp.healthy.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		if err := b.Flush(ctx); err != nil {
			h.errorf("run %d: final Flush with a healthy exporter and disk: %v", run, err)
		}
		cancel()
		// Everything is settled now.
		st := b.Stats()
		got := r.exp.deliveredSet()
		missing := 0
		for w := range r.accepted {
			for i, s := range r.accepted[w] {
				if s > 0 && !got[chaosID{run, w, int(s) - 1, i}] {
					missing++
				}
			}
		}
		if uint64(missing) > settleDrops(st) {
			h.errorf("run %d: after the final Flush, %d accepted entries neither delivered nor counted (dropped %v)", run, missing, st.Dropped)
		}
		if st.BufferedEntries != 0 || st.SpoolEntries != 0 {
			h.errorf("run %d: after the final Flush, %d entries in memory, %d in the spool", run, st.BufferedEntries, st.SpoolEntries)
		}
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		shutdown(ctx)
		cancel()
		if r.shutErr != nil {
			h.errorf("run %d: Shutdown after a complete Flush: %v", run, r.shutErr)
		}
	} else {
		if !p.shutdownDuringAdds {
			writers.Wait()
		} else {
			time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
		}
		close(flushStop)
		flusher.Wait()
		close(stop)
		bg.Wait()
		r.diskBrokenAtShutdown = p.diskBrokenAtShutdown
		broken.Store(p.diskBrokenAtShutdown)
		ctx, cancel := context.WithTimeout(context.Background(), p.shutdownDeadline)
		took := shutdown(ctx)
		cancel()
		writers.Wait()
		// Shutdown waits for the ErrorHandler until ctx ends and 100 ms
		// more at most (docs/DESIGN.md, "Every error reaches the
		// ErrorHandler"); the rest of its work takes no fake time.
		if limit := p.shutdownDeadline + 100*time.Millisecond + time.Millisecond; took > limit {
			h.errorf("run %d: Shutdown took %v with a deadline of %v", run, took, p.shutdownDeadline)
		}
		broken.Store(false)
	}
	r.refused = int(refused.Load())
	if b.sp != nil {
		// Not exported: read the spool's counter of failed cursor writes.
		r.cursorErr = b.sp.Stats().CleanupErrors > 0
	}
	r.stats = b.Stats()
	if r.stats.BufferedEntries != 0 || r.stats.BufferedBytes != 0 {
		h.errorf("run %d: after Shutdown memory holds %d entries, %d bytes", run, r.stats.BufferedEntries, r.stats.BufferedBytes)
	}
	if err := b.Shutdown(context.Background()); !errors.Is(err, r.shutErr) && err != r.shutErr {
		h.errorf("run %d: second Shutdown returned %v, the first %v", run, err, r.shutErr)
	}
	synctest.Wait()
	if n := r.lateReports.Load(); n > 0 {
		h.errorf("run %d: %d errors reported after Shutdown returned, the last: %v", run, n, r.lateErr.Load())
	}
	r.exp.mu.Lock()
	if r.exp.shut != 1 {
		h.errorf("run %d: exporter shut down %d times", run, r.exp.shut)
	}
	if want := map[bool]int{true: 1}[p.twoInFlight]; r.exp.shut2 != want {
		h.errorf("run %d: Exporter2 shut down %d times, want %d", run, r.exp.shut2, want)
	}
	r.exp.mu.Unlock()
}

func TestChaos(t *testing.T) {
	seeds := 24
	if v, err := strconv.Atoi(os.Getenv("LOKISLOG_CHAOS_SEEDS")); err == nil && v > 0 {
		seeds = v
	}
	for _, mode := range []string{"", SpoolSpill, SpoolAlways} {
		name := "mode=" + mode
		if mode == "" {
			name = "mode=memory"
		}
		t.Run(name, func(t *testing.T) {
			for seed := range seeds {
				t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
					runChaos(t, mode, uint64(seed))
				})
			}
		})
	}
}

// runChaos runs one seed: one process in memory mode; with a spool, a
// first process shut down under a random deadline while the faults go on,
// then a second one on the same directory that ends healthy.
func runChaos(t *testing.T, mode string, seed uint64) {
	p := newChaosParams(mode, seed)
	dir := t.TempDir()
	var h *chaosHarness
	synctest.Test(t, func(t *testing.T) {
		h = &chaosHarness{t: t, p: p, dir: dir}
		if mode == "" {
			h.runOnce(1, p.memFinalHealthy)
		} else {
			h.runOnce(1, false)
			h.runOnce(2, true)
		}
	})
	h.check()
	if len(h.fail) > 0 {
		if len(h.fail) > 20 {
			h.fail = append(h.fail[:20], fmt.Sprintf("... and %d more", len(h.fail)-20))
		}
		t.Errorf("seed %d, mode %q: %d violations (replay: go test -race -run 'TestChaos/%s/seed=%d$' ./buffer/)\n  %s\nparams: %s",
			seed, mode, len(h.fail), t.Name()[len("TestChaos/"):strings.LastIndex(t.Name(), "/")], seed,
			strings.Join(h.fail, "\n  "), p.describe())
	}
}

func (p *chaosParams) describe() string {
	c := p.cfg
	return fmt.Sprintf("writers=%d streams=%d adds=%d pad<%d big=%d meta=%v BatchWait=%v BatchSize=%d MaxBufferBytes=%d Retry=%v SpillAfter=%v "+
		"sync=%q MaxSpool=%d Segment=%d diskFaults=%v cursorFail=%v weights=%v memHealthyEnd=%v shutdown=%v duringAdds=%v diskBrokenAtShutdown=%v",
		p.writers, p.streams, p.adds, p.maxPad, p.bigSeq, p.withMeta, c.BatchWait, c.BatchSize, c.MaxBufferBytes, c.RetryInterval, c.SpillAfter,
		c.SpoolSync, c.MaxSpoolBytes, c.SpoolSegmentSize, p.diskFaults, p.cursorFail, p.weights, p.memFinalHealthy, p.shutdownDeadline,
		p.shutdownDuringAdds, p.diskBrokenAtShutdown)
}

// check compares what the runs accepted with what the exporters received
// and the counters.
func (h *chaosHarness) check() {
	p := &h.p
	delivered := map[chaosID]int{}
	deliveredIn := map[chaosID]int{} // the first run that delivered it
	rejected := map[chaosID]int{}
	rejectedIn := map[chaosID][]int{}
	partial := map[chaosID]bool{}
	var otherDrops uint64
	cursorErr := false
	h.run1Events = map[chaosID]int{}
	if len(h.runs) > 0 {
		e := h.runs[0].exp
		for _, id := range e.delivered {
			h.run1Events[id]++
		}
		for id, n := range e.rejected {
			h.run1Events[id] += n
		}
	}
	for _, r := range h.runs {
		e := r.exp
		for _, b := range e.bad {
			h.errorf("run %d: exporter got %s", r.run, b)
		}
		st := r.stats
		accepted := 0
		for w := range r.accepted {
			for _, s := range r.accepted[w] {
				if s > 0 {
					accepted++
				}
			}
		}
		if st.Enqueued != uint64(accepted) {
			h.errorf("run %d: Stats.Enqueued %d, Add accepted %d", r.run, st.Enqueued, accepted)
		}
		var refusals uint64
		for _, reason := range refusalReasons {
			refusals += st.Dropped[reason]
		}
		if refusals != uint64(r.refused) {
			h.errorf("run %d: %d Adds returned an error, %d counted (%v)", r.run, r.refused, refusals, st.Dropped)
		}
		if p.mode == "" && st.Dropped[ReasonDiskError] > 0 {
			h.errorf("run %d: disk_error drops without a disk", r.run)
		}
		if st.Exported != uint64(len(e.delivered)) {
			h.errorf("run %d: Stats.Exported %d, the exporter accepted %d", r.run, st.Exported, len(e.delivered))
		}
		rej := 0
		for id, n := range e.rejected {
			rej += n
			rejected[id] += n
			rejectedIn[id] = append(rejectedIn[id], r.run)
		}
		if st.Dropped[ReasonRejected] != uint64(rej) {
			h.errorf("run %d: %d rejected by the exporter, %d counted", r.run, rej, st.Dropped[ReasonRejected])
		}
		// Reasons the mode allows for an entry Add accepted (README,
		// "Guarantees"): memory only loses to rejections and the
		// Shutdown deadline; with a spool only to rejections and a full
		// spool (no entry is old, no file is corrupted here), and to the
		// Shutdown deadline only when the disk failed at Shutdown.
		allowed := map[string]bool{ReasonRejected: true}
		if p.mode == "" {
			allowed[ReasonShutdown] = true
		} else {
			allowed[ReasonSpoolFull] = true
			if r.diskBrokenAtShutdown {
				allowed[ReasonShutdown] = true
			}
		}
		for _, reason := range settleReasons {
			if n := st.Dropped[reason]; n > 0 && !allowed[reason] {
				h.errorf("run %d: %d entries dropped as %s, not allowed here (%v)", r.run, n, reason, st.Dropped)
			}
			if reason != ReasonRejected {
				otherDrops += st.Dropped[reason]
			}
		}
		switch {
		case p.mode == "" && (r.shutErr != nil) != (st.Dropped[ReasonShutdown] > 0):
			h.errorf("run %d: Shutdown returned %v with %d shutdown drops", r.run, r.shutErr, st.Dropped[ReasonShutdown])
		case p.mode != "" && !r.diskBrokenAtShutdown && r.shutErr != nil:
			h.errorf("run %d: Shutdown with a spool and a working disk returned %v", r.run, r.shutErr)
		}
		// Order within the run: each stream's entries first arrive in
		// the order Add saw them (one writer per stream); entries an
		// earlier run left on disk arrive before new ones of the stream.
		// With an Exporter2 (twoInFlight) that holds for what each
		// exporter delivered: the worker hands each the batches in
		// order, and a batch that failed, whichever sent it, goes again
		// alone through Exporter before the next; only the two batches
		// sent at once may arrive in either order.
		type viaStream struct {
			chaosStream
			via int8
		}
		seen := map[chaosID]bool{}
		last := map[viaStream]int{}
		newSeen := map[chaosStream]bool{}
		for i, id := range e.delivered {
			delivered[id]++
			if _, ok := deliveredIn[id]; !ok {
				deliveredIn[id] = r.run
			}
			if seen[id] {
				continue
			}
			seen[id] = true
			if deliveredIn[id] != r.run {
				continue // sent again after a restart; checked below
			}
			k := viaStream{chaosStream{id.run, id.w, id.s}, e.via[i]}
			if l, ok := last[k]; ok && id.seq <= l {
				h.errorf("run %d: %v delivered after #%d of its stream", r.run, id, l)
			}
			last[k] = id.seq
			if id.run == r.run {
				newSeen[chaosStream{0, id.w, id.s}] = true
			} else if newSeen[chaosStream{0, id.w, id.s}] {
				h.errorf("run %d: %v, left on disk by run %d, delivered after new entries of its stream", r.run, id, id.run)
			}
		}
		for id := range e.partial {
			partial[id] = true
		}
		if r.run < len(h.runs) && r.cursorErr {
			cursorErr = true
		}
	}
	// Every accepted entry: delivered, or counted once.
	missing, overcount := 0, 0
	for _, r := range h.runs {
		for w := range r.accepted {
			for i, s := range r.accepted[w] {
				if s == 0 {
					continue
				}
				id := chaosID{r.run, w, int(s) - 1, i}
				d, rj := delivered[id], rejected[id]
				switch {
				case d == 0 && rj == 0:
					missing++
					if os.Getenv("LOKISLOG_CHAOS_DEBUG") != "" {
						h.t.Logf("missing %v", id)
					}
				case (d > 0 && rj > 0 || d > 1 || rj > 1) && h.crossRunAllowed(id, partial, cursorErr):
					overcount++
				case d > 0 && rj > 0:
					h.errorf("%v delivered %d times (first in run %d) and rejected %d times (in runs %v): counted as dropped, yet delivered", id, d, deliveredIn[id], rj, rejectedIn[id])
				case rj > 1:
					h.errorf("%v rejected (and counted) %d times", id, rj)
				case d > 1:
					h.errorf("%v delivered %d times", id, d)
				}
			}
		}
	}
	for id := range delivered {
		if ok := h.wasAccepted(id); !ok {
			h.errorf("%v delivered but never accepted", id)
		}
	}
	if overcount > 0 {
		// Entries sent again after the restart (crossRunAllowed) may be
		// counted there as well.
		if uint64(missing) > otherDrops || otherDrops > uint64(missing+overcount) {
			h.errorf("%d accepted entries neither delivered nor rejected, %d counted as dropped (%d entries sent again after the restart)", missing, otherDrops, overcount)
		}
	} else if uint64(missing) != otherDrops {
		h.errorf("%d accepted entries neither delivered nor rejected, %d counted as dropped", missing, otherDrops)
	}
}

// crossRunAllowed says whether an entry of the first run may come back
// after the restart (and so be delivered, or rejected and counted, twice):
// it was in the batch in flight at the abandoned Shutdown, answered in part
// (README, "Guarantees": the batch in flight may be sent again; the
// spool's record of it is acknowledged only once it is settled), or a
// cursor write failed (docs/SPOOL.md: "A failed cursor write makes Ack
// return the error; the records ... would be sent again after a restart
// (duplicates, never loss)"). Within one run nothing is sent twice.
func (h *chaosHarness) crossRunAllowed(id chaosID, partial map[chaosID]bool, cursorErr bool) bool {
	if h.p.mode == "" || id.run != 1 || len(h.runs) < 2 {
		return false
	}
	if !cursorErr && !h.runs[0].exp.partial[id] {
		return false
	}
	return h.run1Events[id] <= 1 // once in the first run, again in the second
}

func (h *chaosHarness) wasAccepted(id chaosID) bool {
	for _, r := range h.runs {
		if r.run == id.run && id.w < len(r.accepted) && id.seq < len(r.accepted[id.w]) {
			return int(r.accepted[id.w][id.seq]) == id.s+1
		}
	}
	return false
}

// Regression tests for what TestChaos found.

// partialOnce answers the first Export with a *PartialError: the first
// deliver entries delivered, the next reject rejected, the rest Remaining.
// Later calls succeed. gate, when set, runs before the first answer.
type partialOnce struct {
	*recorder
	deliver, reject int
	gate            func()
	calls           atomic.Int32
}

func newPartialOnce(deliver, reject int, gate func()) *partialOnce {
	return &partialOnce{recorder: &recorder{}, deliver: deliver, reject: reject, gate: gate}
}

func (p *partialOnce) Export(ctx context.Context, b *exporter.Batch) error {
	if p.calls.Add(1) != 1 {
		return p.recorder.Export(ctx, b)
	}
	if p.gate != nil {
		p.gate()
	}
	p.keep(firstPart(b, suffix(b, b.Len()-p.deliver)))
	perr := &exporter.PartialError{Remaining: suffix(b, b.Len()-p.deliver-p.reject), Err: errors.New("503")}
	if p.reject > 0 {
		perr.Rejected = &exporter.PermanentError{Status: 400, Entries: p.reject}
	}
	return perr
}

// checkOnce checks that lines 0..n-1 of stream {a="b"} arrived once each,
// in order, except the rejected ones (from, from+k), which never arrive.
func checkOnce(t *testing.T, r *partialOnce, n, from, k int) {
	t.Helper()
	var want []string
	for i := range n {
		if i < from || i >= from+k {
			want = append(want, strconv.Itoa(i))
		}
	}
	if got := r.lines()[`|{a="b"}`]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// TestPartialErrorBufferedEntriesExact: after a *PartialError the entries
// delivered or rejected were still counted in Stats.BufferedEntries after
// the batch left (TestChaos mode=memory seed=12: "after the final Flush, 4
// entries in memory").
func TestPartialErrorBufferedEntriesExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPartialOnce(3, 1, nil)
		b := mustNew(t, Config{Exporter: r, RetryInterval: time.Millisecond})
		for i := range 10 {
			add(t, b, "", `{a="b"}`, strconv.Itoa(i))
		}
		if err := b.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		s := b.Stats()
		if s.BufferedEntries != 0 || s.BufferedBytes != 0 || s.Exported != 9 || s.Dropped[ReasonRejected] != 1 {
			t.Errorf("stats after Flush %+v", s)
		}
		checkOnce(t, r, 10, 3, 1)
		b.Shutdown(context.Background())
	})
}

// TestPartialErrorOfSpilledBatchNotResent: the batch in flight was spilled
// while Loki answered with a *PartialError; the worker read the whole
// record back, so the delivered part was sent twice and the rejected part
// sent (and counted) again (TestChaos mode=spill seed=3).
func TestPartialErrorOfSpilledBatchNotResent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var b *Buffer
		r := newPartialOnce(3, 2, func() {
			for b.Stats().Spilled == 0 { // the spiller writes the slow batch
				time.Sleep(10 * time.Millisecond)
			}
		})
		b = mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), SpoolMode: SpoolSpill, SpoolSync: "never",
			RetryInterval: time.Millisecond, SpillAfter: 50 * time.Millisecond})
		for i := range 10 {
			add(t, b, "", `{a="b"}`, strconv.Itoa(i))
		}
		flushAndShutdown(t, b)
		checkOnce(t, r, 10, 3, 2)
		if s := b.Stats(); s.Exported != 8 || s.Dropped[ReasonRejected] != 2 || s.SpoolEntries != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestAlwaysPartialErrorNotResent: in "always" mode a batch sent from
// memory and answered with a *PartialError made the spool the queue from
// the batch's first record, so its delivered and rejected parts were sent
// again (TestChaos mode=always seed=3).
func TestAlwaysPartialErrorNotResent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newPartialOnce(4, 3, nil)
		b := mustNew(t, Config{Exporter: r, SpoolDir: t.TempDir(), SpoolMode: SpoolAlways, SpoolSync: "never",
			RetryInterval: time.Millisecond})
		for i := range 12 {
			add(t, b, "", `{a="b"}`, strconv.Itoa(i))
		}
		flushAndShutdown(t, b)
		checkOnce(t, r, 12, 4, 3)
		if s := b.Stats(); s.Exported != 9 || s.Dropped[ReasonRejected] != 3 || s.SpoolEntries != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// TestAlwaysEntryOverMemoryBoundOnDisk: in "always" mode an entry larger
// than MaxBufferBytes was written to the spool, then refused with
// ErrTooLarge and counted too_large, and yet delivered from the spool
// later (TestChaos mode=always seed=26: "delivered but never accepted").
// On disk already, it is accepted and sent from the spool.
func TestAlwaysEntryOverMemoryBoundOnDisk(t *testing.T) {
	dir := t.TempDir()
	// The first push fails: the spool becomes the queue and is read from
	// its first record not released.
	r := &recorder{fail: func(n int, _ *exporter.Batch) error {
		if n == 1 {
			return errors.New("503")
		}
		return nil
	}}
	b := mustNew(t, Config{Exporter: r, SpoolDir: dir, SpoolMode: SpoolAlways, MaxBufferBytes: 1000, RetryInterval: time.Millisecond})
	big := strings.Repeat("x", 2000)
	err := b.Add("", `{a="b"}`, time.Now().UnixNano(), []byte(big), nil)
	add(t, b, "", `{a="b"}`, "small")
	if err := b.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Shutdown(context.Background())
	// What the first process left on disk comes with the second.
	r2 := &recorder{}
	b2 := mustNew(t, Config{Exporter: r2, SpoolDir: dir})
	b2.Flush(context.Background())
	b2.Shutdown(context.Background())
	n := 0
	for _, rr := range []*recorder{r, r2} {
		for _, l := range rr.lines()[`|{a="b"}`] {
			if l == big {
				n++
			}
		}
	}
	tooLarge := b.Stats().Dropped[ReasonTooLarge]
	if err != nil && (n != 0 || tooLarge != 1) || err == nil && (n != 1 || tooLarge != 0) {
		t.Fatalf("Add returned %v; delivered %d times, counted too_large %d times", err, n, tooLarge)
	}
}

// TestShutdownCountsHeldRecordsOfDeletedSegments: the worker held a batch
// read from the spool (Loki down) when a full spool deleted its segment;
// the spool leaves read records to the reader, and at Shutdown they were
// neither on disk nor counted (TestChaos mode=always seed=18: "2332
// accepted entries neither delivered nor rejected, 2330 counted").
func TestShutdownCountsHeldRecordsOfDeletedSegments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		var down atomic.Bool
		down.Store(true)
		b := mustNew(t, Config{Exporter: &recorder{fail: switchable(&down)}, SpoolDir: dir, SpoolMode: SpoolAlways,
			SpoolSync: "never", MaxSpoolBytes: 8 << 10, SpoolSegmentSize: 1 << 10, RetryInterval: time.Hour})
		const n = 400
		for i := range 10 {
			add(t, b, "", `{a="b"}`, strconv.Itoa(i))
		}
		// The worker reads the first records and holds them: Loki is down.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		b.Flush(ctx)
		cancel()
		synctest.Wait()
		for i := 10; i < n; i++ {
			add(t, b, "", `{a="b"}`, fmt.Sprintf("%d-%s", i, strings.Repeat("z", 40)))
		}
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
		b.Shutdown(ctx)
		cancel()
		r2 := &recorder{}
		b2 := mustNew(t, Config{Exporter: r2, SpoolDir: dir, SpoolSync: "never", MaxSpoolBytes: 8 << 10, SpoolSegmentSize: 1 << 10})
		if err := b2.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		b2.Shutdown(context.Background())
		s1, s2 := b.Stats(), b2.Stats()
		delivered := uint64(r2.count())
		if s1.Dropped[ReasonSpoolFull] == 0 {
			t.Fatalf("the spool never filled: %+v", s1)
		}
		if got := delivered + s1.Dropped[ReasonSpoolFull] + s2.Dropped[ReasonSpoolFull]; got != n {
			t.Fatalf("%d delivered + %d + %d counted spool_full = %d, want %d", delivered,
				s1.Dropped[ReasonSpoolFull], s2.Dropped[ReasonSpoolFull], got, n)
		}
	})
}
