package lokitest

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/grafana/loki/pkg/push"
)

func oneEntry(line string) *push.PushRequest {
	return &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entry(time.Now(), line))}}
}

func lines(es []Entry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.Line)
	}
	return strings.Join(out, ",")
}

func TestFailNext(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	date := RetryAfterDate(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	s.FailNext(2, 429, RetryAfter("7"))
	s.FailNext(1, 503, RetryAfter(date), Body("overloaded"))
	s.FailNext(1, 200)
	if n := s.PendingFaults(); n != 4 {
		t.Fatalf("PendingFaults = %d", n)
	}
	want := []struct {
		status     int
		retryAfter string
		body       string
	}{{429, "7", "Too Many Requests"}, {429, "7", "Too Many Requests"}, {503, date, "overloaded"}, {200, "", "OK"}, {204, "", ""}}
	for i, w := range want {
		a := pushProto(t, c, s.URL(), oneEntry("line"), nil)
		if a.err != nil || a.status != w.status || a.header.Get("Retry-After") != w.retryAfter || strings.TrimSpace(a.body) != w.body {
			t.Fatalf("push %d: %d %q retry-after %q (%v), want %+v", i, a.status, a.body, a.header.Get("Retry-After"), a.err, w)
		}
	}
	if date != "Wed, 02 Jan 2030 03:04:05 GMT" {
		t.Fatalf("RetryAfterDate = %q", date)
	}
	if n := len(s.Entries()); n != 1 {
		t.Fatalf("%d entries stored, want only the last push's", n)
	}
	reqs := s.Requests()
	for i, r := range reqs[:4] {
		if r.Fault != "fail" || r.Accepted != 0 {
			t.Fatalf("request %d: %+v", i, r)
		}
	}
	if reqs[4].Fault != "" || reqs[4].Accepted != 1 {
		t.Fatalf("last request: %+v", reqs[4])
	}
}

func TestFailAfterStore(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	s.FailNext(1, 500, AfterStore())
	if a := pushProto(t, c, s.URL(), oneEntry("first"), nil); a.status != 500 {
		t.Fatalf("status %d", a.status)
	}
	if a := pushProto(t, c, s.URL(), oneEntry("first"), nil); a.status != 204 {
		t.Fatalf("status %d", a.status)
	}
	if got := lines(s.Entries()); got != "first,first" {
		t.Fatalf("entries %s: the resend must be a visible duplicate", got)
	}
	if r := s.Requests()[0]; r.Fault != "fail" || r.Accepted != 1 || r.Status != 500 {
		t.Fatalf("request: %+v", r)
	}
}

func TestDropNext(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	s.DropNext(1)
	s.DropNext(1, AfterStore())
	a := pushProto(t, c, s.URL(), oneEntry("dropped"), nil)
	if a.err == nil {
		t.Fatalf("dropped push answered %d", a.status)
	}
	a = pushProto(t, c, s.URL(), oneEntry("stored then dropped"), nil)
	if a.err == nil {
		t.Fatalf("dropped push answered %d", a.status)
	}
	if a := pushProto(t, c, s.URL(), oneEntry("ok"), nil); a.status != 204 {
		t.Fatalf("status %d %v", a.status, a.err)
	}
	if got := lines(s.Entries()); got != "stored then dropped,ok" {
		t.Fatalf("entries %s", got)
	}
	reqs, err := s.WaitRequests(ctxTimeout(t), 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 3 || reqs[0].Fault != "drop" || reqs[0].Status != 0 || reqs[1].Accepted != 1 || reqs[1].Status != 0 {
		t.Fatalf("requests: %+v", reqs)
	}
}

func TestDropWithoutHijacker(t *testing.T) {
	s, err := NewUnstarted()
	if err != nil {
		t.Fatal(err)
	}
	s.DropNext(1)
	req := httptest.NewRequest(http.MethodPost, PushPath, bytes.NewReader(protoBody(t, oneEntry("x"))))
	req.Header.Set("Content-Type", "application/x-protobuf")
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Fatalf("recovered %v, want http.ErrAbortHandler", p)
			}
		}()
		s.Handler().ServeHTTP(httptest.NewRecorder(), req)
	}()
	if r := s.Requests(); len(r) != 1 || r[0].Fault != "drop" {
		t.Fatalf("requests: %+v", r)
	}
}

func TestOutage(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	s.SetDown(true)
	for i := range 3 {
		if a := pushProto(t, c, s.URL(), oneEntry("down"), nil); a.status != 503 {
			t.Fatalf("push %d during outage: %d", i, a.status)
		}
	}
	// One-shot faults come before the outage.
	s.FailNext(1, 429)
	if a := pushProto(t, c, s.URL(), oneEntry("down"), nil); a.status != 429 {
		t.Fatalf("queued fault: %d", a.status)
	}
	s.FailFor(502, RetryAfter("1"))
	if a := pushProto(t, c, s.URL(), oneEntry("down"), nil); a.status != 502 || a.header.Get("Retry-After") != "1" {
		t.Fatalf("FailFor: %d", a.status)
	}
	s.SetDown(false)
	if a := pushProto(t, c, s.URL(), oneEntry("up"), nil); a.status != 204 {
		t.Fatalf("after outage: %d", a.status)
	}
	if got := lines(s.Entries()); got != "up" {
		t.Fatalf("entries %s", got)
	}
	if r := s.Requests(); r[0].Fault != "down" || r[3].Fault != "fail" {
		t.Fatalf("faults: %q %q", r[0].Fault, r[3].Fault)
	}
}

func TestClearFaults(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	s.FailNext(3, 500)
	s.FailFor(503)
	s.SetDelay(time.Hour)
	s.ClearFaults()
	if a := pushProto(t, c, s.URL(), oneEntry("x"), nil); a.status != 204 || s.PendingFaults() != 0 {
		t.Fatalf("after ClearFaults: %d, %d pending", a.status, s.PendingFaults())
	}
}

func TestInvalidFaultStatus(t *testing.T) {
	s := NewTestServer(t)
	for _, f := range []func(){func() { s.FailNext(1, 42) }, func() { s.FailFor(1000) }} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("invalid status accepted")
				}
			}()
			f()
		}()
	}
}

func TestDelay(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	s.SetDelay(30 * time.Millisecond)
	start := time.Now()
	if a := pushProto(t, c, s.URL(), oneEntry("slow"), nil); a.status != 204 {
		t.Fatalf("status %d", a.status)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("answered after %v, before the delay", d)
	}
}

// TestDelayFakeTime runs the handler in a synctest bubble: the delay is
// exact in fake time and nothing sleeps for real.
func TestDelayFakeTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewUnstarted()
		if err != nil {
			t.Fatal(err)
		}
		s.SetDelay(time.Hour)
		req := httptest.NewRequest(http.MethodPost, PushPath, bytes.NewReader(protoBody(t, oneEntry("x"))))
		req.Header.Set("Content-Type", "application/x-protobuf")
		rec := httptest.NewRecorder()
		start := time.Now()
		s.Handler().ServeHTTP(rec, req)
		if d := time.Since(start); d != time.Hour {
			t.Fatalf("waited %v, want 1h", d)
		}
		if rec.Code != 204 || len(s.Entries()) != 1 {
			t.Fatalf("status %d, %d entries", rec.Code, len(s.Entries()))
		}
	})
}

func TestDelayClientGivesUp(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	c.Timeout = 50 * time.Millisecond
	s.SetDelay(time.Hour)
	if a := pushProto(t, c, s.URL(), oneEntry("gave up"), nil); a.err == nil {
		t.Fatalf("answered %d", a.status)
	}
	reqs, err := s.WaitRequests(ctxTimeout(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if reqs[0].Fault != "canceled" || reqs[0].Status != 0 || len(s.Entries()) != 0 {
		t.Fatalf("request: %+v, %d entries", reqs[0], len(s.Entries()))
	}
}

func TestStopDuringDelay(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	s.SetDelay(time.Hour)
	done := make(chan answer)
	go func() { done <- pushProto(t, c, s.URL(), oneEntry("x"), nil) }()
	waitPushes(t, s, 1)
	s.Close()
	if a := <-done; a.err == nil {
		t.Fatalf("answered %d", a.status)
	}
	if r := s.Requests(); len(r) != 1 || r[0].Fault != "stopped" {
		t.Fatalf("requests: %+v", r)
	}
	if err := s.Restart(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Restart after Close: %v", err)
	}
}

// waitPushes polls until n pushes have arrived.
func waitPushes(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Pushes() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d pushes arrived, want %d", s.Pushes(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestStopRestart(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	url := s.URL()
	if a := pushProto(t, c, url, oneEntry("before"), nil); a.status != 204 {
		t.Fatalf("status %d", a.status)
	}
	s.Stop()
	s.Stop() // idempotent
	if a := pushProto(t, c, url, oneEntry("while stopped"), nil); a.err == nil {
		t.Fatalf("stopped server answered %d", a.status)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.URL() != url {
		t.Fatalf("URL changed from %s to %s", url, s.URL())
	}
	if a := pushProto(t, c, url, oneEntry("after"), nil); a.status != 204 {
		t.Fatalf("status %d %v", a.status, a.err)
	}
	if got := lines(s.Entries()); got != "before,after" {
		t.Fatalf("entries %s", got)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start on a running server: %v", err)
	}
}

func TestUnstarted(t *testing.T) {
	s, err := NewUnstarted()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.URL() != "" {
		t.Fatalf("URL before Start: %q", s.URL())
	}
	// Mounted in another server.
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	c := client(t)
	if a := pushProto(t, c, hs.URL, oneEntry("mounted"), nil); a.status != 204 {
		t.Fatalf("status %d", a.status)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if a := pushProto(t, c, s.URL(), oneEntry("own"), nil); a.status != 204 {
		t.Fatalf("status %d", a.status)
	}
	if got := lines(s.Entries()); got != "mounted,own" {
		t.Fatalf("entries %s", got)
	}
}

func TestWaitEntries(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 5 {
			pushProto(t, c, s.URL(), oneEntry(string(rune('a'+i))), nil)
		}
	}()
	got, err := s.WaitEntries(ctxTimeout(t), 5)
	wg.Wait()
	if err != nil || len(got) != 5 {
		t.Fatalf("WaitEntries: %d, %v", len(got), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	got, err = s.WaitEntries(ctx, 7)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "5 of 7 entries arrived") || len(got) != 5 {
		t.Fatalf("WaitEntries past deadline: %d, %v", len(got), err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	if _, err := s.WaitRequests(ctx2, 6); err == nil || !strings.Contains(err.Error(), "5 of 6 requests") {
		t.Fatalf("WaitRequests past deadline: %v", err)
	}
}

func TestNewTestServerFails(t *testing.T) {
	ft := &fakeTB{}
	if s := NewTestServer(ft, WithClock(nil)); s != nil || !ft.failed {
		t.Fatal("NewTestServer did not fail the test")
	}
}

type fakeTB struct{ failed bool }

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Cleanup(func())        {}
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }
