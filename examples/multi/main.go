// Command multi composes lokislog with github.com/samber/slog-multi:
//
//   - fan-out: every record goes to stdout as JSON (for kubectl logs) and to
//     Loki, with slogmulti.Fanout;
//   - routing: every record goes to the main Loki tenant, and errors (level
//     ERROR and above) also to a second tenant, with slogmulti.Router.
//
// Run it:
//
//	go run ./examples/multi                                # embedded fake Loki
//	LOKI_URL=http://localhost:3100 go run ./examples/multi # a real one
//
// Both handlers take the LOKI_* variables (handler.ConfigFromEnv).
// LOKI_TENANT_ID (default "main") and LOKI_ERRORS_TENANT_ID (default
// "errors") name the tenants; LOKI_ERRORS_URL sends the errors to another
// Loki (default: LOKI_URL). With LOKI_URL unset an embedded fake Loki
// (exporter/lokitest) on 127.0.0.1 takes both.
//
// # Each destination keeps its own queue
//
// Every lokislog handler owns its buffer and its sending goroutine, and its
// Handle only encodes and queues. slog-multi calls the handlers one after
// another on the caller's goroutine, so a slow or unreachable Loki behind
// one handler never delays the records of another, nor the caller: it
// only fills its own buffer (and spool), bounded by its own
// MaxBufferBytes. Flush and Shutdown are per handler too; shut them all
// down, each within the deadline (see [shutdownAll]).
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"time"

	slogmulti "github.com/samber/slog-multi"

	"github.com/lokislog/lokislog/exporter/lokitest"
	"github.com/lokislog/lokislog/handler"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "multi:", err)
		os.Exit(1)
	}
}

// fanout sends every record to stdout (JSON) and to Loki.
func fanout(stdout io.Writer, loki slog.Handler) slog.Handler {
	return slogmulti.Fanout(
		slog.NewJSONHandler(stdout, nil),
		loki,
	)
}

// route sends every record to all and records at ERROR or above also to
// errs.
//
// Router evaluates the predicate on every record. Setting Config.Level to
// slog.LevelError on the errors handler and using slogmulti.Fanout(all,
// errs) is equivalent and cheaper: Fanout skips a handler whose Enabled is
// false.
func route(all, errs slog.Handler) slog.Handler {
	return slogmulti.Router().
		Add(all).
		Add(errs, levelAtLeast(slog.LevelError)).
		Handler()
}

// levelAtLeast is a slogmulti.Router predicate.
func levelAtLeast(lowest slog.Level) func(context.Context, slog.Record) bool {
	return func(_ context.Context, r slog.Record) bool { return r.Level >= lowest }
}

// newLogger is the example's composition: stdout JSON, plus Loki's main
// tenant for every record and the errors tenant for errors.
func newLogger(stdout io.Writer, all, errs *handler.Handler) *slog.Logger {
	return slog.New(fanout(stdout, route(all, errs)))
}

// shutdownAll shuts the handlers down concurrently, so that a slow Loki
// behind one does not eat the deadline of the others.
func shutdownAll(ctx context.Context, hs ...*handler.Handler) error {
	errs := make([]error, len(hs))
	var wg sync.WaitGroup
	for i, h := range hs {
		wg.Go(func() {
			if err := h.Shutdown(ctx); err != nil {
				errs[i] = fmt.Errorf("shutdown handler %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// configs returns the two handlers' configurations: the LOKI_* variables
// (handler.ConfigFromEnv) for both, with the errors handler's tenant and
// URL from LOKI_ERRORS_TENANT_ID and LOKI_ERRORS_URL. Two handlers cannot
// share a spool directory, so with LOKI_SPOOL_DIR each gets its own below
// it.
func configs() (all, errs handler.Config, err error) {
	all, err = handler.ConfigFromEnv()
	if err != nil {
		return all, errs, err
	}
	if all.Labels == nil {
		all.Labels = map[string]string{"service_name": "multi-demo"}
	}
	if all.TenantID == "" {
		all.TenantID = "main"
	}
	errs = all
	errs.Labels = maps.Clone(all.Labels)
	errs.TenantID = cmp.Or(os.Getenv("LOKI_ERRORS_TENANT_ID"), "errors")
	errs.URL = cmp.Or(os.Getenv("LOKI_ERRORS_URL"), all.URL)
	if all.SpoolDir != "" {
		all.SpoolDir, errs.SpoolDir = filepath.Join(all.SpoolDir, "main"), filepath.Join(all.SpoolDir, "errors")
	}
	return all, errs, nil
}

func run(ctx context.Context, stdout io.Writer) error {
	mainCfg, errorsCfg, err := configs()
	if err != nil {
		return err
	}
	var fake *lokitest.Server
	if mainCfg.URL == "" {
		if fake, err = lokitest.New(); err != nil {
			return fmt.Errorf("start embedded loki: %w", err)
		}
		defer fake.Close()
		mainCfg.URL = fake.URL()
		errorsCfg.URL = cmp.Or(errorsCfg.URL, fake.URL())
		fmt.Fprintf(stdout, "LOKI_URL not set: using the embedded fake Loki at %s\n\n", fake.URL())
	}

	mainH, err := handler.New(mainCfg)
	if err != nil {
		return err
	}
	errorsH, err := handler.New(errorsCfg)
	if err != nil {
		_ = mainH.Shutdown(ctx)
		return err
	}

	logger := newLogger(stdout, mainH, errorsH).With("version", "1.0.0")
	logger.Info("service started", "port", 8080)
	logger.Warn("cache miss rate high", "rate", 0.42)
	logger.Error("payment failed", "order_id", "ord-17", "err", "card declined")
	logger.Info("request handled", "path", "/orders", "status", 201)

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := shutdownAll(sctx, mainH, errorsH); err != nil {
		return err
	}
	if fake == nil {
		return nil
	}
	fmt.Fprintf(stdout, "\nwhat the embedded Loki received:\n%s", fake.Dump())
	return nil
}
