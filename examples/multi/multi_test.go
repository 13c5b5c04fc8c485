package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lokislog/lokislog/exporter/lokitest"
	"github.com/lokislog/lokislog/handler"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newHandler returns a handler pushing to s under tenant, shut down when
// the test ends.
func newHandler(t *testing.T, s *lokitest.Server, tenant string) *handler.Handler {
	t.Helper()
	h, err := handler.New(handler.Config{
		URL:          s.URL(),
		TenantID:     tenant,
		Labels:       map[string]string{"service_name": "multi-test"},
		BatchWait:    10 * time.Millisecond,
		ErrorHandler: func(error) {}, // failed pushes are expected here
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	return h
}

func flush(t *testing.T, h *handler.Handler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := h.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
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

func (b *syncBuffer) lines() []string {
	s := strings.TrimSuffix(b.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestRunEmbedded(t *testing.T) {
	clearLokiEnv(t)
	var out syncBuffer
	if err := run(context.Background(), &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		`{"time":`, `"level":"ERROR","msg":"payment failed","version":"1.0.0","order_id":"ord-17"`,
		`tenant "errors" {service_name="multi-demo"}: 1 entries`,
		`tenant "main" {service_name="multi-demo"}: 4 entries`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

// TestFanoutAndRouting: stdout gets every enabled record as JSON, the main
// tenant every one, the errors tenant only ERROR and above; attributes and
// groups added with With and WithGroup reach every destination.
func TestFanoutAndRouting(t *testing.T) {
	mainLoki, errorsLoki := lokitest.NewTestServer(t), lokitest.NewTestServer(t)
	mainH, errorsH := newHandler(t, mainLoki, "main"), newHandler(t, errorsLoki, "errors")
	var out syncBuffer
	logger := newLogger(&out, mainH, errorsH).With("svc", "shop").WithGroup("req")

	records := []struct {
		level      slog.Level
		toStdout   bool
		toMain     bool
		toErrors   bool
		levelInOut string
	}{
		{slog.LevelDebug, false, false, false, ""},
		{slog.LevelInfo, true, true, false, "INFO"},
		{slog.LevelWarn, true, true, false, "WARN"},
		{slog.LevelError, true, true, true, "ERROR"},
		{slog.LevelError + 4, true, true, true, "ERROR+4"},
	}
	var wantOut, wantMain, wantErrors []string
	for i, r := range records {
		msg := fmt.Sprintf("record %d", i)
		logger.Log(context.Background(), r.level, msg, "n", i)
		if r.toStdout {
			wantOut = append(wantOut, msg)
		}
		if r.toMain {
			wantMain = append(wantMain, fmt.Sprintf(`level=%s msg="%s" svc=shop req.n=%d`, r.levelInOut, msg, i))
		}
		if r.toErrors {
			wantErrors = append(wantErrors, fmt.Sprintf(`level=%s msg="%s" svc=shop req.n=%d`, r.levelInOut, msg, i))
		}
	}
	flush(t, mainH)
	flush(t, errorsH)

	var gotOut []string
	for _, l := range out.lines() {
		var m struct {
			Msg string `json:"msg"`
			Svc string `json:"svc"`
			Req struct {
				N int `json:"n"`
			} `json:"req"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stdout line %q: %v", l, err)
		}
		if m.Svc != "shop" || fmt.Sprintf("record %d", m.Req.N) != m.Msg {
			t.Errorf("stdout line %q lacks the With/WithGroup attributes", l)
		}
		gotOut = append(gotOut, m.Msg)
	}
	if strings.Join(gotOut, "|") != strings.Join(wantOut, "|") {
		t.Errorf("stdout %q, want %q", gotOut, wantOut)
	}
	for _, d := range []struct {
		name   string
		s      *lokitest.Server
		tenant string
		want   []string
	}{{"main", mainLoki, "main", wantMain}, {"errors", errorsLoki, "errors", wantErrors}} {
		var got []string
		for _, e := range d.s.Entries() {
			if e.Tenant != d.tenant {
				t.Errorf("%s: entry with tenant %q", d.name, e.Tenant)
			}
			got = append(got, e.Line)
		}
		if strings.Join(got, "\n") != strings.Join(d.want, "\n") {
			t.Errorf("%s tenant got\n%s\nwant\n%s", d.name, strings.Join(got, "\n"), strings.Join(d.want, "\n"))
		}
	}
}

// TestSlowDestinationKeepsItsOwnQueue: one Loki is down (503) or stalled
// (it takes pushes and does not answer). Logging N records through the
// composed handler still returns at once, with no error, although the slow
// Loki has stored nothing; the other Loki gets all of its records on
// Flush while the slow one's are still queued; after the slow Loki
// recovers it gets all of its records too, each once and in order.
func TestSlowDestinationKeepsItsOwnQueue(t *testing.T) {
	const n = 200
	isError := func(i int) bool { return i%4 == 0 }
	for _, slowName := range []string{"main", "errors"} {
		for _, fault := range []string{"down", "stalled"} {
			t.Run(slowName+" "+fault, func(t *testing.T) {
				t.Parallel()
				servers := map[string]*lokitest.Server{"main": lokitest.NewTestServer(t), "errors": lokitest.NewTestServer(t)}
				slow := servers[slowName]
				fastName := map[string]string{"main": "errors", "errors": "main"}[slowName]
				fast := servers[fastName]
				switch fault {
				case "down":
					slow.SetDown(true)
				case "stalled":
					slow.SetDelay(time.Hour)
				}
				handlers := map[string]*handler.Handler{
					"main":   newHandler(t, servers["main"], "main"),
					"errors": newHandler(t, servers["errors"], "errors"),
				}
				var out syncBuffer
				composed := newLogger(&out, handlers["main"], handlers["errors"]).Handler()

				// want[dest] is the record numbers each destination must get.
				want := map[string][]int{}
				for i := range n {
					level := slog.LevelInfo
					if isError(i) {
						level = slog.LevelError
					}
					r := slog.NewRecord(time.Now(), level, "record", 0)
					r.AddAttrs(slog.Int("i", i))
					if err := composed.Handle(context.Background(), r); err != nil {
						t.Fatalf("Handle %d: %v", i, err)
					}
					want["main"] = append(want["main"], i)
					if isError(i) {
						want["errors"] = append(want["errors"], i)
					}
				}
				// All N calls returned while the slow Loki could store nothing.
				if got := len(slow.Entries()); got != 0 {
					t.Fatalf("the slow Loki stored %d entries", got)
				}
				if got := len(out.lines()); got != n {
					t.Errorf("stdout got %d lines, want %d", got, n)
				}

				// The fast destination's queue drains on its own.
				flush(t, handlers[fastName])
				checkEntries(t, fastName, fast, want[fastName])
				st := handlers[slowName].Stats()
				if got := len(slow.Entries()); got != 0 || st.Exported != 0 || st.Enqueued != uint64(len(want[slowName])) {
					t.Fatalf("slow destination: %d stored, stats %+v; want 0 stored, %d enqueued, 0 exported",
						got, st, len(want[slowName]))
				}
				t.Logf("while %s: %d pushes reached the slow Loki, %d entries queued for it", fault, slow.Pushes(), st.BufferedEntries)

				// Recovery.
				switch fault {
				case "down":
					slow.SetDown(false)
				case "stalled":
					slow.SetDelay(0)
					slow.Stop() // cuts the stalled push short; the client retries
					if err := slow.Restart(); err != nil {
						t.Fatal(err)
					}
				}
				flush(t, handlers[slowName])
				checkEntries(t, slowName, slow, want[slowName])
				checkEntries(t, fastName, fast, want[fastName])
				for name, h := range handlers {
					if d := h.Stats().Dropped; len(d) != 0 {
						t.Errorf("%s dropped %v", name, d)
					}
				}
			})
		}
	}
}

// checkEntries checks that s stored exactly the records numbered want,
// in order, under tenant name.
func checkEntries(t *testing.T, name string, s *lokitest.Server, want []int) {
	t.Helper()
	var got []int
	for _, e := range s.Entries() {
		var i int
		if _, err := fmt.Sscanf(e.Line[strings.Index(e.Line, " i=")+1:], "i=%d", &i); err != nil {
			t.Fatalf("%s: line %q: %v", name, e.Line, err)
		}
		if e.Tenant != name {
			t.Errorf("%s: entry %d has tenant %q", name, i, e.Tenant)
		}
		got = append(got, i)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s got %d records %v,\nwant %d %v", name, len(got), got, len(want), want)
	}
}

// TestShutdownAllWithStalledLoki: shutdownAll shuts the handlers down side
// by side, so a stalled Loki does not keep the other handler's records
// from being sent; its own error is reported when the deadline ends.
func TestShutdownAllWithStalledLoki(t *testing.T) {
	mainLoki, errorsLoki := lokitest.NewTestServer(t), lokitest.NewTestServer(t)
	errorsLoki.SetDelay(time.Hour)
	mainH, errorsH := newHandler(t, mainLoki, "main"), newHandler(t, errorsLoki, "errors")
	logger := newLogger(new(syncBuffer), mainH, errorsH)
	const n = 50
	for i := range n {
		logger.Error("failure", "i", i)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- shutdownAll(ctx, mainH, errorsH) }()

	// The main tenant gets everything during the shutdown, although the
	// errors Loki has not answered a single push.
	wctx, wcancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer wcancel()
	if _, err := mainLoki.WaitEntries(wctx, n); err != nil {
		t.Fatalf("main Loki during shutdown: %v", err)
	}
	if got := len(errorsLoki.Entries()); got != 0 {
		t.Fatalf("the stalled Loki stored %d entries", got)
	}
	// The deadline ends (here: the operator's patience).
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "shutdown handler 1") {
			t.Errorf("shutdownAll: %v, want the errors handler's error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("shutdownAll did not return after its context ended")
	}
	if got := len(mainLoki.Entries()); got != n {
		t.Errorf("main Loki has %d entries, want %d", got, n)
	}
	if st := errorsH.Stats(); st.Exported != 0 {
		t.Errorf("errors handler exported %d", st.Exported)
	}
}

func TestConfigs(t *testing.T) {
	tests := []struct {
		name             string
		env              map[string]string
		wantMain, wantEr handler.Config
	}{
		{"defaults", nil,
			handler.Config{TenantID: "main", Labels: map[string]string{"service_name": "multi-demo"}},
			handler.Config{TenantID: "errors", Labels: map[string]string{"service_name": "multi-demo"}}},
		{"everything", map[string]string{
			"LOKI_URL": "http://loki:3100", "LOKI_TENANT_ID": "shop", "LOKI_LABELS": "service_name=api",
			"LOKI_ERRORS_TENANT_ID": "oncall", "LOKI_ERRORS_URL": "http://loki-oncall:3100", "LOKI_SPOOL_DIR": "/spool",
		},
			handler.Config{URL: "http://loki:3100", TenantID: "shop", Labels: map[string]string{"service_name": "api"},
				SpoolDir: filepath.Join("/spool", "main")},
			handler.Config{URL: "http://loki-oncall:3100", TenantID: "oncall", Labels: map[string]string{"service_name": "api"},
				SpoolDir: filepath.Join("/spool", "errors")}},
		{"errors URL defaults to LOKI_URL", map[string]string{"LOKI_URL": "http://loki:3100"},
			handler.Config{URL: "http://loki:3100", TenantID: "main", Labels: map[string]string{"service_name": "multi-demo"}},
			handler.Config{URL: "http://loki:3100", TenantID: "errors", Labels: map[string]string{"service_name": "multi-demo"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearLokiEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			m, e, err := configs()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name      string
				got, want handler.Config
			}{{"main", m, tt.wantMain}, {"errors", e, tt.wantEr}} {
				if c.got.URL != c.want.URL || c.got.TenantID != c.want.TenantID || c.got.SpoolDir != c.want.SpoolDir ||
					fmt.Sprint(c.got.Labels) != fmt.Sprint(c.want.Labels) {
					t.Errorf("%s: got url=%q tenant=%q spool=%q labels=%v, want url=%q tenant=%q spool=%q labels=%v", c.name,
						c.got.URL, c.got.TenantID, c.got.SpoolDir, c.got.Labels, c.want.URL, c.want.TenantID, c.want.SpoolDir, c.want.Labels)
				}
			}
			m.Labels["x"] = "y"
			if _, shared := e.Labels["x"]; shared {
				t.Error("the two configs share their Labels map")
			}
		})
	}
	clearLokiEnv(t)
	t.Setenv("LOKI_BATCH_WAIT", "soon")
	if _, _, err := configs(); err == nil || !strings.Contains(err.Error(), "LOKI_BATCH_WAIT") {
		t.Errorf("bad variable: err %v", err)
	}
}

// clearLokiEnv unsets every LOKI_* variable for the test (t.Setenv
// restores them afterwards).
func clearLokiEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "LOKI_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}
