package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// envURL names the environment variable with VictoriaLogs' base URL.
const envURL = "LOKISLOG_VICTORIALOGS_URL"

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChild); mode != "" {
		os.Exit(runChild(mode)) // a child process of TestSpoolCrash
	}
	code := m.Run()
	if base := os.Getenv(envURL); base != "" {
		// VictoriaLogs v1.52.1 crashes on a stream with a duplicate label
		// name: a crash here means the client sent something Loki rejects.
		if err := health(base); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: VictoriaLogs at %s is not alive after the tests: %v\n", base, err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// health checks GET base/health answers 200.
func health(base string) error {
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := c.Get(strings.TrimSuffix(base, "/") + "/health")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// victoriaLogs is a small client of VictoriaLogs' query API for the tests.
type victoriaLogs struct {
	base string
	tr   *http.Transport
	c    *http.Client
}

// newVictoriaLogs returns a client of the server named by
// LOKISLOG_VICTORIALOGS_URL. Without it the test is skipped, or fails when
// CI=true.
func newVictoriaLogs(t testing.TB) *victoriaLogs {
	t.Helper()
	base := strings.TrimSuffix(os.Getenv(envURL), "/")
	if base == "" {
		const why = envURL + " is not set: set it to a VictoriaLogs base URL or run bash scripts/test.sh"
		if os.Getenv("CI") == "true" {
			t.Fatal(why + " (CI=true: integration tests must run)")
		}
		t.Skip(why)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &victoriaLogs{base: base, tr: tr, c: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// pushBase is the URL to configure lokislog with: lokislog appends
// /loki/api/v1/push and VictoriaLogs serves it under /insert.
func (v *victoriaLogs) pushBase() string { return v.base + "/insert" }

// get sends a request and returns the body of a 200 answer.
func (v *victoriaLogs) do(t testing.TB, req *http.Request) []byte {
	t.Helper()
	resp, err := v.c.Do(req)
	if err != nil {
		t.Fatalf("victorialogs: %s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		t.Fatalf("victorialogs: %s %s: read: %v", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("victorialogs: %s %s: status %d: %.500s", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	return body
}

// forceFlush makes everything ingested so far queryable.
func (v *victoriaLogs) forceFlush(t testing.TB) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, v.base+"/internal/force_flush", nil)
	if err != nil {
		t.Fatal(err)
	}
	v.do(t, req)
}

// query runs a LogsQL query as tenant ("" is the default tenant, 0:0) and
// returns its rows. VictoriaLogs returns every field as a string.
func (v *victoriaLogs) query(t testing.TB, tenant, q string) []map[string]string {
	t.Helper()
	form := url.Values{"query": {q}}
	req, err := http.NewRequest(http.MethodPost, v.base+"/select/logsql/query", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if tenant != "" {
		req.Header.Set("AccountID", tenant)
		req.Header.Set("ProjectID", "0")
	}
	body := v.do(t, req)
	var rows []map[string]string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var row map[string]string
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			t.Fatalf("victorialogs: query %q: bad row %.300q: %v", q, line, err)
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("victorialogs: query %q: %v", q, err)
	}
	return rows
}

// count returns how many rows filter matches for tenant.
func (v *victoriaLogs) count(t testing.TB, tenant, filter string) int {
	t.Helper()
	rows := v.query(t, tenant, filter+" | stats count() n")
	if len(rows) != 1 {
		t.Fatalf("victorialogs: count %q: %d result rows, want 1", filter, len(rows))
	}
	return atoi(t, rows[0]["n"])
}

// waitCount flushes and polls until filter matches at least want rows or
// 20s pass, then returns the count. Data is normally queryable at once
// after a flush; the polling only absorbs a slow machine.
func (v *victoriaLogs) waitCount(t testing.TB, tenant, filter string, want int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v.forceFlush(t)
		n := v.count(t, tenant, filter)
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// seqStats is what one stream holds of the per-record sequence numbers.
type seqStats struct {
	N, Uniq, Min, Max int
}

// streamSeqStats groups the rows of filter by the field by and returns, per
// value, the count of rows, of distinct seq values, and the least and
// greatest seq. unpack is the LogsQL pipe that pulls seq out of the line
// ("unpack_logfmt" or "unpack_json").
func (v *victoriaLogs) streamSeqStats(t testing.TB, tenant, filter, unpack, by string) map[string]seqStats {
	t.Helper()
	q := fmt.Sprintf("%s | %s fields (seq) | stats by (%s) count() n, count_uniq(seq) u, min(seq) lo, max(seq) hi",
		filter, unpack, by)
	out := make(map[string]seqStats)
	for _, row := range v.query(t, tenant, q) {
		out[row[by]] = seqStats{N: atoi(t, row["n"]), Uniq: atoi(t, row["u"]), Min: atoi(t, row["lo"]), Max: atoi(t, row["hi"])}
	}
	return out
}

// checkExactlyOnce checks that filter holds, per value of the field by,
// exactly the seq numbers want[value].from .. from+count-1, each once, and
// nothing under other values.
func (v *victoriaLogs) checkExactlyOnce(t testing.TB, tenant, filter, unpack, by string, want map[string]seqRange) {
	t.Helper()
	got := v.streamSeqStats(t, tenant, filter, unpack, by)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w := want[k]
		g, ok := got[k]
		if !ok {
			t.Errorf("%s=%q: no records arrived, want %d", by, k, w.count)
			continue
		}
		wantStats := seqStats{N: w.count, Uniq: w.count, Min: w.from, Max: w.from + w.count - 1}
		if g != wantStats {
			t.Errorf("%s=%q: got count %d, distinct seq %d, seq %d..%d; want count %d, distinct %d, seq %d..%d (each record exactly once)",
				by, k, g.N, g.Uniq, g.Min, g.Max, wantStats.N, wantStats.Uniq, wantStats.Min, wantStats.Max)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s=%q: %d unexpected records", by, k, g.N)
		}
	}
}

// seqRange is the seq numbers one stream should hold: from .. from+count-1.
type seqRange struct {
	from, count int
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("victorialogs: not a number: %q", s)
	}
	return n
}

// newRunID returns a random label value that keeps this run's streams
// apart from every other run's on the same server.
func newRunID(t testing.TB) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "r" + hex.EncodeToString(b[:])
}

// errorLog collects what a handler reports through its ErrorHandler.
type errorLog struct {
	ch chan error
}

func newErrorLog() *errorLog { return &errorLog{ch: make(chan error, 1000)} }

// handle is the ErrorHandler; it never blocks (errors past 1000 are lost).
func (e *errorLog) handle(err error) {
	select {
	case e.ch <- err:
	default:
	}
}

// all returns the errors reported so far.
func (e *errorLog) all() []error {
	var errs []error
	for {
		select {
		case err := <-e.ch:
			errs = append(errs, err)
		default:
			return errs
		}
	}
}

// shutdownCtx bounds a Shutdown call in the tests.
func shutdownCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
