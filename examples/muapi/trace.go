package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"

	"go.opentelemetry.io/otel/trace"
)

// W3C Trace Context header names (https://www.w3.org/TR/trace-context/).
const (
	headerTraceparent = "traceparent"
	headerTracestate  = "tracestate"
)

// parseTraceparent reads a W3C traceparent header value,
// "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", and returns the
// remote span context it names. It reports false for anything the
// specification says to ignore: a wrong length or layout, upper-case or
// non-hex digits, version ff, an all-zero trace or parent id, and for
// version 00 any trailing data. A later version may carry more fields
// after a '-', which are ignored, as the specification asks.
func parseTraceparent(v string) (trace.SpanContext, bool) {
	const size = 55 // len("00-") + 32 + 1 + 16 + 1 + 2
	if len(v) < size || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return trace.SpanContext{}, false
	}
	var version [1]byte
	if !decodeLowerHex(version[:], v[0:2]) || version[0] == 0xff {
		return trace.SpanContext{}, false
	}
	if len(v) > size && (version[0] == 0 || v[size] != '-') {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !decodeLowerHex(tid[:], v[3:35]) || !decodeLowerHex(sid[:], v[36:52]) || !decodeLowerHex(flags[:], v[53:55]) {
		return trace.SpanContext{}, false
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tid,
		SpanID:     sid,
		TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled, // other bits are reserved
		Remote:     true,
	})
	if !sc.IsValid() { // all-zero trace or parent id
		return trace.SpanContext{}, false
	}
	return sc, true
}

// decodeLowerHex decodes s, which must be exactly 2*len(dst) lower-case
// hex digits, into dst. The specification forbids upper case.
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

// serverSpanContext returns the span context of the request being served:
// a child of the caller's span when the request carries a valid
// traceparent header (same trace id and sampling flag, a new span id, the
// caller's tracestate), else the root of a new, sampled trace. It stands in
// for what an OpenTelemetry SDK's tracer would start, using only the trace
// API, so that every log record of the request carries trace_id and
// span_id.
func serverSpanContext(h http.Header) trace.SpanContext {
	cfg := trace.SpanContextConfig{SpanID: newSpanID(), TraceFlags: trace.FlagsSampled}
	if parent, ok := parseTraceparent(h.Get(headerTraceparent)); ok {
		cfg.TraceID = parent.TraceID()
		cfg.TraceFlags = parent.TraceFlags()
		// An invalid tracestate is dropped, as the specification asks.
		if ts, err := trace.ParseTraceState(h.Get(headerTracestate)); err == nil {
			cfg.TraceState = ts
		}
	} else {
		cfg.TraceID = newTraceID()
	}
	return trace.NewSpanContext(cfg)
}

// formatTraceparent is the traceparent header value naming sc, for
// calls this service makes downstream (and for tests).
func formatTraceparent(sc trace.SpanContext) string {
	tid, sid := sc.TraceID(), sc.SpanID()
	flags := [1]byte{byte(sc.TraceFlags())}
	return "00-" + hex.EncodeToString(tid[:]) + "-" + hex.EncodeToString(sid[:]) + "-" + hex.EncodeToString(flags[:])
}

// newTraceID returns a random, non-zero trace id.
func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	}
	return id
}

// newSpanID returns a random, non-zero span id.
func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		_, _ = rand.Read(id[:])
	}
	return id
}
