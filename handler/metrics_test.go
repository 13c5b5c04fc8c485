package handler

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/lokislog/lokislog/buffer"
	"github.com/lokislog/lokislog/exporter/lokitest"
)

// snapshot is one collection of a manual reader, by instrument name.
type snapshot map[string]metricdata.Metrics

func collect(t *testing.T, r *sdkmetric.ManualReader) snapshot {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	s := snapshot{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != MeterName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, MeterName)
		}
		for _, m := range sm.Metrics {
			s[m.Name] = m
		}
	}
	return s
}

// points reports the number of data points of the named instrument.
func (s snapshot) points(name string) int {
	switch d := s[name].Data.(type) {
	case metricdata.Sum[int64]:
		return len(d.DataPoints)
	case metricdata.Gauge[float64]:
		return len(d.DataPoints)
	case metricdata.Histogram[float64]:
		return len(d.DataPoints)
	}
	return 0
}

// int reports the value of the named int64 sum at the attributes kv
// (exactly), and whether there was such a point.
func (s snapshot) int(name string, kv ...attribute.KeyValue) (int64, bool) {
	d, ok := s[name].Data.(metricdata.Sum[int64])
	if !ok {
		return 0, false
	}
	want := attribute.NewSet(kv...)
	for _, p := range d.DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Value, true
		}
	}
	return 0, false
}

func (s snapshot) gauge(name string) float64 {
	d, _ := s[name].Data.(metricdata.Gauge[float64])
	if len(d.DataPoints) != 1 {
		return -1
	}
	return d.DataPoints[0].Value
}

// histCount reports the number of values recorded in the histogram with
// attributes kv.
func (s snapshot) histCount(name string, kv ...attribute.KeyValue) uint64 {
	d, _ := s[name].Data.(metricdata.Histogram[float64])
	want := attribute.NewSet(kv...)
	for _, p := range d.DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Count
		}
	}
	return 0
}

// waitMetric collects until cond holds or 20s passed.
func waitMetric(t *testing.T, r *sdkmetric.ManualReader, what string, cond func(snapshot) bool) snapshot {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := collect(t, r)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last collection: %s", what, dumpSnapshot(s))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dumpSnapshot(s snapshot) string {
	var b strings.Builder
	for name, m := range s {
		fmt.Fprintf(&b, "\n  %s %s: %+v", name, m.Unit, m.Data)
	}
	return b.String()
}

var allAsync = []string{
	MetricRecordsEnqueued, MetricRecordsExported, MetricRecordsDropped, MetricRecordsSpilled,
	MetricRecordsReplayed, MetricRecordsTruncated, MetricRecordsOverflow, MetricExportRequests,
	MetricExportRetries, MetricExportFailures, MetricExportBytes, MetricBufferSize, MetricBufferRecords,
	MetricSpoolSize, MetricSpoolRecords, MetricSpoolSegments, MetricSpoolWriteErrors, MetricStreams, MetricLag,
}

func reason(r string) attribute.KeyValue { return attribute.String("reason", r) }

// TestMetrics drives one handler with a spool through logging, an outage
// of the fake Loki, recovery, a rejected push, a truncated line, a stream
// overflow and a panicking ReplaceAttr, and checks after each step that the
// instruments that should move did.
func TestMetrics(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	loki := lokitest.NewTestServer(t)
	h, err := New(Config{
		URL: loki.URL(), MeterProvider: mp, SpoolDir: t.TempDir(),
		Labels:    map[string]string{"service_name": "metrics"},
		LabelKeys: []string{"user"}, MaxStreams: 2, MaxLineSize: 1024,
		BatchWait: 5 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond,
		MaxRetryTime: 30 * time.Millisecond, SpillAfter: 10 * time.Millisecond, SpoolSync: "never",
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == "boom" {
				panic("boom")
			}
			return a
		},
		ErrorHandler: func(error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	defer h.Shutdown(ctx)
	log := slog.New(h)

	// Before anything: every instrument reports, at zero.
	s := collect(t, reader)
	for _, name := range allAsync {
		if s.points(name) == 0 {
			t.Errorf("%s: no data point before logging", name)
		}
	}
	for _, r := range []string{buffer.ReasonBufferFull, buffer.ReasonRejected, ReasonEncodePanic} {
		if v, ok := s.int(MetricRecordsDropped, reason(r)); !ok || v != 0 {
			t.Errorf("dropped{reason=%s} = %d, %v before logging; want 0, true", r, v, ok)
		}
	}
	units := map[string]string{
		MetricRecordsEnqueued: "{record}", MetricBufferSize: "By", MetricSpoolSize: "By",
		MetricLag: "s", MetricExportRetries: "{request}", MetricExportBytes: "By",
	}
	for name, unit := range units {
		if got := s[name].Unit; got != unit {
			t.Errorf("%s: unit %q, want %q", name, got, unit)
		}
	}
	if v, _ := s.int(MetricRecordsEnqueued); v != 0 {
		t.Errorf("enqueued %d before logging", v)
	}

	// An outage: records are enqueued, retried, held (lag grows) and spilled.
	loki.FailFor(503)
	const n = 20
	for i := range n {
		log.Info("during outage", "i", i)
	}
	s = collect(t, reader)
	if v, _ := s.int(MetricRecordsEnqueued); v != n {
		t.Errorf("enqueued %d right after logging %d", v, n)
	}
	// Flush starts the push at once; it cannot finish during the outage.
	fctx, fcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_ = h.Flush(fctx)
	fcancel()
	s = waitMetric(t, reader, "retries, spill, lag and 503 durations", func(s snapshot) bool {
		retries, _ := s.int(MetricExportRetries)
		spilled, _ := s.int(MetricRecordsSpilled)
		spool, _ := s.int(MetricSpoolSize)
		return retries > 0 && spilled > 0 && spool > 0 && s.gauge(MetricLag) > 0 &&
			s.histCount(MetricExportDuration, attribute.Int("http.response.status_code", 503)) > 0
	})
	if v, _ := s.int(MetricExportFailures); v == 0 {
		t.Error("export failures 0 during the outage")
	}
	if v, _ := s.int(MetricRecordsExported); v != 0 {
		t.Errorf("exported %d during the outage", v)
	}
	if v, _ := s.int(MetricSpoolRecords); v == 0 {
		t.Error("spool records 0 after a spill")
	}
	if v, _ := s.int(MetricSpoolSegments); v == 0 {
		t.Error("spool segments 0 after a spill")
	}

	// Recovery: everything is delivered, from the spool; memory and lag
	// go back to zero.
	loki.ClearFaults()
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s = waitMetric(t, reader, "delivery after the outage", func(s snapshot) bool {
		exported, _ := s.int(MetricRecordsExported)
		return exported == n
	})
	if v, _ := s.int(MetricRecordsReplayed); v == 0 {
		t.Error("replayed 0 after delivering spilled records")
	}
	if v, _ := s.int(MetricBufferSize); v != 0 {
		t.Errorf("buffer size %d after everything was delivered", v)
	}
	if v, _ := s.int(MetricBufferRecords); v != 0 {
		t.Errorf("buffer records %d after everything was delivered", v)
	}
	if v, _ := s.int(MetricSpoolRecords); v != 0 {
		t.Errorf("spool records %d after everything was delivered", v)
	}
	if g := s.gauge(MetricLag); g != 0 {
		t.Errorf("lag %v after everything was delivered", g)
	}
	if v, _ := s.int(MetricExportRequests); v == 0 {
		t.Error("requests 0")
	}
	if v, _ := s.int(MetricExportBytes); v == 0 {
		t.Error("bytes 0")
	}
	ok2xx := s.histCount(MetricExportDuration, attribute.Int("http.response.status_code", 204)) +
		s.histCount(MetricExportDuration, attribute.Int("http.response.status_code", 200))
	if ok2xx == 0 {
		t.Errorf("no successful request in %s: %+v", MetricExportDuration, s[MetricExportDuration].Data)
	}
	if v, _ := s.int(MetricStreams); v != 1 {
		t.Errorf("streams %d, want 1", v)
	}

	// While memory holds records, buffer size is above zero.
	loki.SetDelay(500 * time.Millisecond)
	log.Info("held")
	flushed := make(chan error, 1)
	go func() { flushed <- h.Flush(ctx) }()
	waitMetric(t, reader, "buffer size while a push is slow", func(s snapshot) bool {
		v, _ := s.int(MetricBufferSize)
		r, _ := s.int(MetricBufferRecords)
		return v > 0 && r == 1
	})
	loki.SetDelay(0)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}

	// A permanent rejection drops, with its reason.
	loki.FailNext(1, 400)
	log.Info("rejected")
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, reader, "dropped{reason=rejected}", func(s snapshot) bool {
		v, _ := s.int(MetricRecordsDropped, reason(buffer.ReasonRejected))
		return v == 1
	})

	// Encoding: a truncated line, a stream overflow, a panic.
	log.Info(strings.Repeat("x", 2000))
	log.Info("stream 2", "user", "a")
	log.Info("stream 3", "user", "b")
	log.Info("panics", "boom", 1)
	s = collect(t, reader)
	if v, _ := s.int(MetricRecordsTruncated); v != 1 {
		t.Errorf("truncated %d, want 1", v)
	}
	if v, _ := s.int(MetricRecordsOverflow, attribute.String("limit", "streams")); v != 1 {
		t.Errorf("overflow{limit=streams} %d, want 1", v)
	}
	if v, _ := s.int(MetricRecordsDropped, reason(ReasonEncodePanic)); v != 1 {
		t.Errorf("dropped{reason=encode_panic} %d, want 1", v)
	}
	if v, _ := s.int(MetricStreams); v != 2 {
		t.Errorf("streams %d, want 2", v)
	}
	enq, _ := s.int(MetricRecordsEnqueued)
	if want := int64(n + 5); enq != want {
		t.Errorf("enqueued %d, want %d", enq, want)
	}

	// Shutdown unregisters the callback: no more observations.
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s = collect(t, reader)
	for _, name := range allAsync {
		if n := s.points(name); n != 0 {
			t.Errorf("%s: %d data points after Shutdown", name, n)
		}
	}
	if s.points(MetricExportDuration) == 0 {
		t.Errorf("%s lost its data at Shutdown", MetricExportDuration)
	}
}

// TestMetricsNoProvider checks that a handler without a MeterProvider
// leaves the global provider as it was (the default, which records
// nothing): nothing is installed or started globally.
func TestMetricsNoProvider(t *testing.T) {
	before := otel.GetMeterProvider()
	if got := fmt.Sprintf("%T", before); got != "*global.meterProvider" {
		t.Skipf("the global MeterProvider is %s, not the default: another test set one", got)
	}
	loki := lokitest.NewTestServer(t)
	h, err := New(Config{URL: loki.URL(), BatchWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	slog.New(h).Info("hello")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if after := otel.GetMeterProvider(); after != before {
		t.Errorf("global MeterProvider changed from %T to %T", before, after)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if after := otel.GetMeterProvider(); after != before {
		t.Errorf("global MeterProvider changed from %T to %T after Shutdown", before, after)
	}
	if st := h.Stats(); st.Exported != 1 {
		t.Errorf("exported %d, want 1", st.Exported)
	}
}

// TestMetricsGlobalProvider runs in a child process (it sets the global
// provider, which cannot be undone): a handler built without a
// MeterProvider reports through the global one once the application
// installs an SDK, and stops at Shutdown.
func TestMetricsGlobalProvider(t *testing.T) {
	if os.Getenv("LOKISLOG_TEST_GLOBAL_METRICS") != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMetricsGlobalProvider$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "LOKISLOG_TEST_GLOBAL_METRICS=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestMetricsGlobalProvider") {
			t.Fatalf("child process: %v\n%s", err, out)
		}
		return
	}
	loki := lokitest.NewTestServer(t)
	h, err := New(Config{URL: loki.URL(), BatchWait: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		slog.New(h).Info("before the SDK")
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	otel.SetMeterProvider(mp)
	s := collect(t, reader)
	if v, _ := s.int(MetricRecordsEnqueued); v != 3 {
		t.Errorf("enqueued %d through the global provider, want 3; %s", v, dumpSnapshot(s))
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := collect(t, reader).points(MetricRecordsEnqueued); n != 0 {
		t.Errorf("enqueued still reported after Shutdown (%d points)", n)
	}
}

// TestMetricsSeveralHandlers checks that two handlers on one provider
// report the sum of their counters, and that shutting one down leaves the
// other's.
func TestMetricsSeveralHandlers(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	loki := lokitest.NewTestServer(t)
	var hs []*Handler
	for range 2 {
		h, err := New(Config{URL: loki.URL(), MeterProvider: mp, BatchWait: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Shutdown(context.Background())
		hs = append(hs, h)
	}
	slog.New(hs[0]).Info("a")
	slog.New(hs[1]).Info("b")
	slog.New(hs[1]).Info("c")
	if v, _ := collect(t, reader).int(MetricRecordsEnqueued); v != 3 {
		t.Errorf("enqueued %d over two handlers, want 3", v)
	}
	if err := hs[0].Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := collect(t, reader).int(MetricRecordsEnqueued); v != 2 {
		t.Errorf("enqueued %d after the first handler's Shutdown, want 2", v)
	}
}
