package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lokislog/lokislog/bench/internal/contest"
	"github.com/lokislog/lokislog/bench/internal/workload"
	"github.com/lokislog/lokislog/buffer"
	"github.com/lokislog/lokislog/exporter"
)

// spillResult is what a -role=spill child reports: how fast lokislog's
// buffer writes to its spool while Loki is down, fed with lines already
// encoded and timestamps already taken, as the handler hands them over (so
// that the handler's work, encoding and slog's clock reading, does not
// bound the rate).
type spillResult struct {
	Mode    string `json:"mode"`
	Records uint64 `json:"records"`
	// Bytes is the spool's size when it stopped growing; Time is from the
	// first Add to the last growth seen.
	Bytes int64         `json:"bytes"`
	Time  time.Duration `json:"time"`
	// Spilled is the entries the buffer wrote to the spool.
	Spilled uint64 `json:"spilled"`
}

// downExporter fails every export as a Loki that is down does.
type downExporter struct{}

var errDown = errors.New("loki is down (benchmark)")

func (downExporter) Export(context.Context, *exporter.Batch) error { return errDown }
func (downExporter) Shutdown(context.Context) error                { return nil }

// childSpill adds o.records pre-encoded workload lines to a buffer whose
// exporter always fails, from contest.Workers goroutines, and measures the
// bytes written to the spool per second.
func childSpill(o *options) error {
	b, err := buffer.New(buffer.Config{
		Exporter:     downExporter{},
		SpoolDir:     filepath.Join(o.dir, "spool"),
		SpoolMode:    o.spoolMode,
		ErrorHandler: func(error) {},
	})
	if err != nil {
		return err
	}
	const labels = `{service_name="benchrun"}`
	var (
		wg       sync.WaitGroup
		done     atomic.Bool
		lastSize atomic.Int64
		lastAt   atomic.Int64
		sampler  = make(chan struct{})
	)
	if o.profile != "" {
		stop, err := startProfiles(o.profile)
		if err != nil {
			return err
		}
		defer stop()
	}
	start := time.Now()
	base := start.UnixNano()
	go func() { // sample the spool size every 2 ms until it is stable
		defer close(sampler)
		stableSince := time.Now()
		for {
			time.Sleep(2 * time.Millisecond)
			now := time.Now()
			if sz := b.Stats().SpoolBytes; sz > lastSize.Load() {
				lastSize.Store(sz)
				lastAt.Store(now.UnixNano())
				stableSince = now
			}
			if done.Load() && now.Sub(stableSince) > 500*time.Millisecond || now.Sub(start) > o.timeout {
				return
			}
		}
	}()
	for g := range contest.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := []byte(`level=INFO msg="request handled" service=checkout env=prod method=GET path=/api/v1/users/42 status=200 duration=1.234567ms request_id=` +
				workload.RequestID(0) + ` user_id=42`)
			idAt := len(line) - len(" user_id=42") - workload.IDLen
			for seq := uint64(g); seq < o.records; seq += contest.Workers {
				workload.PutRequestID(line[idAt:], seq) // the buffer copies the line
				// The record's time, as slog.Logger takes it before Handle:
				// not the spool's work, so not read from the clock here
				// (time.Now was a sixth of this child's CPU on this VM).
				if err := b.Add("", labels, base+int64(seq), line, nil); err != nil {
					fmt.Println("add:", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	done.Store(true)
	<-sampler
	st := b.Stats()
	res := spillResult{Mode: o.spoolMode, Records: o.records, Bytes: lastSize.Load(), Spilled: st.Spilled}
	if at := lastAt.Load(); at != 0 {
		res.Time = time.Unix(0, at).Sub(start)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	b.Shutdown(ctx) // what memory holds goes to the spool; Loki stays down
	return writeResult(o.result, res)
}
