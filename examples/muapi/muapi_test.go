package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/lokislog/lokislog/exporter/lokitest"
	"github.com/lokislog/lokislog/handler"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	parentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpanID  = "00f067aa0ba902b7"
	traceparent   = "00-" + parentTraceID + "-" + parentSpanID + "-01"
)

var (
	hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)
	hex16 = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// newLokiHandler returns the real handler pushing JSON lines to a fresh
// fake Loki, shut down when the test ends.
func newLokiHandler(t *testing.T) (*handler.Handler, *lokitest.Server) {
	t.Helper()
	loki := lokitest.NewTestServer(t)
	h, err := handler.New(handler.Config{
		URL:          loki.URL(),
		Labels:       map[string]string{"service_name": "mu-api"},
		MetadataKeys: []string{"request_id"},
		Format:       "json",
		ErrorHandler: func(error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("handler shutdown: %v", err)
		}
	})
	return h, loki
}

// flushed flushes h and returns what the fake Loki stored.
func flushed(t *testing.T, h *handler.Handler, loki *lokitest.Server) []lokitest.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return loki.Entries()
}

// fields decodes a JSON line.
func fields(t *testing.T, e lokitest.Entry) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(e.Line), &m); err != nil {
		t.Fatalf("line %q: %v", e.Line, err)
	}
	return m
}

// serve sends one request to h and returns the response.
func serve(h http.Handler, method, target, body string, header map[string]string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandlers(t *testing.T) {
	srv := withRequestLogging(slog.New(slog.DiscardHandler), newAPI(slog.New(slog.DiscardHandler)).routes())
	tests := []struct {
		name         string
		method, path string
		body         string
		wantStatus   int
		wantBody     string // substring
		wantLocation string
	}{
		{"health", "GET", "/healthz", "", 200, "ok", ""},
		{"user", "GET", "/users/1", "", 200, `{"id":1,"name":"Ada Lovelace"}`, ""},
		{"user not found", "GET", "/users/999", "", 404, `"user 999 not found"`, ""},
		{"user id not a number", "GET", "/users/abc", "", 400, "positive integer", ""},
		{"user id zero", "GET", "/users/0", "", 400, "positive integer", ""},
		{"user id overflows", "GET", "/users/99999999999999999999", "", 400, "positive integer", ""},
		{"order", "POST", "/orders", `{"user_id":2,"item":"book","quantity":3}`, 201, `"id":"ord-000001","user_id":2,"item":"book","quantity":3`, "/orders/ord-000001"},
		{"order bad json", "POST", "/orders", `{"user_id":`, 400, "invalid JSON", ""},
		{"order unknown field", "POST", "/orders", `{"user_id":2,"item":"x","quantity":1,"coupon":"free"}`, 400, "unknown field", ""},
		{"order two values", "POST", "/orders", `{"user_id":2,"item":"x","quantity":1}{}`, 400, "more than one value", ""},
		{"order empty body", "POST", "/orders", "", 400, "invalid JSON", ""},
		{"order unknown user", "POST", "/orders", `{"user_id":9,"item":"x","quantity":1}`, 422, "user 9 not found", ""},
		{"order no item", "POST", "/orders", `{"user_id":1,"quantity":1}`, 422, "item is required", ""},
		{"order quantity 0", "POST", "/orders", `{"user_id":1,"item":"x","quantity":0}`, 422, "between 1 and 100", ""},
		{"order quantity 101", "POST", "/orders", `{"user_id":1,"item":"x","quantity":101}`, 422, "between 1 and 100", ""},
		{"order too large", "POST", "/orders", `{"item":"` + strings.Repeat("x", maxBodyBytes) + `"}`, 413, "body over 65536 bytes", ""},
		{"wrong method", "GET", "/orders", "", 405, "", ""},
		{"unknown path", "GET", "/nope", "", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := serve(srv, tt.method, tt.path, tt.body, nil)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %q", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("body %q lacks %q", rec.Body.String(), tt.wantBody)
			}
			if got := rec.Header().Get("Location"); got != tt.wantLocation {
				t.Errorf("Location %q, want %q", got, tt.wantLocation)
			}
			if ct := rec.Header().Get("Content-Type"); tt.wantStatus < 300 && tt.path != "/healthz" && ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// TestRequestLogging checks that each request is logged exactly once, at
// the right level and with the right attributes.
func TestRequestLogging(t *testing.T) {
	tests := []struct {
		name         string
		method, path string
		body         string
		wantStatus   int
		wantLevel    string
		wantRoute    string
	}{
		{"ok", "GET", "/users/2", "", 200, "INFO", "GET /users/{id}"},
		{"not found", "GET", "/users/77", "", 404, "WARN", "GET /users/{id}"},
		{"no route", "GET", "/nope", "", 404, "WARN", ""},
		{"wrong method", "DELETE", "/users/1", "", 405, "WARN", ""},
		{"unprocessable", "POST", "/orders", `{"user_id":1,"item":"x","quantity":0}`, 422, "WARN", "POST /orders"},
		{"panic", "GET", "/panic", "", 500, "ERROR", "GET /panic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, loki := newLokiHandler(t)
			logger := slog.New(h)
			mux := newAPI(logger).routes()
			mux.HandleFunc("GET /panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
			srv := withRequestLogging(logger, mux)

			rec := serve(srv, tt.method, tt.path, tt.body, map[string]string{"User-Agent": "test-agent/1.0"})
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			entries := flushed(t, h, loki)
			if len(entries) != 1 {
				t.Fatalf("%d records, want 1:\n%s", len(entries), loki.Dump())
			}
			e := entries[0]
			f := fields(t, e)
			want := map[string]any{
				"level":      tt.wantLevel,
				"msg":        "request",
				"method":     tt.method,
				"path":       tt.path,
				"route":      tt.wantRoute,
				"status":     float64(tt.wantStatus),
				"bytes":      float64(rec.Body.Len()),
				"user_agent": "test-agent/1.0",
			}
			for k, v := range want {
				if f[k] != v {
					t.Errorf("%s = %v (%T), want %v", k, f[k], f[k], v)
				}
			}
			if d, ok := f["duration"].(float64); !ok || d < 0 {
				t.Errorf("duration = %v, want a non-negative number (ns)", f["duration"])
			}
			if _, ok := f["request_id"]; ok {
				t.Errorf("request_id is in the line, want it in metadata only: %s", e.Line)
			}
			if p, ok := f["panic"]; (tt.name == "panic") != ok || (ok && p != "boom") {
				t.Errorf("panic attribute = %v", f["panic"])
			}
			if got, want := e.Metadata["request_id"], rec.Header().Get(headerRequestID); !hex32.MatchString(got) || got != want {
				t.Errorf("request_id metadata %q, response header %q: want the same 32 hex digits", got, want)
			}
			if !hex32.MatchString(e.Metadata["trace_id"]) || !hex16.MatchString(e.Metadata["span_id"]) {
				t.Errorf("metadata %v: want trace_id and span_id", e.Metadata)
			}
			if e.Labels["service_name"] != "mu-api" || len(e.Labels) != 1 {
				t.Errorf("labels %v, want only service_name", e.Labels)
			}
		})
	}
}

func TestRequestLoggingTraceContext(t *testing.T) {
	tests := []struct {
		name        string
		header      map[string]string
		wantTraceID string // "" = a new one
		wantReqID   string // "" = a new one
	}{
		{"traceparent and request id", map[string]string{"traceparent": traceparent, "X-Request-ID": "req-42"}, parentTraceID, "req-42"},
		{"no headers", nil, "", ""},
		{"upper-case traceparent ignored", map[string]string{"traceparent": strings.ToUpper(traceparent)}, "", ""},
		{"zero trace id ignored", map[string]string{"traceparent": "00-" + strings.Repeat("0", 32) + "-" + parentSpanID + "-01"}, "", ""},
		{"request id with spaces replaced", map[string]string{"X-Request-ID": "a b"}, "", ""},
		{"request id too long replaced", map[string]string{"X-Request-ID": strings.Repeat("r", maxRequestIDLen+1)}, "", ""},
		{"request id at the limit kept", map[string]string{"X-Request-ID": strings.Repeat("r", maxRequestIDLen)}, "", strings.Repeat("r", maxRequestIDLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, loki := newLokiHandler(t)
			srv := withRequestLogging(slog.New(h), newAPI(slog.New(h)).routes())
			rec := serve(srv, "GET", "/users/1", "", tt.header)
			if rec.Code != 200 {
				t.Fatalf("status %d", rec.Code)
			}
			entries := flushed(t, h, loki)
			if len(entries) != 1 {
				t.Fatalf("%d records, want 1:\n%s", len(entries), loki.Dump())
			}
			md := entries[0].Metadata
			switch {
			case tt.wantTraceID != "" && md["trace_id"] != tt.wantTraceID:
				t.Errorf("trace_id %q, want the caller's %q", md["trace_id"], tt.wantTraceID)
			case tt.wantTraceID == "" && (!hex32.MatchString(md["trace_id"]) || md["trace_id"] == parentTraceID || md["trace_id"] == strings.Repeat("0", 32)):
				t.Errorf("trace_id %q, want a new valid one", md["trace_id"])
			}
			if !hex16.MatchString(md["span_id"]) || md["span_id"] == parentSpanID || md["span_id"] == strings.Repeat("0", 16) {
				t.Errorf("span_id %q, want a new valid span id (a child of the caller's)", md["span_id"])
			}
			gotID := rec.Header().Get(headerRequestID)
			if md["request_id"] != gotID {
				t.Errorf("request_id metadata %q, response header %q", md["request_id"], gotID)
			}
			switch {
			case tt.wantReqID != "" && gotID != tt.wantReqID:
				t.Errorf("request id %q, want the caller's %q", gotID, tt.wantReqID)
			case tt.wantReqID == "" && (!hex32.MatchString(gotID) || gotID == tt.header["X-Request-ID"]):
				t.Errorf("request id %q, want a new one", gotID)
			}
		})
	}
}

// A handler's own records carry the request's trace context and id.
func TestHandlerRecordsShareRequestContext(t *testing.T) {
	h, loki := newLokiHandler(t)
	srv := withRequestLogging(slog.New(h), newAPI(slog.New(h)).routes())
	rec := serve(srv, "POST", "/orders", `{"user_id":3,"item":"pen","quantity":2}`,
		map[string]string{"traceparent": traceparent, "X-Request-ID": "req-7"})
	if rec.Code != 201 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	entries := flushed(t, h, loki)
	if len(entries) != 2 {
		t.Fatalf("%d records, want 2 (order created, request):\n%s", len(entries), loki.Dump())
	}
	if f := fields(t, entries[0]); f["msg"] != "order created" || f["order_id"] != "ord-000001" || f["quantity"] != float64(2) {
		t.Errorf("first record %s", entries[0].Line)
	}
	if f := fields(t, entries[1]); f["msg"] != "request" || f["status"] != float64(201) {
		t.Errorf("second record %s", entries[1].Line)
	}
	a, b := entries[0].Metadata, entries[1].Metadata
	if a["trace_id"] != parentTraceID || a["request_id"] != "req-7" || a["span_id"] != b["span_id"] ||
		a["trace_id"] != b["trace_id"] || a["request_id"] != b["request_id"] {
		t.Errorf("metadata differ or are wrong: %v vs %v", a, b)
	}
}

// The probes are logged at debug level: nothing reaches Loki at INFO.
func TestHealthNotLoggedAtInfo(t *testing.T) {
	h, loki := newLokiHandler(t)
	srv := withRequestLogging(slog.New(h), newAPI(slog.New(h)).routes())
	for range 3 {
		if rec := serve(srv, "GET", "/healthz", "", nil); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	serve(srv, "GET", "/users/1", "", nil)
	entries := flushed(t, h, loki)
	if len(entries) != 1 || fields(t, entries[0])["path"] != "/users/1" {
		t.Fatalf("want only the /users/1 record:\n%s", loki.Dump())
	}

	var buf strings.Builder
	dbg := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	serve(withRequestLogging(dbg, newAPI(dbg).routes()), "GET", "/healthz", "", nil)
	if !strings.Contains(buf.String(), `"level":"DEBUG"`) || !strings.Contains(buf.String(), `"path":"/healthz"`) {
		t.Errorf("health probe not logged at debug: %s", buf.String())
	}
}

func TestStatusWriter(t *testing.T) {
	tests := []struct {
		name       string
		h          http.HandlerFunc
		wantStatus int
		wantBytes  int64
	}{
		{"nothing written", func(http.ResponseWriter, *http.Request) {}, 200, 0},
		{"write only", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }, 200, 5},
		{"explicit status", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }, 204, 0},
		{"second status ignored", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(418); w.WriteHeader(500) }, 418, 0},
		{"1xx then final", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(103)
			w.WriteHeader(201)
			_, _ = io.WriteString(w, "ab")
		}, 201, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A real server: httptest.ResponseRecorder treats 1xx as final.
			var buf syncBuffer
			logger := slog.New(slog.NewJSONHandler(&buf, nil))
			ts := httptest.NewServer(withRequestLogging(logger, tt.h))
			defer ts.Close()
			get(t, newClient(t), ts.URL+"/x")
			ts.Close() // waits for the handler, and so for the record
			var f map[string]any
			if err := json.Unmarshal([]byte(buf.String()), &f); err != nil {
				t.Fatalf("%v: %q", err, buf.String())
			}
			if f["status"] != float64(tt.wantStatus) || f["bytes"] != float64(tt.wantBytes) {
				t.Errorf("status %v bytes %v, want %d %d", f["status"], f["bytes"], tt.wantStatus, tt.wantBytes)
			}
		})
	}
}

func TestParseTraceparent(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		ok        bool
		wantFlags trace.TraceFlags
	}{
		{"sampled", traceparent, true, trace.FlagsSampled},
		{"not sampled", "00-" + parentTraceID + "-" + parentSpanID + "-00", true, 0},
		{"reserved flag bits dropped", "00-" + parentTraceID + "-" + parentSpanID + "-ff", true, trace.FlagsSampled},
		{"future version with more fields", "cc-" + parentTraceID + "-" + parentSpanID + "-01-what-ever", true, trace.FlagsSampled},
		{"future version, exact length", "01-" + parentTraceID + "-" + parentSpanID + "-01", true, trace.FlagsSampled},
		{"empty", "", false, 0},
		{"version ff", "ff-" + parentTraceID + "-" + parentSpanID + "-01", false, 0},
		{"version 00 with trailing data", traceparent + "-x", false, 0},
		{"future version, trailing without dash", "01-" + parentTraceID + "-" + parentSpanID + "-01x", false, 0},
		{"upper case", strings.ToUpper(traceparent), false, 0},
		{"zero trace id", "00-" + strings.Repeat("0", 32) + "-" + parentSpanID + "-01", false, 0},
		{"zero span id", "00-" + parentTraceID + "-" + strings.Repeat("0", 16) + "-01", false, 0},
		{"short trace id", "00-" + parentTraceID[2:] + "-" + parentSpanID + "-01", false, 0},
		{"wrong separator", "00_" + parentTraceID + "-" + parentSpanID + "-01", false, 0},
		{"non-hex", "00-" + strings.Repeat("g", 32) + "-" + parentSpanID + "-01", false, 0},
		{"non-hex flags", "00-" + parentTraceID + "-" + parentSpanID + "-0x", false, 0},
		{"non-hex version", "0x-" + parentTraceID + "-" + parentSpanID + "-01", false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, ok := parseTraceparent(tt.in)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				if sc.IsValid() {
					t.Errorf("rejected but valid span context %v", sc)
				}
				return
			}
			if sc.TraceID().String() != parentTraceID || sc.SpanID().String() != parentSpanID || !sc.IsRemote() || sc.TraceFlags() != tt.wantFlags {
				t.Errorf("got trace %s span %s remote %v flags %v", sc.TraceID(), sc.SpanID(), sc.IsRemote(), sc.TraceFlags())
			}
		})
	}
}

func TestServerSpanContextKeepsTracestate(t *testing.T) {
	h := http.Header{}
	h.Set("traceparent", traceparent)
	h.Set("tracestate", "vendor=abc,other=1")
	sc := serverSpanContext(h)
	if sc.TraceID().String() != parentTraceID || sc.SpanID().String() == parentSpanID || sc.IsRemote() || !sc.IsSampled() {
		t.Errorf("span context %+v: want a local child of the caller's span", sc)
	}
	if got := sc.TraceState().String(); got != "vendor=abc,other=1" {
		t.Errorf("tracestate %q", got)
	}
	h.Set("tracestate", "not a tracestate")
	if got := serverSpanContext(h).TraceState().Len(); got != 0 {
		t.Errorf("invalid tracestate kept (%d members)", got)
	}
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add(traceparent)
	f.Add("cc-" + parentTraceID + "-" + parentSpanID + "-01-x")
	f.Add("ff-" + parentTraceID + "-" + parentSpanID + "-01")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		sc, ok := parseTraceparent(v)
		if !ok {
			if sc.IsValid() {
				t.Fatalf("%q rejected with a valid span context", v)
			}
			return
		}
		if !sc.IsValid() || !sc.IsRemote() {
			t.Fatalf("%q accepted with invalid or local span context %v", v, sc)
		}
		if got := sc.TraceID().String(); got != v[3:35] {
			t.Fatalf("%q: trace id %s", v, got)
		}
		if got := sc.SpanID().String(); got != v[36:52] {
			t.Fatalf("%q: span id %s", v, got)
		}
		again, ok := parseTraceparent(formatTraceparent(sc))
		if !ok || !again.Equal(sc) {
			t.Fatalf("%q: formatted %q does not parse back to the same", v, formatTraceparent(sc))
		}
	})
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{"defaults", nil, "", func(t *testing.T, c Config) {
			if c.Addr != ":8080" || c.ShutdownTimeout != 5*time.Second || c.Loki.URL != "" ||
				c.Loki.Labels["service_name"] != "mu-api" || strings.Join(c.Loki.MetadataKeys, ",") != "request_id" {
				t.Errorf("%+v", c)
			}
		}},
		{"everything", map[string]string{
			"ADDR": "127.0.0.1:9000", "SHUTDOWN_TIMEOUT": "2500ms",
			"LOKI_URL": "http://loki:3100", "LOKI_TENANT_ID": "team-a",
			"LOKI_LABELS":        "service_name=svc, namespace=prod",
			"LOKI_METADATA_KEYS": "request_id,user_id", "LOKI_SPOOL_DIR": "/var/lib/mu-api/loki-spool",
		}, "", func(t *testing.T, c Config) {
			if c.Addr != "127.0.0.1:9000" || c.ShutdownTimeout != 2500*time.Millisecond || c.Loki.URL != "http://loki:3100" ||
				c.Loki.TenantID != "team-a" || c.Loki.Labels["service_name"] != "svc" || c.Loki.Labels["namespace"] != "prod" ||
				strings.Join(c.Loki.MetadataKeys, ",") != "request_id,user_id" || c.Loki.SpoolDir != "/var/lib/mu-api/loki-spool" {
				t.Errorf("%+v", c)
			}
		}},
		{"labels without service_name", map[string]string{"LOKI_LABELS": "env=prod"}, "", func(t *testing.T, c Config) {
			if c.Loki.Labels["service_name"] != "mu-api" || c.Loki.Labels["env"] != "prod" {
				t.Errorf("labels %v", c.Loki.Labels)
			}
		}},
		{"bad timeout", map[string]string{"SHUTDOWN_TIMEOUT": "5"}, `SHUTDOWN_TIMEOUT "5"`, nil},
		{"negative timeout", map[string]string{"SHUTDOWN_TIMEOUT": "-1s"}, "must be positive", nil},
		{"bad labels", map[string]string{"LOKI_LABELS": "service_name"}, "LOKI_LABELS", nil},
		{"both errors", map[string]string{"SHUTDOWN_TIMEOUT": "x", "LOKI_LABELS": "a"}, "SHUTDOWN_TIMEOUT", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			c, err := loadConfig()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

// setEnv sets the process environment to env for the test (t.Setenv
// restores it): the variables loadConfig reads, unset unless env names
// them.
func setEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "LOKI_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for _, k := range []string{"ADDR", "SHUTDOWN_TIMEOUT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// startRun starts run in a goroutine on 127.0.0.1:0 and returns the
// service's base URL, a function that stops it (as SIGTERM would), and
// the channel run's result arrives on.
func startRun(t *testing.T, cfg Config) (base string, stop context.CancelFunc, done <-chan error) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	addrc := make(chan net.Addr, 1)
	cfg.onListen = func(a net.Addr) { addrc <- a }
	ctx, cancel := context.WithCancelCause(context.Background())
	errc, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		errc <- run(ctx, cfg)
	}()
	t.Cleanup(func() {
		cancel(errors.New("test ended"))
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Error("run did not return")
		}
	})
	select {
	case a := <-addrc:
		return "http://" + a.String(), func() { cancel(errors.New("terminated")) }, errc
	case err := <-errc:
		t.Fatalf("run returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start listening")
	}
	return "", nil, nil
}

// newClient returns an HTTP client whose connections are closed when the
// test ends.
func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitResult waits for run's result.
func waitResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after stop")
		return nil
	}
}

// TestRunGracefulShutdown: a request in flight when the stop comes is
// served to the end, and run returns only after every record, the request's
// included, is in Loki.
func TestRunGracefulShutdown(t *testing.T) {
	loki := lokitest.NewTestServer(t)
	entered, release := make(chan struct{}), make(chan struct{})
	cfg := Config{
		ShutdownTimeout: 20 * time.Second,
		Loki: handler.Config{
			URL:          loki.URL(),
			Labels:       map[string]string{"service_name": "mu-api"},
			MetadataKeys: []string{"request_id"},
			Format:       "json",
			BatchWait:    time.Hour, // nothing is sent before the shutdown's flush
		},
		routes: func(mux *http.ServeMux) {
			mux.HandleFunc("GET /slow", func(w http.ResponseWriter, _ *http.Request) {
				close(entered)
				<-release
				_, _ = io.WriteString(w, "done")
			})
		},
	}
	base, stop, done := startRun(t, cfg)
	c := newClient(t)
	if got := get(t, c, base+"/users/1"); got != 200 {
		t.Fatalf("GET /users/1: %d", got)
	}

	var wg sync.WaitGroup
	var slowStatus int
	wg.Go(func() { slowStatus = get(t, c, base+"/slow") })
	<-entered
	stop()
	// run must wait for the request in flight.
	select {
	case err := <-done:
		t.Fatalf("run returned with a request in flight: %v", err)
	default:
	}
	close(release)
	wg.Wait()
	if slowStatus != 200 {
		t.Errorf("in-flight request: status %d, want 200", slowStatus)
	}
	if err := waitResult(t, done); err != nil {
		t.Fatalf("run: %v", err)
	}

	// No waiting: run returned, so everything must be in Loki already.
	var msgs []string
	for _, e := range loki.Entries() {
		f := fields(t, e)
		m := f["msg"].(string)
		if m == "request" {
			m += " " + f["path"].(string)
		}
		msgs = append(msgs, m)
	}
	// "shutting down" and the /slow record race; the rest is in order.
	if len(msgs) == 5 && msgs[2] == "request /slow" {
		msgs[2], msgs[3] = msgs[3], msgs[2]
	}
	want := []string{"listening", "request /users/1", "shutting down", "request /slow", "stopped"}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Errorf("records %q, want %q", msgs, want)
	}
}

func TestRunEmbeddedLoki(t *testing.T) {
	var out syncBuffer
	base, stop, done := startRun(t, Config{Out: &out, Loki: handler.Config{
		Labels: map[string]string{"service_name": "mu-api"}, MetadataKeys: []string{"request_id"},
	}})
	c := newClient(t)
	req, _ := http.NewRequest("GET", base+"/users/3", nil)
	req.Header.Set("traceparent", traceparent)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	stop()
	if err := waitResult(t, done); err != nil {
		t.Fatalf("run: %v", err)
	}
	got := out.String()
	for _, want := range []string{
		"LOKI_URL not set: using the embedded fake Loki at http://127.0.0.1:",
		"logs: enqueued=4 exported=4 dropped=0",
		`{service_name="mu-api"}`,
		"path=/users/3",
		`trace_id="` + parentTraceID + `"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// A listen error is returned, and logged to Loki before run returns.
func TestRunListenError(t *testing.T) {
	loki := lokitest.NewTestServer(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	err = run(context.Background(), Config{Addr: busy.Addr().String(), Loki: handler.Config{URL: loki.URL()}})
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("err %v, want a listen error", err)
	}
	entries := loki.Entries()
	if len(entries) != 1 || !strings.Contains(entries[0].Line, `msg="listen failed"`) {
		t.Errorf("want the listen error in Loki:\n%s", loki.Dump())
	}
}

// syncBuffer is a strings.Builder safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
