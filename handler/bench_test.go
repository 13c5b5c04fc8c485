package handler

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// The issue-4 workload: a logger with two With attributes logging
// "request handled" with six attributes.
func benchLogger(h slog.Handler) *slog.Logger {
	return slog.New(h).With("env", "prod", "version", "1.4.2")
}

func logRequest(ctx context.Context, l *slog.Logger) {
	l.LogAttrs(ctx, slog.LevelInfo, "request handled",
		slog.String("method", "GET"),
		slog.String("path", "/api/v1/users/42"),
		slog.Int("status", 200),
		slog.Duration("duration", 1234567*time.Nanosecond),
		slog.String("request_id", "7f3c2a9e-1b4d-4c8e-9f0a-2d6b8e1c5a7f"),
		slog.Int("user_id", 42),
	)
}

func logRequestArgs(l *slog.Logger) {
	l.Info("request handled", "method", "GET", "path", "/api/v1/users/42", "status", 200,
		"duration", 1234567*time.Nanosecond, "request_id", "7f3c2a9e-1b4d-4c8e-9f0a-2d6b8e1c5a7f", "user_id", 42)
}

// TestHandleAllocs asserts that Handle allocates nothing in the common
// workload, for both line formats, with static labels, with a label from
// With, and with a trace context.
func TestHandleAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("skipped under -race: the race detector makes sync.Pool drop items, so allocations are not counted (run without -race)")
	}
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("1112131415161718")
	traced := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	for _, tc := range []struct {
		name string
		cfg  Config
		ctx  context.Context
	}{
		{"logfmt", Config{}, context.Background()},
		{"json", Config{Format: "json"}, context.Background()},
		{"label-from-With", Config{LabelKeys: []string{"env"}}, context.Background()},
		{"record-label", Config{LabelKeys: []string{"method"}, MetadataKeys: []string{"request_id"}}, context.Background()},
		{"trace", Config{}, traced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeSink{discard: true}
			h, err := newHandler(tc.cfg, f)
			if err != nil {
				t.Fatal(err)
			}
			hh := benchLogger(h).Handler()
			r := slog.NewRecord(time.Now(), slog.LevelInfo, "request handled", 0)
			r.AddAttrs(slog.String("method", "GET"), slog.String("path", "/api/v1/users/42"), slog.Int("status", 200),
				slog.Duration("duration", 1234567), slog.String("request_id", "7f3c2a9e"), slog.Int("user_id", 42))
			hh.Handle(tc.ctx, r) // warm the pool and the stream table
			n := testing.AllocsPerRun(200, func() {
				if err := hh.Handle(tc.ctx, r); err != nil {
					t.Fatal(err)
				}
			})
			if n != 0 {
				t.Errorf("Handle allocates %.1f times per record, want 0", n)
			}
		})
	}
}

// BenchmarkHandle compares lokislog's Handle (with a discarding sink: the
// encoding cost the caller pays) with slog.NewJSONHandler(io.Discard) on
// the same workload.
func BenchmarkHandle(b *testing.B) {
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		h    func() slog.Handler
	}{
		{"slog.JSONHandler-discard", func() slog.Handler { return slog.NewJSONHandler(io.Discard, nil) }},
		{"slog.TextHandler-discard", func() slog.Handler { return slog.NewTextHandler(io.Discard, nil) }},
		{"lokislog-logfmt", func() slog.Handler { h, _ := newHandler(Config{}, &fakeSink{discard: true}); return h }},
		{"lokislog-json", func() slog.Handler {
			h, _ := newHandler(Config{Format: "json"}, &fakeSink{discard: true})
			return h
		}},
		{"lokislog-logfmt-labels", func() slog.Handler {
			h, _ := newHandler(Config{LabelKeys: []string{"method"}, MetadataKeys: []string{"request_id"}}, &fakeSink{discard: true})
			return h
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := benchLogger(bc.h())
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					logRequest(ctx, l)
				}
			})
		})
		b.Run(bc.name+"-args", func(b *testing.B) {
			l := benchLogger(bc.h())
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					logRequestArgs(l)
				}
			})
		})
	}
}

// BenchmarkWithAttrs measures the per-request cost of logger.With.
func BenchmarkWithAttrs(b *testing.B) {
	h, _ := newHandler(Config{LabelKeys: []string{"env"}}, &fakeSink{discard: true})
	l := slog.New(h)
	b.ReportAllocs()
	for b.Loop() {
		_ = l.With("request_id", "7f3c2a9e", "env", "prod")
	}
}

// BenchmarkHandleDirect calls Handle with a prepared record, leaving out
// slog.Logger's own cost (record building, runtime.Callers).
func BenchmarkHandleDirect(b *testing.B) {
	ctx := context.Background()
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "request handled", 0)
	r.AddAttrs(slog.String("method", "GET"), slog.String("path", "/api/v1/users/42"), slog.Int("status", 200),
		slog.Duration("duration", 1234567), slog.String("request_id", "7f3c2a9e-1b4d-4c8e-9f0a-2d6b8e1c5a7f"), slog.Int("user_id", 42))
	for _, bc := range []struct {
		name string
		h    func() slog.Handler
	}{
		{"slog.JSONHandler-discard", func() slog.Handler { return slog.NewJSONHandler(io.Discard, nil) }},
		{"lokislog-logfmt", func() slog.Handler { h, _ := newHandler(Config{}, &fakeSink{discard: true}); return h }},
		{"lokislog-json", func() slog.Handler {
			h, _ := newHandler(Config{Format: "json"}, &fakeSink{discard: true})
			return h
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchLogger(bc.h()).Handler()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					h.Handle(ctx, r)
				}
			})
		})
	}
}
