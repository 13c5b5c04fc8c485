package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// headerRequestID carries the request id in and out.
const headerRequestID = "X-Request-ID"

// maxRequestIDLen bounds a request id taken from a client; a longer one
// (or one with characters outside printable ASCII) is replaced.
const maxRequestIDLen = 128

// healthPattern is the route of the probes; its requests are logged at
// debug level, so that kubelet's probes do not fill Loki.
const healthPattern = "GET /healthz"

// logCtxKey is the context key of the request-scoped logger.
type logCtxKey struct{}

// loggerFrom returns the request's logger (with its request_id), set by
// [withRequestLogging], or fallback outside a request.
func loggerFrom(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if l, ok := ctx.Value(logCtxKey{}).(*slog.Logger); ok {
		return l
	}
	return fallback
}

// withRequestLogging wraps next so that each request
//
//   - gets a request id, from the X-Request-ID header when it is a sane
//     one, else a new random one, echoed in the response's X-Request-ID;
//   - gets a span context in its context (a child of the caller's
//     traceparent, or a new trace), so every record logged with the
//     request's context carries trace_id and span_id;
//   - gets a logger with its request_id, for handlers ([loggerFrom]);
//   - is logged exactly once when it ends, with method, path, route,
//     status, bytes, duration, request_id and user_agent: at ERROR for 5xx
//     and panics, WARN for 4xx, DEBUG for the health probe, INFO otherwise.
//
// A panic in next is logged and answered with 500 (when no header was
// sent yet); http.ErrAbortHandler is logged and passed on.
func withRequestLogging(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		reqID := r.Header.Get(headerRequestID)
		if !validRequestID(reqID) {
			reqID = newRequestID()
		}
		w.Header().Set(headerRequestID, reqID)

		ctx := trace.ContextWithSpanContext(r.Context(), serverSpanContext(r.Header))
		reqLogger := logger.With(slog.String("request_id", reqID))
		ctx = context.WithValue(ctx, logCtxKey{}, reqLogger)
		// The mux sets r2.Pattern when it routes the request.
		r2 := r.WithContext(ctx)
		sw := &statusWriter{ResponseWriter: w}

		defer func() {
			p := recover()
			var extra []slog.Attr
			if p != nil {
				extra = append(extra, slog.String("panic", fmt.Sprint(p)))
				if !sw.wroteHeader && p != http.ErrAbortHandler {
					http.Error(sw, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
				}
			}
			status := sw.status
			if p != nil && !sw.wroteHeader {
				status = http.StatusInternalServerError // aborted: the client gets no answer
			}
			if status == 0 {
				status = http.StatusOK // nothing written: net/http answers 200
			}
			level := slog.LevelInfo
			switch {
			case status >= 500 || p != nil:
				level = slog.LevelError
			case status >= 400:
				level = slog.LevelWarn
			case r2.Pattern == healthPattern:
				level = slog.LevelDebug
			}
			attrs := append([]slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", r2.Pattern),
				slog.Int("status", status),
				slog.Int64("bytes", sw.bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("user_agent", r.UserAgent()),
			}, extra...)
			reqLogger.LogAttrs(ctx, level, "request", attrs...)
			if p == http.ErrAbortHandler {
				panic(p) // net/http aborts the response quietly
			}
		}()
		next.ServeHTTP(sw, r2)
	})
}

// validRequestID reports whether a client's request id can be used as is:
// 1 to 128 printable ASCII characters without spaces.
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// newRequestID returns 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// statusWriter records the status and the body size of a response.
type statusWriter struct {
	http.ResponseWriter
	status      int // final status; 0 until one is sent
	wroteHeader bool
	bytes       int64
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader && code >= 200 { // 1xx are informational
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.status = http.StatusOK
		w.wroteHeader = true
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer
// (Flush, deadlines, hijacking).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
