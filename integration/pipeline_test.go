package integration

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lokislog/lokislog/handler"
)

// Volume of TestExactlyOnce: records from goroutines, each on its own stream.
const (
	goroutines = 8
	perWorker  = 12500 // 8 × 12,500 = 100,000 records
)

// TestExactlyOnce logs 100,000 records from 8 goroutines and checks every
// one arrives exactly once, with its labels and metadata, over each push
// protocol.
func TestExactlyOnce(t *testing.T) {
	vl := newVictoriaLogs(t)
	for _, tc := range []struct {
		protocol, format string
		unpack           string // LogsQL pipe reading the line's fields
	}{
		{protocol: "protobuf", format: "logfmt", unpack: "unpack_logfmt"},
		{protocol: "json", format: "json", unpack: "unpack_json"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			testExactlyOnce(t, vl, tc.protocol, tc.format, tc.unpack)
		})
	}
}

func testExactlyOnce(t *testing.T, vl *victoriaLogs, protocol, format, unpack string) {
	const tenant = "42"
	runID := newRunID(t)
	errs := newErrorLog()
	start := time.Now()
	h, err := handler.New(handler.Config{
		URL:            vl.pushBase(),
		TenantID:       tenant,
		Labels:         map[string]string{"service_name": "itest", "run_id": runID},
		LabelKeys:      []string{"env"},
		MetadataKeys:   []string{"request_id"},
		Protocol:       protocol,
		Format:         format,
		BatchWait:      200 * time.Millisecond,
		BatchSize:      512 << 10,
		MaxBufferBytes: 128 << 20, // the whole run fits: memory-only mode must drop nothing
		ErrorHandler:   errs.handle,
	})
	if err != nil {
		t.Fatalf("handler.New: %v", err)
	}
	t.Cleanup(func() { _ = h.Shutdown(shutdownCtx(t)) })

	var wg sync.WaitGroup
	handleErrs := make([]int, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			env := fmt.Sprintf("g%d", g)
			logger := slog.New(h).With("worker", g)
			if g%2 == 0 {
				// The label comes from WithAttrs here and from the record
				// in odd goroutines: both paths must give the same stream.
				logger = logger.With("env", env)
			}
			for i := range perWorker {
				seq := g*perWorker + i
				attrs := []any{"seq", seq, "request_id", "req-" + strconv.Itoa(seq), "path", "/api/items", "status", 200}
				if g%2 == 1 {
					attrs = append(attrs, "env", env)
				}
				// Handle's error is not visible through slog.Logger; the
				// handler's Stats count drops, checked below. Log through
				// the handler directly for a share of the records to see
				// the error too.
				if i%100 == 0 {
					r := slog.NewRecord(time.Now(), slog.LevelInfo, "itest record", 0)
					r.Add(attrs...)
					r.Add("worker", g)
					var hh slog.Handler = h
					if g%2 == 0 {
						hh = h.WithAttrs([]slog.Attr{slog.String("env", env)})
					}
					if err := hh.Handle(t.Context(), r); err != nil {
						handleErrs[g]++
					}
					continue
				}
				logger.Info("itest record", attrs...)
			}
		})
	}
	wg.Wait()
	if err := h.Shutdown(shutdownCtx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	end := time.Now()

	const total = goroutines * perWorker
	st := h.Stats()
	for g, n := range handleErrs {
		if n > 0 {
			t.Errorf("goroutine %d: Handle returned %d errors", g, n)
		}
	}
	if st.Enqueued != total || st.Exported != total {
		t.Errorf("Stats: enqueued %d, exported %d; want %d each", st.Enqueued, st.Exported, total)
	}
	for reason, n := range st.Dropped {
		if n > 0 {
			t.Errorf("Stats: %d dropped (%s), want none", n, reason)
		}
	}
	for _, err := range errs.all() {
		t.Errorf("ErrorHandler: %v", err)
	}

	filter := fmt.Sprintf(`{run_id=%q}`, runID)
	if n := vl.waitCount(t, tenant, filter, total); n != total {
		t.Errorf("VictoriaLogs holds %d records of this run, want %d", n, total)
	}
	want := make(map[string]seqRange)
	for g := range goroutines {
		want[fmt.Sprintf(`{env="g%d",run_id=%q,service_name="itest"}`, g, runID)] = seqRange{from: g * perWorker, count: perWorker}
	}
	vl.checkExactlyOnce(t, tenant, filter, unpack, "_stream", want)

	// Every record's metadata belongs to it: request_id is req-<seq>.
	bad := vl.query(t, tenant, filter+" | "+unpack+` fields (seq) | format "req-<seq>" as want_id | filter not want_id:eq_field(request_id) | stats count() n`)
	if len(bad) != 1 || bad[0]["n"] != "0" {
		t.Errorf("records whose request_id metadata is not req-<seq>: %v", bad)
	}

	// A sample of rows, checked field by field: first, middle and last
	// record of each goroutine.
	var seqs []string
	for g := range goroutines {
		for _, i := range []int{0, perWorker / 2, perWorker - 1} {
			seqs = append(seqs, strconv.Itoa(g*perWorker+i))
		}
	}
	rows := vl.query(t, tenant, fmt.Sprintf("%s | %s fields (seq) | filter seq:in(%s)", filter, unpack, strings.Join(seqs, ",")))
	if len(rows) != len(seqs) {
		t.Errorf("sample: %d rows, want %d", len(rows), len(seqs))
	}
	for _, row := range rows {
		checkRow(t, row, runID, format, start, end)
	}

	// The default tenant sees none of it.
	if n := vl.count(t, "", filter); n != 0 {
		t.Errorf("default tenant sees %d records of tenant %s", n, tenant)
	}
}

// checkRow checks one stored record of TestExactlyOnce: labels, metadata,
// line and timestamp.
func checkRow(t *testing.T, row map[string]string, runID, format string, start, end time.Time) {
	t.Helper()
	seq, err := strconv.Atoi(row["seq"])
	if err != nil {
		t.Errorf("row without seq: %v", row)
		return
	}
	g := seq / perWorker
	wantFields := map[string]string{
		"service_name": "itest",
		"run_id":       runID,
		"env":          fmt.Sprintf("g%d", g),
		"request_id":   "req-" + strconv.Itoa(seq),
		"_stream":      fmt.Sprintf(`{env="g%d",run_id=%q,service_name="itest"}`, g, runID),
	}
	for k, v := range wantFields {
		if row[k] != v {
			t.Errorf("seq %d: field %s = %q, want %q (row %v)", seq, k, row[k], v, row)
		}
	}
	if ts, err := time.Parse(time.RFC3339Nano, row["_time"]); err != nil {
		t.Errorf("seq %d: bad _time %q: %v", seq, row["_time"], err)
	} else if ts.Before(start.Add(-time.Second)) || ts.After(end.Add(time.Second)) {
		t.Errorf("seq %d: _time %v outside the run %v .. %v", seq, ts, start, end)
	}

	line := row["_msg"]
	fields := map[string]string{}
	switch format {
	case "json":
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("seq %d: line is not JSON: %v: %q", seq, err, line)
			return
		}
		for k, v := range m {
			fields[k] = fmt.Sprint(v)
		}
	default:
		fields = parseLogfmt(line)
	}
	wantLine := map[string]string{
		"level":  "INFO",
		"msg":    "itest record",
		"seq":    strconv.Itoa(seq),
		"worker": strconv.Itoa(g),
		"path":   "/api/items",
		"status": "200",
	}
	for k, v := range wantLine {
		if fields[k] != v {
			t.Errorf("seq %d: line field %s = %q, want %q (line %q)", seq, k, fields[k], v, line)
		}
	}
	for _, k := range []string{"env", "request_id", "run_id", "service_name"} {
		if _, ok := fields[k]; ok {
			t.Errorf("seq %d: line carries %s, which is a label or metadata (line %q)", seq, k, line)
		}
	}
}

// parseLogfmt reads key=value and key="quoted value" pairs; enough for the
// lines these tests write.
func parseLogfmt(line string) map[string]string {
	out := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			break
		}
		key := line[:eq]
		line = line[eq+1:]
		var val string
		if strings.HasPrefix(line, `"`) {
			end := 1
			for end < len(line) && line[end] != '"' {
				if line[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(line) {
				end = len(line) - 1
			}
			if v, err := strconv.Unquote(line[:end+1]); err == nil {
				val = v
			} else {
				val = line[1:end]
			}
			line = line[end+1:]
		} else {
			sp := strings.IndexByte(line, ' ')
			if sp < 0 {
				sp = len(line)
			}
			val = line[:sp]
			line = line[sp:]
		}
		out[key] = val
	}
	return out
}

// TestTenant checks that X-Scope-OrgID keeps a tenant's records apart: a
// handler with TenantID 42 and one without, on the same run label, each
// see only their own records.
func TestTenant(t *testing.T) {
	vl := newVictoriaLogs(t)
	runID := newRunID(t)
	const n = 1000
	errs := newErrorLog()
	newHandler := func(tenant, side string) *handler.Handler {
		h, err := handler.New(handler.Config{
			URL:          vl.pushBase(),
			TenantID:     tenant,
			Labels:       map[string]string{"service_name": "itest", "run_id": runID, "side": side},
			BatchWait:    100 * time.Millisecond,
			ErrorHandler: errs.handle,
		})
		if err != nil {
			t.Fatalf("handler.New: %v", err)
		}
		t.Cleanup(func() { _ = h.Shutdown(shutdownCtx(t)) })
		return h
	}
	tenantH := newHandler("42", "tenant42")
	defaultH := newHandler("", "default")
	for i := range n {
		slog.New(tenantH).Info("tenant record", "seq", i)
		slog.New(defaultH).Info("default record", "seq", n+i)
	}
	for _, h := range []*handler.Handler{tenantH, defaultH} {
		if err := h.Shutdown(shutdownCtx(t)); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if st := h.Stats(); st.Exported != n {
			t.Errorf("Stats: exported %d, want %d (dropped %v)", st.Exported, n, st.Dropped)
		}
	}
	for _, err := range errs.all() {
		t.Errorf("ErrorHandler: %v", err)
	}

	filter := fmt.Sprintf(`{run_id=%q}`, runID)
	vl.waitCount(t, "42", filter, n)
	vl.waitCount(t, "", filter, n)
	vl.checkExactlyOnce(t, "42", filter, "unpack_logfmt", "side", map[string]seqRange{"tenant42": {from: 0, count: n}})
	vl.checkExactlyOnce(t, "", filter, "unpack_logfmt", "side", map[string]seqRange{"default": {from: n, count: n}})
	if c := vl.count(t, "7", filter); c != 0 {
		t.Errorf("tenant 7 sees %d records, want 0", c)
	}
}
