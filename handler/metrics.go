package handler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/lokislog/lokislog/buffer"
	"github.com/lokislog/lokislog/exporter"
)

// MeterName is the instrumentation scope of the handler's metrics: the
// name of the Meter it gets from Config.MeterProvider.
const MeterName = "github.com/lokislog/lokislog/handler"

// Names of the handler's metrics. See the package documentation, "Metrics".
const (
	MetricRecordsEnqueued  = "lokislog.records.enqueued"
	MetricRecordsExported  = "lokislog.records.exported"
	MetricRecordsDropped   = "lokislog.records.dropped"
	MetricRecordsSpilled   = "lokislog.records.spilled"
	MetricRecordsReplayed  = "lokislog.records.replayed"
	MetricRecordsTruncated = "lokislog.records.truncated"
	MetricRecordsOverflow  = "lokislog.records.overflow"
	MetricExportRequests   = "lokislog.export.requests"
	MetricExportRetries    = "lokislog.export.retries"
	MetricExportFailures   = "lokislog.export.failures"
	MetricExportBytes      = "lokislog.export.bytes"
	MetricExportDuration   = "lokislog.export.duration"
	MetricBufferSize       = "lokislog.buffer.size"
	MetricBufferRecords    = "lokislog.buffer.records"
	MetricSpoolSize        = "lokislog.spool.size"
	MetricSpoolRecords     = "lokislog.spool.records"
	MetricSpoolSegments    = "lokislog.spool.segments"
	MetricSpoolWriteErrors = "lokislog.spool.write_errors"
	MetricStreams          = "lokislog.streams"
	MetricLag              = "lokislog.lag"
)

// Attributes and units of the metrics.
const (
	attrReason          = "reason"
	attrLimit           = "limit"
	attrHTTPStatus      = "http.response.status_code"
	attrErrorType       = "error.type"
	errorTypeNoResponse = "no_response"

	unitRecords  = "{record}"
	unitRequests = "{request}"
	unitBatches  = "{batch}"
	unitBytes    = "By"
	unitSeconds  = "s"
	unitSegments = "{segment}"
	unitErrors   = "{error}"
	unitStreams  = "{stream}"
)

// dropReasons are the reasons always reported by lokislog.records.dropped,
// with 0 until they happen, so that rates and alerts have a series to work
// on from the start.
var dropReasons = []string{
	buffer.ReasonBufferFull, buffer.ReasonClosed, buffer.ReasonRejected, buffer.ReasonTooOld,
	buffer.ReasonSpoolFull, buffer.ReasonCorrupt, buffer.ReasonShutdown, buffer.ReasonDiskError,
	buffer.ReasonTooLarge, ReasonEncodePanic,
}

// durationBuckets are the explicit bucket bounds, in seconds, of
// lokislog.export.duration: OpenTelemetry's advice for HTTP client request
// durations, stretched to the exporter's default 10s timeout and beyond.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30}

// metrics are the handler's OpenTelemetry instruments. All but the export
// duration are asynchronous: one callback reads [Handler.Stats] when the
// application's reader collects, so logging costs nothing extra. The
// callback is registered by newMetrics and unregistered by stop (at
// Shutdown).
type metrics struct {
	// src is the handler whose Stats the callback reports; nil until New
	// has built it (the callback then observes nothing).
	src atomic.Pointer[Handler]
	reg metric.Registration

	duration      metric.Float64Histogram
	statusOpts    map[int]metric.RecordOption // read-only after newMetrics
	noResponseOpt metric.RecordOption

	enqueued, exported, dropped, spilled, replayed, truncated, overflow metric.Int64ObservableCounter
	requests, retries, failures, bytesSent, diskErrors                  metric.Int64ObservableCounter
	bufBytes, bufRecords, spoolBytes, spoolRecords, spoolSegs, streams  metric.Int64ObservableUpDownCounter
	lag                                                                 metric.Float64ObservableGauge

	reasonOpts   map[string]metric.ObserveOption // read-only after newMetrics
	overflowOpts [3]metric.ObserveOption
}

// newMetrics creates the instruments on mp's Meter (the global provider
// when mp is nil) and registers the callback.
func newMetrics(mp metric.MeterProvider) (*metrics, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	meter := mp.Meter(MeterName, metric.WithInstrumentationVersion(exporter.Version))
	m := &metrics{
		statusOpts:    make(map[int]metric.RecordOption),
		noResponseOpt: metric.WithAttributeSet(attribute.NewSet(attribute.String(attrErrorType, errorTypeNoResponse))),
		reasonOpts:    make(map[string]metric.ObserveOption, len(dropReasons)),
	}
	for _, code := range []int{200, 204, 400, 401, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504} {
		m.statusOpts[code] = metric.WithAttributeSet(attribute.NewSet(attribute.Int(attrHTTPStatus, code)))
	}
	for _, r := range dropReasons {
		m.reasonOpts[r] = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrReason, r)))
	}
	for i, l := range []string{"streams", "labels", "metadata"} {
		m.overflowOpts[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String(attrLimit, l)))
	}

	var errs []error
	var observed []metric.Observable // the instruments observe reports
	for _, c := range []struct {
		dst              *metric.Int64ObservableCounter
		name, unit, desc string
	}{
		{&m.enqueued, MetricRecordsEnqueued, unitRecords, "Records queued for sending to Loki."},
		{&m.exported, MetricRecordsExported, unitRecords, "Records Loki accepted."},
		{&m.dropped, MetricRecordsDropped, unitRecords, "Records lost, by reason."},
		{&m.spilled, MetricRecordsSpilled, unitRecords, "Records written to the on-disk spool."},
		{&m.replayed, MetricRecordsReplayed, unitRecords, "Records read back from the spool and delivered."},
		{&m.truncated, MetricRecordsTruncated, unitRecords, "Lines cut to the maximum line size."},
		{&m.overflow, MetricRecordsOverflow, unitRecords, "Records whose labels or metadata went over a limit, by limit."},
		{&m.requests, MetricExportRequests, unitRequests, "Push requests sent to Loki, retries included."},
		{&m.retries, MetricExportRetries, unitRequests, "Push requests that repeated a failed one."},
		{&m.failures, MetricExportFailures, unitBatches, "Batch pushes that returned an error: the exporter's retries ran out, or Loki rejected entries."},
		{&m.bytesSent, MetricExportBytes, unitBytes, "Request body bytes sent to Loki, compressed, retries included."},
		{&m.diskErrors, MetricSpoolWriteErrors, unitErrors, "Failed writes to the spool."},
	} {
		var err error
		*c.dst, err = meter.Int64ObservableCounter(c.name, metric.WithUnit(c.unit), metric.WithDescription(c.desc))
		errs, observed = append(errs, err), append(observed, *c.dst)
	}
	for _, c := range []struct {
		dst              *metric.Int64ObservableUpDownCounter
		name, unit, desc string
	}{
		{&m.bufBytes, MetricBufferSize, unitBytes, "Bytes of records held in memory, not yet delivered."},
		{&m.bufRecords, MetricBufferRecords, unitRecords, "Records held in memory, not yet delivered."},
		{&m.spoolBytes, MetricSpoolSize, unitBytes, "Size of the on-disk spool."},
		{&m.spoolRecords, MetricSpoolRecords, unitRecords, "Records in the spool not yet delivered."},
		{&m.spoolSegs, MetricSpoolSegments, unitSegments, "Files of the on-disk spool."},
		{&m.streams, MetricStreams, unitStreams, "Distinct label sets opened."},
	} {
		var err error
		*c.dst, err = meter.Int64ObservableUpDownCounter(c.name, metric.WithUnit(c.unit), metric.WithDescription(c.desc))
		errs, observed = append(errs, err), append(observed, *c.dst)
	}
	var err error
	m.lag, err = meter.Float64ObservableGauge(MetricLag, metric.WithUnit(unitSeconds),
		metric.WithDescription("Age of the oldest record not yet delivered; 0 when everything was delivered."))
	errs = append(errs, err)
	m.duration, err = meter.Float64Histogram(MetricExportDuration, metric.WithUnit(unitSeconds),
		metric.WithDescription("Duration of each push request to Loki; a retry is a request of its own."), metric.WithExplicitBucketBoundaries(durationBuckets...))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// The instruments were collected as they were made: listing them here
	// would be an interface conversion of code for each.
	m.reg, err = meter.RegisterCallback(m.observe, append(observed, m.lag)...)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// observe is the callback: one Stats snapshot, reported by every
// asynchronous instrument.
func (m *metrics) observe(_ context.Context, o metric.Observer) error {
	h := m.src.Load()
	if h == nil {
		return nil
	}
	st := h.Stats()
	o.ObserveInt64(m.enqueued, i64(st.Enqueued))
	o.ObserveInt64(m.exported, i64(st.Exported))
	for _, r := range dropReasons {
		o.ObserveInt64(m.dropped, i64(st.Dropped[r]), m.reasonOpts[r])
	}
	for r, n := range st.Dropped {
		if _, known := m.reasonOpts[r]; !known {
			o.ObserveInt64(m.dropped, i64(n), metric.WithAttributes(attribute.String(attrReason, r)))
		}
	}
	for i, n := range [...]uint64{st.StreamOverflow, st.LabelOverflow, st.MetadataOverflow} {
		o.ObserveInt64(m.overflow, i64(n), m.overflowOpts[i])
	}
	// One call site for the rest: each variadic interface call is code of
	// its own, and the library's footprint is a target.
	for _, c := range [...]struct {
		inst metric.Int64Observable
		v    int64
	}{
		{m.spilled, i64(st.Spilled)}, {m.replayed, i64(st.Replayed)}, {m.truncated, i64(st.Truncated)},
		{m.requests, i64(st.Requests)}, {m.retries, i64(st.Retries)}, {m.failures, i64(st.ExportErrors)},
		{m.bytesSent, i64(st.BytesSent)}, {m.diskErrors, i64(st.DiskErrors)},
		{m.bufBytes, st.BufferedBytes}, {m.bufRecords, st.BufferedEntries},
		{m.spoolBytes, st.SpoolBytes}, {m.spoolRecords, st.SpoolEntries},
		{m.spoolSegs, int64(st.SpoolSegments)}, {m.streams, int64(st.Streams)},
	} {
		o.ObserveInt64(c.inst, c.v)
	}
	o.ObserveFloat64(m.lag, st.Lag.Seconds())
	return nil
}

// recordRequest is the exporter's OnRequest hook: it records one push
// attempt in lokislog.export.duration. It runs on the goroutine that
// exports, never on the logging path.
func (m *metrics) recordRequest(status int, d time.Duration) {
	var opt metric.RecordOption
	switch o, ok := m.statusOpts[status]; {
	case ok:
		opt = o
	case status == 0:
		opt = m.noResponseOpt
	default:
		opt = metric.WithAttributes(attribute.Int(attrHTTPStatus, status))
	}
	m.duration.Record(context.Background(), d.Seconds(), opt)
}

// stop unregisters the callback: the asynchronous instruments report
// nothing afterwards. It is called once, by Shutdown.
func (m *metrics) stop() error {
	m.src.Store(nil)
	if err := m.reg.Unregister(); err != nil {
		return fmt.Errorf("unregister metrics callback: %w", err)
	}
	return nil
}

// i64 converts a counter for the metric API, saturating.
func i64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

// meteredSink is the buffer with the metrics callback, which Shutdown
// unregisters after the buffer stopped.
type meteredSink struct {
	*buffer.Buffer
	m *metrics
}

func (s meteredSink) Shutdown(ctx context.Context) error {
	err := s.Buffer.Shutdown(ctx)
	return errors.Join(err, s.m.stop())
}
