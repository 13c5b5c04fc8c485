package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/exporter/lokitest"
	"github.com/lokislog/lokislog/internal/spool"
)

func TestReplay(t *testing.T) {
	for _, protocol := range []string{"protobuf", "json"} {
		t.Run(protocol, func(t *testing.T) {
			dir := t.TempDir()
			batches := makeBatches(time.Now().Add(-20*time.Minute), 10)
			writeSpool(t, dir, batches)
			s := lokitest.NewTestServer(t)

			r := runT(t, "replay", "-url", s.URL(), "-tenant", "fallback", "-protocol", protocol, "-progress", "0", dir)
			if r.code != exitOK {
				t.Fatalf("code %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			sameEntries(t, s, wantKeys(batches, "fallback", nil))
			if got := s.Pushes(); got != 10 {
				t.Errorf("%d pushes, want one per record (10)", got)
			}
			wantLines(t, r.stdout,
				"records: 10 read, 10 pushes, 0 records (0 entries) left in the spool",
				"sent: 60 entries",
				"rejected: 0 entries",
				"too old: 0 entries (older than 168h0m0s, dropped)",
				"done: every record was acknowledged",
			)
			if n := strings.Count(r.stderr, "entries sent"); n != 10 {
				t.Errorf("%d progress lines with -progress 0, want 10:\n%s", n, r.stderr)
			}
			wantContains(t, "stderr", r.stderr, "10 records (60 entries) pending")

			if rep := inspectJSON(t, dir); rep.Totals.PendingRecords != 0 || rep.Totals.Segments != 0 {
				t.Errorf("after replay: %+v", rep.Totals)
			}
			// A second replay has nothing left to send.
			r = runT(t, "replay", "-url", s.URL(), dir)
			if r.code != exitOK || s.Pushes() != 10 {
				t.Errorf("second replay: code %d, %d pushes\n%s%s", r.code, s.Pushes(), r.stdout, r.stderr)
			}
			wantLines(t, r.stdout, "sent: 0 entries")
		})
	}
}

func TestReplayAuthFromEnv(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-time.Minute), 2)
	writeSpool(t, dir, batches)
	s := lokitest.NewTestServer(t, lokitest.WithBasicAuth("loki", "s3cret-pw"))
	t.Setenv("LOKI_PASSWORD", "s3cret-pw")
	r := runT(t, "replay", "-url", s.URL(), "-username", "loki", dir)
	if r.code != exitOK {
		t.Fatalf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	sameEntries(t, s, wantKeys(batches, "", nil))
	if strings.Contains(r.stdout+r.stderr, "s3cret-pw") {
		t.Errorf("password printed")
	}

	dir = t.TempDir()
	writeSpool(t, dir, batches)
	s = lokitest.NewTestServer(t, lokitest.WithBearerToken("tok-123456"))
	t.Setenv("LOKI_PASSWORD", "")
	t.Setenv("LOKI_BEARER_TOKEN", "tok-123456")
	r = runT(t, "replay", "-url", s.URL(), dir)
	if r.code != exitOK {
		t.Fatalf("bearer: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	sameEntries(t, s, wantKeys(batches, "", nil))
}

func TestReplayRejected(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-10*time.Minute), 6)
	writeSpool(t, dir, batches)
	s := lokitest.NewTestServer(t)
	s.FailNext(1, http.StatusBadRequest, lokitest.Body("stream has bad labels\nsecond line"))

	r := runT(t, "replay", "-url", s.URL(), dir)
	if r.code != exitOK {
		t.Fatalf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// The first push was refused; every other entry arrived once.
	sameEntries(t, s, wantKeys(batches[1:], "", nil))
	wantLines(t, r.stdout,
		"sent: 30 entries",
		"rejected: 6 entries",
		"6 status 400: stream has bad labels | second line",
		"done: every record was acknowledged",
	)
	if rep := inspectJSON(t, dir); rep.Totals.PendingRecords != 0 {
		t.Errorf("rejected record not acknowledged: %+v", rep.Totals)
	}
}

func TestReplayLokiDown(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-10*time.Minute), 5)
	writeSpool(t, dir, batches)
	before := inspectJSON(t, dir)
	s := lokitest.NewTestServer(t)
	s.SetDown(true)

	r := runT(t, append(append([]string{"replay", "-url", s.URL()}, fastRetry...), dir)...)
	if r.code != exitFail {
		t.Fatalf("code %d, want %d\n%s%s", r.code, exitFail, r.stdout, r.stderr)
	}
	if n := len(s.Entries()); n != 0 {
		t.Fatalf("%d entries stored while down", n)
	}
	if s.Pushes() == 0 {
		t.Errorf("no push reached the server")
	}
	for _, req := range s.Requests() {
		if req.Status != http.StatusServiceUnavailable && req.Status != 0 {
			t.Errorf("push answered %d while down", req.Status)
		}
	}
	wantContains(t, "stdout", r.stdout, "stopped: exporter: push failed", "5 records (30 entries) left in the spool")
	wantLines(t, r.stdout, "sent: 0 entries")
	after := inspectJSON(t, dir)
	if after.Totals != before.Totals || after.Cursor.Present {
		t.Errorf("something was acknowledged: before %+v, after %+v, cursor %+v", before.Totals, after.Totals, after.Cursor)
	}

	// Loki recovers: everything arrives, once.
	s.SetDown(false)
	r = runT(t, "replay", "-url", s.URL(), dir)
	if r.code != exitOK {
		t.Fatalf("second replay: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	sameEntries(t, s, wantKeys(batches, "", nil))
}

func TestReplayFailsMidway(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-10*time.Minute), 6)
	writeSpool(t, dir, batches)
	s := lokitest.NewTestServer(t)

	// Loki goes down after the third push.
	var pushes atomic.Int32
	a := testApp(t)
	a.afterExport = func() {
		if pushes.Add(1) == 3 {
			s.SetDown(true)
		}
	}
	code := a.run(append(append([]string{"replay", "-url", s.URL()}, fastRetry...), dir))
	if code != exitFail {
		t.Fatalf("code %d\n%s", code, a.stderr)
	}
	sameEntries(t, s, wantKeys(batches[:3], "", nil))
	if rep := inspectJSON(t, dir); rep.Totals.PendingRecords != 3 || rep.Totals.PendingEntries != 18 {
		t.Errorf("left %+v, want the last 3 records", rep.Totals)
	}
	s.SetDown(false)
	if r := runT(t, "replay", "-url", s.URL(), dir); r.code != exitOK {
		t.Fatalf("resume: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	sameEntries(t, s, wantKeys(batches, "", nil))
}

func TestReplayMaxAge(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old := makeBatches(now.Add(-5*time.Hour), 3)   // all older than 2h
	mixed := makeBatches(now.Add(-2*time.Hour), 2) // entries straddle 2h
	fresh := makeBatches(now.Add(-30*time.Minute), 3)
	// The mixed batches: entries step by a second from -2h, so some of
	// their 12 entries are older than 2h only if cut there; shift them to
	// straddle the limit clearly.
	for i := range mixed {
		for j := range mixed[i].Streams {
			for k := range mixed[i].Streams[j].Entries {
				e := &mixed[i].Streams[j].Entries[k]
				if k == 0 {
					e.Timestamp -= int64(10 * time.Minute) // older than 2h
				} else {
					e.Timestamp += int64(20 * time.Minute) // newer
				}
			}
		}
	}
	all := append(append(append([]exporter.Batch{}, old...), mixed...), fresh...)
	writeSpool(t, dir, all)
	limit := now.Add(-2 * time.Hour).UnixNano()
	keep := func(e exporter.Entry) bool { return e.Timestamp >= limit }
	want := wantKeys(all, "", keep)
	var tooOld int
	for _, b := range all {
		for _, s := range b.Streams {
			for _, e := range s.Entries {
				if !keep(e) {
					tooOld++
				}
			}
		}
	}
	if tooOld != 18+4 {
		t.Fatalf("fixture: %d too old entries, want 22", tooOld)
	}

	s := lokitest.NewTestServer(t)
	r := runT(t, "replay", "-url", s.URL(), "-max-age", "2h", dir)
	if r.code != exitOK {
		t.Fatalf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	sameEntries(t, s, want)
	wantLines(t, r.stdout,
		fmt.Sprintf("too old: %d entries (older than 2h0m0s, dropped)", tooOld),
		fmt.Sprintf("sent: %d entries", 48-tooOld),
		"records: 8 read, 5 pushes, 0 records (0 entries) left in the spool",
	)
}

func TestReplayLocked(t *testing.T) {
	dir := t.TempDir()
	writeSpool(t, dir, makeBatches(time.Now().Add(-time.Minute), 3))
	sp, err := spool.Open(spool.Options{Dir: dir, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	s := lokitest.NewTestServer(t)
	r := runT(t, "replay", "-url", s.URL(), dir)
	if r.code != exitFail || !strings.Contains(r.stderr, "is locked by another process") {
		t.Errorf("code %d, stderr %q", r.code, r.stderr)
	}
	if s.Pushes() != 0 {
		t.Errorf("%d pushes while locked", s.Pushes())
	}
	// The dry run reads without the lock and says a replay would fail.
	r = runT(t, "replay", "-dry-run", "-url", s.URL(), dir)
	if r.code != exitOK || !strings.Contains(r.stderr, "a replay would fail now") {
		t.Errorf("dry run: code %d, stderr %q", r.code, r.stderr)
	}
	sp.Close()
	if r := runT(t, "replay", "-url", s.URL(), dir); r.code != exitOK {
		t.Errorf("after unlock: code %d\n%s", r.code, r.stderr)
	}
}

func TestReplayDryRun(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	batches := append(makeBatches(now.Add(-5*time.Hour), 2), makeBatches(now.Add(-10*time.Minute), 4)...)
	writeSpool(t, dir, batches)
	sp, err := spool.Open(spool.Options{Dir: dir, Sync: spool.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Append([]byte{1, 200}, 3, now.UnixNano()); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	before := snapshot(t, dir)
	s := lokitest.NewTestServer(t)

	r := runT(t, "replay", "-dry-run", "-url", s.URL(), "-max-age", "1h", dir)
	if r.code != exitOK {
		t.Fatalf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if s.Pushes() != 0 {
		t.Errorf("dry run pushed %d times", s.Pushes())
	}
	sameSnapshot(t, before, snapshot(t, dir))
	streams, _, _, _ := expectStreams(batches[2:])
	wantLines(t, r.stdout,
		fmt.Sprintf("would send: 24 entries in 4 pushes (7 records, 3 tenants, %d streams)", len(streams)),
		"too old: 12 entries would be dropped (older than 1h0m0s)",
		"corrupt: 3 entries in 1 undecodable records would be dropped",
		"nothing was sent or acknowledged",
	)
	// The real replay does what the dry run said.
	r = runT(t, "replay", "-url", s.URL(), "-max-age", "1h", dir)
	if r.code != exitOK {
		t.Fatalf("replay: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLines(t, r.stdout, "sent: 24 entries", "too old: 12 entries (older than 1h0m0s, dropped)",
		"corrupt: 3 entries in 1 undecodable records", "records: 7 read, 4 pushes, 0 records (0 entries) left in the spool")
	sameEntries(t, s, wantKeys(batches[2:], "", nil))
}

func TestReplayCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-10*time.Minute), 10)
	writeSpool(t, dir, batches)
	clean := inspectJSON(t, dir)
	if len(clean.Segments) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(clean.Segments))
	}
	// Damage the first record of the second segment: recovery sets the
	// whole segment aside and the replay sends everything else.
	p := filepath.Join(dir, clean.Segments[1].File)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[32+20+1] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	first, second := int(clean.Segments[0].Records), int(clean.Segments[1].Records)

	s := lokitest.NewTestServer(t)
	r := runT(t, "replay", "-url", s.URL(), dir)
	if r.code != exitOK {
		t.Fatalf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantContains(t, "stderr", r.stderr, "recovery set 1 corrupt segments aside")
	kept := append(append([]exporter.Batch{}, batches[:first]...), batches[first+second:]...)
	sameEntries(t, s, wantKeys(kept, "", nil))
	if _, err := os.Stat(p + ".corrupt"); err != nil {
		t.Errorf("no set-aside copy: %v", err)
	}
}

// testApp is an app writing to buffers, with signals delivered by the test.
func testApp(t *testing.T) *app {
	return &app{
		stdout: &bytes.Buffer{},
		stderr: &bytes.Buffer{},
		getenv: func(string) string { return "" },
		now:    time.Now,
		notify: func(chan<- os.Signal) {},
		stop:   func(chan<- os.Signal) {},
	}
}

// sigApp returns an app whose signal channel the test gets.
func sigApp(t *testing.T) (*app, *eventBuffer, func() chan<- os.Signal) {
	var (
		mu sync.Mutex
		ch chan<- os.Signal
	)
	errb := newEventBuffer()
	a := testApp(t)
	a.stderr = errb
	a.notify = func(c chan<- os.Signal) { mu.Lock(); ch = c; mu.Unlock() }
	get := func() chan<- os.Signal { mu.Lock(); defer mu.Unlock(); return ch }
	return a, errb, get
}

func TestReplayInterrupt(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-10*time.Minute), 6)
	writeSpool(t, dir, batches)
	fake := lokitest.NewTestServer(t)

	a, errb, sigc := sigApp(t)
	// A SIGINT arrives while the second push is in flight: that push
	// completes and is acknowledged, then the replay stops.
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 2 {
			sigc() <- os.Interrupt
			errb.waitFor(t, "stopping after the push in flight")
		}
		fake.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()

	code := a.run([]string{"replay", "-url", srv.URL, dir})
	out := a.stdout.(*bytes.Buffer).String()
	if code != exitInterrupted {
		t.Fatalf("code %d, want %d\n%s%s", code, exitInterrupted, out, errb)
	}
	sameEntries(t, fake, wantKeys(batches[:2], "", nil))
	wantContains(t, "stdout", out, "interrupted: 4 records (24 entries) left in the spool")

	// Resuming delivers the rest, exactly once overall.
	if r := runT(t, "replay", "-url", fake.URL(), dir); r.code != exitOK {
		t.Fatalf("resume: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	sameEntries(t, fake, wantKeys(batches, "", nil))
}

func TestReplaySecondInterruptAbandons(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-10*time.Minute), 3)
	writeSpool(t, dir, batches)
	fake := lokitest.NewTestServer(t)

	a, errb, sigc := sigApp(t)
	var first atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) {
			// The push hangs until the client gives up, and is never
			// handed to the fake: a test that went on meanwhile must not
			// find it stored.
			io.Copy(io.Discard, r.Body) // then the server sees the client go
			sigc() <- os.Interrupt
			errb.waitFor(t, "stopping after the push in flight")
			sigc() <- os.Interrupt
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
				t.Error("the client did not give up the push in flight")
			}
			return
		}
		fake.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()

	code := a.run([]string{"replay", "-url", srv.URL, dir})
	if code != exitInterrupted {
		t.Fatalf("code %d, want %d\n%s", code, exitInterrupted, errb)
	}
	wantContains(t, "stderr", errb.String(), "abandoning the push in flight")
	if n := len(fake.Entries()); n != 0 {
		t.Errorf("%d entries stored", n)
	}
	if rep := inspectJSON(t, dir); rep.Totals.PendingRecords != 3 || rep.Cursor.Present {
		t.Errorf("after abandon: %+v, cursor %+v", rep.Totals, rep.Cursor)
	}
	if r := runT(t, "replay", "-url", fake.URL(), dir); r.code != exitOK {
		t.Fatalf("resume: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	sameEntries(t, fake, wantKeys(batches, "", nil))
}

// TestReplayPartial: a 413 splits the batch, the first half is delivered,
// then Loki stays down. The record is not acknowledged: the next replay
// sends it whole, so the delivered half arrives twice (duplicates, never
// loss), as the summary warns.
func TestReplayPartial(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-10*time.Minute), 2)
	writeSpool(t, dir, batches)
	fake := lokitest.NewTestServer(t)
	var n atomic.Int32
	var healthy atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			switch n.Add(1) {
			case 1:
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				return
			case 2:
			default:
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		}
		fake.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()

	r := runT(t, append(append([]string{"replay", "-url", srv.URL}, fastRetry...), dir)...)
	if r.code != exitFail {
		t.Fatalf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantContains(t, "stdout", r.stdout, "3 of the record's entries were delivered and will be sent again by the next replay",
		"2 records (12 entries) left in the spool")
	firstHalf := batches[0]
	firstHalf.Streams = firstHalf.Streams[:1] // Split cuts 6 entries into 3 + 3: the first stream
	sameEntries(t, fake, wantKeys([]exporter.Batch{firstHalf}, "", nil))

	healthy.Store(true)
	if r := runT(t, "replay", "-url", srv.URL, dir); r.code != exitOK {
		t.Fatalf("resume: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	got := gotKeys(fake.Entries())
	dup := wantKeys([]exporter.Batch{firstHalf}, "", nil)
	for k := range wantKeys(batches, "", nil) {
		want := 1 + dup[k]
		if got[k] != want {
			t.Errorf("entry delivered %d times, want %d: %s", got[k], want, k)
		}
	}
}

// TestReplayUnsendable: a stream whose labels the client cannot encode is
// rejected without being sent and counted; the rest of the record goes.
func TestReplayUnsendable(t *testing.T) {
	dir := t.TempDir()
	batches := makeBatches(time.Now().Add(-10*time.Minute), 2)
	batches[1].Streams[0].Labels = `{app=unquoted}`
	writeSpool(t, dir, batches)
	s := lokitest.NewTestServer(t)
	r := runT(t, "replay", "-url", s.URL(), "-protocol", "json", dir)
	if r.code != exitOK {
		t.Fatalf("code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	good := []exporter.Batch{batches[0], {Tenant: batches[1].Tenant, Streams: batches[1].Streams[1:]}}
	sameEntries(t, s, wantKeys(good, "", nil))
	wantLines(t, r.stdout, "sent: 9 entries", "rejected: 3 entries")
	wantContains(t, "stdout", r.stdout, "3  not sent: invalid stream labels")
}
