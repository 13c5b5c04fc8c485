package handler

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/lokislog/lokislog/exporter/lokitest"
)

// BenchmarkPipeline measures Handle with the real buffer and exporter
// behind it, pushing to the fake Loki: memory only, "spill" and "always"
// spool modes, next to slog.NewJSONHandler(io.Discard) as the floor. The
// issue-4/issue-3 targets are ratios between these sub-benchmarks in one
// run: lokislog-memory ≤ 1.0× json-discard, always ≤ 1.5× spill.
func BenchmarkPipeline(b *testing.B) {
	loki := lokitest.NewServer()
	defer loki.Close()
	ctx := context.Background()
	for _, bc := range []struct {
		name string
		cfg  func(b *testing.B) *Config
	}{
		{"slog.JSONHandler-discard", nil},
		{"lokislog-memory", func(b *testing.B) *Config { return &Config{} }},
		{"lokislog-spill", func(b *testing.B) *Config { return &Config{SpoolDir: b.TempDir()} }},
		{"lokislog-always", func(b *testing.B) *Config { return &Config{SpoolDir: b.TempDir(), SpoolMode: "always"} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var h slog.Handler = slog.NewJSONHandler(io.Discard, nil)
			if bc.cfg != nil {
				cfg := bc.cfg(b)
				cfg.URL = loki.URL()
				cfg.Labels = map[string]string{"service_name": "bench"}
				cfg.MaxBufferBytes = 64 << 20
				lh, err := New(*cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer func() {
					lh.Shutdown(ctx)
					if d := lh.Stats().Dropped; len(d) != 0 {
						b.Logf("dropped: %v", d)
					}
					loki.Reset()
				}()
				h = lh
			}
			l := benchLogger(h)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					logRequest(ctx, l)
				}
			})
		})
	}
}
