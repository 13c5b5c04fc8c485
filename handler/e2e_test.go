package handler

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/lokislog/lokislog/exporter/lokitest"
)

// TestEndToEnd sends records through the real buffer and client to the fake
// Loki, over both protocols, and checks labels, lines, metadata and
// timestamps as Loki stored them.
func TestEndToEnd(t *testing.T) {
	for _, proto := range []string{"protobuf", "json"} {
		t.Run(proto, func(t *testing.T) {
			loki := lokitest.NewTestServer(t)
			h, err := New(Config{
				URL: loki.URL(), Protocol: proto, TenantID: "team-a", BatchWait: 10 * time.Millisecond,
				Labels:       map[string]string{"service_name": "e2e"},
				LabelKeys:    []string{"level", "http.method"},
				MetadataKeys: []string{"http.request_id"},
			})
			if err != nil {
				t.Fatal(err)
			}
			tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
			sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
			ctx := trace.ContextWithSpanContext(context.Background(),
				trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
			l := slog.New(h)
			const perG, gs = 50, 4
			var wg sync.WaitGroup
			for g := range gs {
				wg.Go(func() {
					lg := l.With("worker", g).WithGroup("http")
					for i := range perG {
						lg.InfoContext(ctx, "req", "method", []string{"GET", "POST"}[i%2], "i", i, slog.Group("x"), "request_id", fmt.Sprint(g, "-", i))
					}
				})
			}
			wg.Wait()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.Flush(sctx); err != nil {
				t.Fatal(err)
			}
			entries, err := loki.WaitEntries(sctx, perG*gs)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Shutdown(sctx); err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, e := range entries {
				if e.Tenant != "team-a" || e.Labels["service_name"] != "e2e" || e.Labels["level"] != "INFO" {
					t.Fatalf("entry labels %v tenant %q", e.Labels, e.Tenant)
				}
				m := e.Labels["http_method"]
				if m != "GET" && m != "POST" {
					t.Fatalf("http_method %q", m)
				}
				if e.Metadata["trace_id"] != tid.String() || e.Metadata["span_id"] != sid.String() {
					t.Fatalf("metadata %v", e.Metadata)
				}
				seen[e.Metadata["http_request_id"]] = true
				if time.Since(e.Timestamp) > time.Minute || e.Timestamp.After(time.Now()) {
					t.Fatalf("timestamp %v", e.Timestamp)
				}
			}
			if len(entries) != perG*gs || len(seen) != perG*gs {
				t.Fatalf("%d entries, %d distinct request ids, want %d", len(entries), len(seen), perG*gs)
			}
			st := h.Stats()
			if st.Enqueued != perG*gs || st.Exported != perG*gs || st.Requests == 0 || st.BytesSent == 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{Username: "u", Password: "p", BearerToken: "tok"}); err == nil {
		t.Error("basic auth and bearer token together accepted")
	}
	if _, err := New(Config{TLS: TLSConfig{CAFile: "/nonexistent/ca.pem"}}); err == nil {
		t.Error("missing CA file accepted")
	}
	if _, err := New(Config{Format: "yaml"}); err == nil {
		t.Error("bad format accepted")
	}
}

// TestNewErrorsAtOnce checks that New reports the problems of the push
// client's settings (authentication, headers) together with the others,
// not one after another as each is fixed; and that no secret is shown.
func TestNewErrorsAtOnce(t *testing.T) {
	_, err := New(Config{
		Format: "xml", Password: "hunter22", BearerToken: "s3cr3t\nx",
		Headers: map[string]string{"Bad Name": "v", "X-Key": "a\r\nX-Evil: 1"},
	})
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{`format "xml"`, "password: set without username", "bearer_token: has a control character", `header name "Bad Name"`, "headers.X-Key: value has a control character"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	for _, secret := range []string{"hunter22", "s3cr3t", "X-Evil"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error shows %q:\n%s", secret, msg)
		}
	}
	if _, err := New(Config{Username: "u", BearerToken: "t", Format: "xml"}); err == nil || !strings.Contains(err.Error(), "both set") || !strings.Contains(err.Error(), "xml") {
		t.Errorf("basic auth and bearer token with a bad format: %v", err)
	}
}
