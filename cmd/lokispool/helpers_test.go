package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/exporter/lokitest"
	"github.com/lokislog/lokislog/internal/spool"
)

func TestMain(m *testing.M) {
	// The replay reads secrets from these; a developer's environment must
	// not change what the tests see.
	os.Unsetenv("LOKI_PASSWORD")
	os.Unsetenv("LOKI_BEARER_TOKEN")
	goleak.VerifyTestMain(m)
}

// result is the outcome of one run.
type result struct {
	code           int
	stdout, stderr string
}

func runT(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// norm collapses runs of spaces and tabs inside each line, so that
// tabwriter padding does not matter.
func norm(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	n := "\n" + norm(out) + "\n"
	for _, l := range lines {
		if !strings.Contains(n, "\n"+l+"\n") {
			t.Errorf("output has no line %q:\n%s", l, out)
		}
	}
}

func wantContains(t *testing.T, what, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("%s does not contain %q:\n%s", what, s, out)
		}
	}
}

var (
	tenants = []string{"", "team-a", "team-b"}
	labels  = []string{`{app="api", env="prod"}`, `{app="api", env="dev"}`, `{app="worker"}`}
)

// makeBatches returns n batches of 2 streams with 3 entries each, cycling
// through 3 tenants and 3 label sets, timestamps one second apart from
// base. Every other entry has structured metadata.
func makeBatches(base time.Time, n int) []exporter.Batch {
	var out []exporter.Batch
	ts := base.UnixNano()
	for i := range n {
		b := exporter.Batch{Tenant: tenants[i%len(tenants)]}
		for s := range 2 {
			st := exporter.Stream{Labels: labels[(i+s)%len(labels)]}
			for e := range 3 {
				ts += int64(time.Second)
				en := exporter.Entry{Timestamp: ts, Line: fmt.Sprintf(`level=info msg="record %d stream %d entry %d"`, i, s, e)}
				if e%2 == 0 {
					en.Metadata = []exporter.LabelPair{
						{Name: "trace_id", Value: fmt.Sprintf("%032x", i*100+s*10+e)},
						{Name: "user", Value: fmt.Sprintf("u%d", i)},
					}
				}
				st.Entries = append(st.Entries, en)
			}
			b.Streams = append(b.Streams, st)
		}
		out = append(out, b)
	}
	return out
}

const testSegmentSize = 1300 // two records of makeBatches per segment

// writeSpool appends the batches to the spool in dir as the buffer does:
// one record per batch, its entry count and oldest timestamp in the frame.
func writeSpool(t *testing.T, dir string, batches []exporter.Batch) {
	t.Helper()
	sp, err := spool.Open(spool.Options{Dir: dir, SegmentSize: testSegmentSize, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	for i := range batches {
		b := &batches[i]
		if err := sp.Append(spool.AppendBatch(nil, b), b.Len(), oldestTS(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
}

func oldestTS(b *exporter.Batch) int64 {
	var ts int64
	for _, s := range b.Streams {
		for _, e := range s.Entries {
			if ts == 0 || e.Timestamp < ts {
				ts = e.Timestamp
			}
		}
	}
	return ts
}

// segFiles returns the names of the *.seg files in dir, sorted.
func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	slices.Sort(m)
	return m
}

// snapshot returns every file of dir with its bytes and mode.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel] = "dir " + info.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = info.Mode().String() + " " + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	if !maps.Equal(before, after) {
		t.Errorf("directory changed:\nbefore: %v\nafter:  %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
		for k, v := range before {
			if after[k] != v {
				t.Errorf("file %s changed", k)
			}
		}
	}
}

// entryKey identifies one delivered entry completely.
func entryKey(tenant, labels string, ts int64, line string, md map[string]string) string {
	return fmt.Sprintf("%s|%s|%d|%s|%v", tenant, labels, ts, line, md)
}

// wantKeys returns the keys of every entry of batches, the tenant of a
// batch without one replaced by defTenant.
func wantKeys(batches []exporter.Batch, defTenant string, keep func(exporter.Entry) bool) map[string]int {
	out := map[string]int{}
	for _, b := range batches {
		tenant := b.Tenant
		if tenant == "" {
			tenant = defTenant
		}
		for _, s := range b.Streams {
			for _, e := range s.Entries {
				if keep != nil && !keep(e) {
					continue
				}
				var md map[string]string
				if len(e.Metadata) > 0 {
					md = map[string]string{}
					for _, m := range e.Metadata {
						md[m.Name] = m.Value
					}
				}
				out[entryKey(tenant, s.Labels, e.Timestamp, e.Line, md)]++
			}
		}
	}
	return out
}

func gotKeys(entries []lokitest.Entry) map[string]int {
	out := map[string]int{}
	for _, e := range entries {
		out[entryKey(e.Tenant, e.LabelString, e.Timestamp.UnixNano(), e.Line, e.Metadata)]++
	}
	return out
}

// sameEntries checks that the server holds exactly want, each once.
func sameEntries(t *testing.T, s *lokitest.Server, want map[string]int) {
	t.Helper()
	got := gotKeys(s.Entries())
	for k, n := range got {
		if n != 1 {
			t.Errorf("entry delivered %d times: %s", n, k)
		}
		if want[k] == 0 {
			t.Errorf("unexpected entry: %s", k)
		}
	}
	for k := range want {
		if got[k] == 0 {
			t.Errorf("entry not delivered: %s", k)
		}
	}
}

func inspectJSON(t *testing.T, dir string, args ...string) inspectReport {
	t.Helper()
	r := runT(t, append(append([]string{"inspect", "-json"}, args...), dir)...)
	if r.code != 0 {
		t.Fatalf("inspect -json: code %d: %s", r.code, r.stderr)
	}
	var rep inspectReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("inspect -json: %v\n%s", err, r.stdout)
	}
	return rep
}

// fastRetry are replay flags that make a failing push give up quickly.
var fastRetry = []string{"-max-retry-time", "1s", "-min-backoff", "5ms", "-max-backoff", "20ms", "-timeout", "2s"}

// eventBuffer is a goroutine-safe buffer that lets a test wait for text.
type eventBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newEventBuffer() *eventBuffer { return &eventBuffer{changed: make(chan struct{})} }

func (b *eventBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	return b.buf.Write(p)
}

func (b *eventBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer contains s.
func (b *eventBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		b.mu.Lock()
		ok := strings.Contains(b.buf.String(), s)
		ch := b.changed
		b.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Errorf("timed out waiting for %q in:\n%s", s, b.String())
			return
		}
	}
}
