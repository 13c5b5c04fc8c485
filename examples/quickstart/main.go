// Command quickstart shows lokislog end to end: a service logs with log/slog,
// the records are batched and pushed to Loki, and what Loki received is
// printed.
//
//	go run ./examples/quickstart                  # embedded fake Loki
//	LOKI_URL=http://localhost:3100 go run ./examples/quickstart
//
// With LOKI_URL unset it starts the embedded fake Loki (exporter/lokitest) on
// 127.0.0.1, so it runs anywhere without a server.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/lokislog/lokislog/exporter/lokitest"
	"github.com/lokislog/lokislog/handler"
)

func main() {
	if err := run(context.Background(), os.Getenv("LOKI_URL"), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url string, out io.Writer) error {
	var fake *lokitest.Server
	if url == "" {
		fake = lokitest.NewServer()
		defer fake.Close()
		url = fake.URL()
		fmt.Fprintf(out, "LOKI_URL not set: using the embedded fake Loki at %s\n\n", url)
	} else {
		fmt.Fprintf(out, "pushing to %s\n\n", url)
	}

	h, err := handler.New(handler.Config{
		URL:          url,
		Labels:       map[string]string{"service_name": "quickstart", "env": "dev"},
		LabelKeys:    []string{"http.method"},
		MetadataKeys: []string{"request_id"},
		BatchWait:    200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	logger := slog.New(h).With("version", "1.4.2")

	// HTTP request logs, as a middleware would write them.
	requests := []struct {
		method, path string
		status       int
		dur          time.Duration
	}{
		{"GET", "/users/42", 200, 3 * time.Millisecond},
		{"POST", "/orders", 201, 18 * time.Millisecond},
		{"GET", "/users/7", 404, 2 * time.Millisecond},
	}
	for i, r := range requests {
		logger.LogAttrs(ctx, slog.LevelInfo, "request handled",
			slog.Group("http", slog.String("method", r.method), slog.String("path", r.path), slog.Int("status", r.status)),
			slog.Duration("duration", r.dur),
			slog.String("request_id", fmt.Sprintf("req-%04d", i+1)),
		)
	}

	// An error inside a traced request: trace_id and span_id become
	// structured metadata.
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	tctx := trace.ContextWithSpanContext(ctx, sc)
	logger.ErrorContext(tctx, "payment failed",
		slog.Group("http", slog.String("method", "POST"), slog.String("path", "/orders/99/pay"), slog.Int("status", 502)),
		slog.Any("err", errors.New("upstream timeout after 3 retries")),
		slog.String("request_id", "req-0004"),
	)

	// Shutdown sends what is queued before the deadline.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := h.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	st := h.Stats()
	fmt.Fprintf(out, "handler stats: enqueued=%d exported=%d dropped=%d requests=%d\n\n",
		st.Enqueued, st.Exported, sum(st.Dropped), st.Requests)

	if fake == nil {
		fmt.Fprintln(out, "done: query Loki, e.g. {service_name=\"quickstart\"}")
		return nil
	}
	fmt.Fprintln(out, "what Loki received:")
	for _, s := range fake.Streams() {
		fmt.Fprintf(out, "\nstream %s (%d entries)\n", s.LabelString, len(s.Entries))
		for _, e := range s.Entries {
			fmt.Fprintf(out, "  %s  %s\n", e.Timestamp.Format(time.RFC3339Nano), e.Line)
			if len(e.Metadata) > 0 {
				fmt.Fprintf(out, "      metadata: %s\n", formatMap(e.Metadata))
			}
		}
	}
	if st.Exported != uint64(len(requests)+1) {
		return fmt.Errorf("exported %d of %d records", st.Exported, len(requests)+1)
	}
	return nil
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%s", k, m[k])
	}
	return b.String()
}
