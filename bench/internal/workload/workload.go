// Package workload is the one workload every contestant of the benchmark
// suite runs: a logger with two With attributes (service, env) logging
// "request handled" with six attributes (method, path, status, duration,
// request_id, user_id).
//
// In the delivery runs each record carries a unique request_id, built from
// the record's sequence number, so that the receiver can count distinct
// records (and duplicates) whatever the wire format: the id is found by
// its fixed prefix in the line, the labels, the structured metadata or the
// OTLP attributes.
package workload

import (
	"log/slog"
	"time"
)

// IDPrefix starts every request_id of the workload; the 12 lower-case hex
// digits after it are the record's sequence number.
const IDPrefix = "7f3c2a9e-1b4d-4c8e-9f0a-"

// IDLen is the length of a request_id.
const IDLen = len(IDPrefix) + 12

// FixedID is the request_id of the Handle benchmarks (sequence 42).
var FixedID = RequestID(42)

// Attribute values shared by every record.
const (
	Message  = "request handled"
	Method   = "GET"
	Path     = "/api/v1/users/42"
	Status   = 200
	Duration = 1234567 * time.Nanosecond
	UserID   = 42
)

const hexDigits = "0123456789abcdef"

// RequestID returns the request_id of record seq: IDPrefix followed by seq
// as 12 hex digits (seq is taken modulo 2^48). It allocates one string.
func RequestID(seq uint64) string {
	var b [IDLen]byte
	PutRequestID(b[:], seq)
	return string(b[:])
}

// PutRequestID writes the request_id of record seq into b[:IDLen], without
// allocating.
func PutRequestID(b []byte, seq uint64) {
	b = b[:IDLen]
	copy(b, IDPrefix)
	for i := IDLen - 1; i >= len(IDPrefix); i-- {
		b[i] = hexDigits[seq&0xf]
		seq >>= 4
	}
}

// ParseID finds the first request_id in b and returns its sequence number.
func ParseID(b []byte) (uint64, bool) {
	for {
		i := indexPrefix(b)
		if i < 0 {
			return 0, false
		}
		b = b[i+len(IDPrefix):]
		if seq, ok := parseHex12(b); ok {
			return seq, true
		}
	}
}

// ParseIDString is ParseID for a string.
func ParseIDString(s string) (uint64, bool) {
	for {
		i := indexPrefixString(s)
		if i < 0 {
			return 0, false
		}
		s = s[i+len(IDPrefix):]
		if seq, ok := parseHex12(s); ok {
			return seq, true
		}
	}
}

func parseHex12[T string | []byte](b T) (uint64, bool) {
	if len(b) < 12 {
		return 0, false
	}
	var seq uint64
	for i := 0; i < 12; i++ {
		c := b[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		seq = seq<<4 | uint64(d)
	}
	return seq, true
}

// NewLogger returns the workload's logger over h: slog.New(h) with the two
// With attributes service and env.
func NewLogger(h slog.Handler) *slog.Logger {
	return slog.New(h).With("service", "checkout", "env", "prod")
}

// Log logs the workload's record through l, as an application would.
func Log(l *slog.Logger, requestID string) {
	l.Info(Message,
		"method", Method,
		"path", Path,
		"status", Status,
		"duration", Duration,
		"request_id", requestID,
		"user_id", UserID,
	)
}

// Record returns the workload's record, for calling Handle directly.
func Record(requestID string) slog.Record {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, Message, 0)
	r.AddAttrs(
		slog.String("method", Method),
		slog.String("path", Path),
		slog.Int("status", Status),
		slog.Duration("duration", Duration),
		slog.String("request_id", requestID),
		slog.Int("user_id", UserID),
	)
	return r
}
