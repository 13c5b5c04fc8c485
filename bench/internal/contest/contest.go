// Package contest defines the contestants of the benchmark suite (the
// handlers compared) and the Handle benchmark they all run.
package contest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/lokislog/lokislog/bench/internal/workload"
	"github.com/lokislog/lokislog/handler"
)

// Workers is the number of goroutines that log concurrently.
const Workers = 4

// Env is where a contestant sends and writes.
type Env struct {
	// ReceiverURL is the receiver's base URL (http://127.0.0.1:PORT).
	ReceiverURL string
	// Dir is a private, empty directory for files (the JSON file, the
	// spool).
	Dir string
}

// Instance is a contestant set up for one run.
type Instance struct {
	// Handler is the handler under test, without the workload's With
	// attributes.
	Handler slog.Handler
	// Flush sends what is queued and returns when it was sent (or ctx
	// ended). Nil when there is nothing to send.
	Flush func(context.Context) error
	// Close releases everything; it is called once, after Flush.
	Close func(context.Context) error
	// Lokislog is the lokislog handler, for its Stats; nil for the others.
	Lokislog *handler.Handler
	// SpoolDir is lokislog's spool directory, or "".
	SpoolDir string
}

// Contestant is one handler setup of the comparison.
type Contestant struct {
	// Name identifies the contestant (flags, benchmark names, the table).
	Name string
	// Desc says what it is, for the table.
	Desc string
	// Ships is true when it sends records to the receiver.
	Ships bool
	// New sets it up in env.
	New func(env Env) (*Instance, error)
}

// Contestant names.
const (
	JSONDiscard    = "slog-json-discard"
	JSONFile       = "slog-json-file"
	SlogLoki       = "slog-loki"
	OTel           = "otel"
	LokislogMemory = "lokislog-memory"
	LokislogSpill  = "lokislog-spill"
	LokislogAlways = "lokislog-always"
)

// All lists every contestant, the floor first. Built with the tag
// nopeers, it holds no peer (slog-loki, OpenTelemetry), and the binary none
// of their code: cmd/benchrun measures lokislog and the floor in such a
// binary, as an application using lokislog would be.
var All = slices.Concat([]Contestant{
	{Name: JSONDiscard, Desc: "slog.NewJSONHandler(io.Discard): formatting only (the floor)", New: newJSONDiscard},
	{Name: JSONFile, Desc: "slog.NewJSONHandler to a file (what a sidecar setup costs the app)", New: newJSONFile},
}, peers, []Contestant{
	{Name: LokislogMemory, Desc: "lokislog, default config, memory only", Ships: true, New: lokislogNew("", "")},
	{Name: LokislogSpill, Desc: "lokislog, default config + SpoolDir (spill mode)", Ships: true, New: lokislogNew("spool", "")},
	{Name: LokislogAlways, Desc: "lokislog, default config + SpoolDir, SpoolMode \"always\"", Ships: true, New: lokislogNew("spool", "always")},
})

// IsPeer reports whether name is a peer (a contestant absent from nopeers
// builds).
func IsPeer(name string) bool { return name == SlogLoki || name == OTel }

// ByName returns the contestant called name.
func ByName(name string) (Contestant, bool) {
	for _, c := range All {
		if c.Name == name {
			return c, true
		}
	}
	return Contestant{}, false
}

func nop(context.Context) error { return nil }

func newJSONDiscard(Env) (*Instance, error) {
	return &Instance{Handler: slog.NewJSONHandler(io.Discard, nil), Close: nop}, nil
}

func newJSONFile(env Env) (*Instance, error) {
	f, err := os.Create(filepath.Join(env.Dir, "app.log"))
	if err != nil {
		return nil, err
	}
	return &Instance{
		Handler: slog.NewJSONHandler(f, nil),
		Flush:   func(context.Context) error { return f.Sync() },
		Close:   func(context.Context) error { return f.Close() },
	}, nil
}

func lokislogNew(spool, mode string) func(Env) (*Instance, error) {
	return func(env Env) (*Instance, error) {
		cfg := handler.Config{URL: env.ReceiverURL, SpoolMode: mode}
		if spool != "" {
			cfg.SpoolDir = filepath.Join(env.Dir, spool)
		}
		h, err := handler.New(cfg)
		if err != nil {
			return nil, err
		}
		return &Instance{Handler: h, Flush: h.Flush, Close: h.Shutdown, Lokislog: h, SpoolDir: cfg.SpoolDir}, nil
	}
}

// Dropped returns the records a lokislog handler counted as dropped.
func Dropped(st handler.Stats) uint64 {
	var n uint64
	for _, v := range st.Dropped {
		n += v
	}
	return n
}

// Parallelism is the b.SetParallelism argument that makes RunParallel use
// at least Workers goroutines.
func Parallelism() int {
	p := runtime.GOMAXPROCS(0)
	return max(1, (Workers+p-1)/p)
}

// BenchHandle measures Handle of contestant c with the workload's record,
// from Workers goroutines (b.RunParallel). For lokislog it reports the
// records dropped during the benchmark as drops/op.
func BenchHandle(b *testing.B, c Contestant, env Env) {
	inst, err := c.New(env)
	if err != nil {
		b.Fatalf("%s: %v", c.Name, err)
	}
	h := workload.NewLogger(inst.Handler).Handler()
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(Parallelism())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := workload.Record(workload.FixedID)
		for pb.Next() {
			h.Handle(ctx, r)
		}
	})
	b.StopTimer()
	if inst.Lokislog != nil {
		st := inst.Lokislog.Stats()
		b.ReportMetric(float64(Dropped(st))/float64(b.N), "drops/op")
		b.ReportMetric(float64(st.Spilled)/float64(b.N), "spilled/op")
	}
	if err := Close(inst); err != nil {
		b.Errorf("%s: close: %v", c.Name, err)
	}
}

// BenchLog is BenchHandle through the Logger: logger.Info with the
// workload's arguments, as an application calls it.
func BenchLog(b *testing.B, c Contestant, env Env) {
	inst, err := c.New(env)
	if err != nil {
		b.Fatalf("%s: %v", c.Name, err)
	}
	l := workload.NewLogger(inst.Handler)
	b.ReportAllocs()
	b.SetParallelism(Parallelism())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			workload.Log(l, workload.FixedID)
		}
	})
	b.StopTimer()
	if err := Close(inst); err != nil {
		b.Errorf("%s: close: %v", c.Name, err)
	}
}

// Close flushes and closes inst within 30 s.
func Close(inst *Instance) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if inst.Flush != nil {
		if err := inst.Flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush: %w", err))
		}
	}
	if err := inst.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("close: %w", err))
	}
	return errors.Join(errs...)
}
