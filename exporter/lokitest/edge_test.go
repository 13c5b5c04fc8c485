package lokitest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
)

// serve calls the handler directly with a protobuf push and returns the
// recorder.
func serve(s *Server, body []byte, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, PushPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec
}

func unstarted(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s, err := NewUnstarted(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Loki's authentication middleware answers before the push handler reads the
// body, so a push without credentials (or tenant) is a 401 even when its body
// is too large.
func TestAuthCheckedBeforeBodySize(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 2048)
	tests := map[string]struct {
		opts   []Option
		header map[string]string
	}{
		"no tenant":         {opts: []Option{WithMultiTenant()}},
		"wrong basic auth":  {opts: []Option{WithBasicAuth("u", "p")}, header: map[string]string{"Authorization": "Basic dTp3cm9uZw=="}},
		"no bearer token":   {opts: []Option{WithBearerToken("tok")}},
		"wrong bearer auth": {opts: []Option{WithBearerToken("tok")}, header: map[string]string{"Authorization": "Bearer no"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := unstarted(t, append(tc.opts, WithLimits(Limits{MaxBodySize: 1024}))...)
			rec := serve(s, big, tc.header)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("got %d %q, want 401", rec.Code, rec.Body)
			}
			if ri := s.Requests(); len(ri) != 1 || ri[0].Status != 401 {
				t.Fatalf("requests %+v", ri)
			}
		})
	}
}

// Loki's distributor answers its validation errors grouped by message:
// distinct messages joined by "; ", each with "N errors like: " when there
// is more than one message or it repeats.
func TestPartialRejectionBodyGroupsErrorsAsLoki(t *testing.T) {
	s := unstarted(t, WithClock(fixedClock))
	future := clockNow.Add(time.Hour)
	req := &push.PushRequest{Streams: []push.Stream{
		stream(`{a="1"}`, entry(clockNow, "ok"), entry(future, "f1"), entry(future, "f2"), entry(future, "f3")),
	}}
	rec := serve(s, protoBody(t, req), nil)
	tooNew := fmt.Sprintf("entry for stream '{a=\"1\"}' has timestamp too new: %s", future.Format(time.RFC3339))
	if rec.Code != 400 || strings.TrimSpace(rec.Body.String()) != "3 errors like: "+tooNew {
		t.Fatalf("got %d %q", rec.Code, rec.Body)
	}
	if n := len(s.Entries()); n != 1 {
		t.Fatalf("%d entries stored, want 1", n)
	}

	// Two distinct messages, one of them once.
	s.Reset()
	req = &push.PushRequest{Streams: []push.Stream{
		stream(`{a="1"}`, entry(future, "f1"), entry(clockNow, strings.Repeat("x", DefaultMaxLineSize+1))),
		stream(`{b="1"}`, entry(future, "f2")),
	}}
	rec = serve(s, protoBody(t, req), nil)
	body := strings.TrimSpace(rec.Body.String())
	parts := strings.Split(body, "; ")
	if rec.Code != 400 || len(parts) != 3 {
		t.Fatalf("got %d %q", rec.Code, body)
	}
	for _, p := range parts {
		if !strings.HasPrefix(p, "1 errors like: ") {
			t.Fatalf("part %q of %q", p, body)
		}
	}
	if !strings.Contains(body, "Max entry size") || strings.Count(body, "too new") != 2 {
		t.Fatalf("body %q", body)
	}
}

// Entries too far behind are refused by Loki's ingester, whose answer lists
// up to 10 of them and then a summary line for the stream.
func TestTooFarBehindAnswerListsEntriesAsIngester(t *testing.T) {
	s := unstarted(t, WithClock(fixedClock))
	if rec := serve(s, protoBody(t, &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entry(clockNow, "newest"))}}), nil); rec.Code != 204 {
		t.Fatalf("first push: %d %q", rec.Code, rec.Body)
	}
	var entries []push.Entry
	for i := range 12 {
		entries = append(entries, entry(clockNow.Add(-2*time.Hour-time.Duration(i)*time.Second), fmt.Sprint("late", i)))
	}
	entries = append(entries, entry(clockNow, "fine"))
	rec := serve(s, protoBody(t, &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entries...)}}), nil)
	body := rec.Body.String()
	cutoff := clockNow.Add(-time.Hour)
	first := fmt.Sprintf("entry with timestamp %s ignored, reason: 'entry too far behind, entry timestamp is: %s, oldest acceptable timestamp is: %s',\n",
		entries[0].Timestamp.String(), entries[0].Timestamp.Format(time.RFC3339), cutoff.Format(time.RFC3339))
	if rec.Code != 400 || !strings.HasPrefix(body, first) {
		t.Fatalf("got %d %q, want it to start with %q", rec.Code, body, first)
	}
	if n := strings.Count(body, "ignored, reason:"); n != 10 {
		t.Fatalf("%d entries listed, want 10: %q", n, body)
	}
	if !strings.HasSuffix(strings.TrimSpace(body), `user 'fake', total ignored: 12 out of 13 for stream: {a="1"}`) {
		t.Fatalf("summary missing: %q", body)
	}
	if ri := s.Requests()[1]; ri.Accepted != 1 || ri.Rejected != 12 || len(ri.Rejections) != 12 {
		t.Fatalf("request info %+v", ri)
	}
}

// Loki's ingester answers for the last stream of the push it handled: a
// push whose last stream was stored is a success even when an earlier stream
// hit the stream limit (the earlier stream's entries are lost), and an
// ingester error replaces the distributor's validation errors.
func TestIngesterAnswerIsLastStreams(t *testing.T) {
	tests := map[string]struct {
		streams  []push.Stream
		status   int
		reason   string
		accepted int
	}{
		"limited stream then stored one": {
			streams:  []push.Stream{stream(`{s="1"}`, entry(clockNow, "1")), stream(`{s="2"}`, entry(clockNow, "2")), stream(`{s="3"}`, entry(clockNow, "3")), stream(`{s="1"}`, entry(clockNow, "1b"))},
			status:   204,
			accepted: 3,
		},
		"limited stream last": {
			streams:  []push.Stream{stream(`{s="1"}`, entry(clockNow, "1")), stream(`{s="2"}`, entry(clockNow, "2")), stream(`{s="3"}`, entry(clockNow, "3"))},
			status:   429,
			reason:   "Maximum active stream limit exceeded when trying to create stream {s=\"3\"}",
			accepted: 2,
		},
		"limited stream last, with a validation error": {
			streams:  []push.Stream{stream(`{s="1"}`, entry(clockNow, "1"), entry(clockNow.Add(time.Hour), "new")), stream(`{s="2"}`, entry(clockNow, "2")), stream(`{s="3"}`, entry(clockNow, "3"))},
			status:   429,
			reason:   "Maximum active stream limit exceeded",
			accepted: 2,
		},
		"validation error, ingester fine": {
			streams:  []push.Stream{stream(`{s="1"}`, entry(clockNow, "1"), entry(clockNow.Add(time.Hour), "new"))},
			status:   400,
			reason:   "timestamp too new",
			accepted: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := unstarted(t, WithClock(fixedClock), WithLimits(Limits{MaxStreams: 2}))
			rec := serve(s, protoBody(t, &push.PushRequest{Streams: tc.streams}), nil)
			if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.reason) {
				t.Fatalf("got %d %q, want %d with %q", rec.Code, rec.Body, tc.status, tc.reason)
			}
			ri := s.Requests()[0]
			if ri.Accepted != tc.accepted || len(s.Entries()) != tc.accepted || ri.Accepted+ri.Rejected != countEntries(tc.streams) {
				t.Fatalf("request info %+v, %d entries", ri, len(s.Entries()))
			}
		})
	}
}

func countEntries(ss []push.Stream) int {
	n := 0
	for _, s := range ss {
		n += len(s.Entries)
	}
	return n
}

// blockingBody is a request body that blocks until released.
type blockingBody struct {
	r       io.Reader
	reading chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingBody) Read(p []byte) (int, error) {
	b.once.Do(func() { close(b.reading) })
	<-b.release
	return b.r.Read(p)
}

// A push that arrived before a Reset and finishes after it must not reuse a
// push number of the pushes that came after the Reset.
func TestResetDuringPushKeepsPushNumbersUnique(t *testing.T) {
	s := unstarted(t, WithClock(fixedClock))
	body := &blockingBody{r: bytes.NewReader(protoBody(t, oneEntryAt("straggler"))), reading: make(chan struct{}), release: make(chan struct{})}
	req := httptest.NewRequest(http.MethodPost, PushPath, body)
	req.Header.Set("Content-Type", "application/x-protobuf")
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		done <- rec.Code
	}()
	<-body.reading
	s.Reset()
	if rec := serve(s, protoBody(t, oneEntryAt("after reset")), nil); rec.Code != 204 {
		t.Fatalf("push after reset: %d %q", rec.Code, rec.Body)
	}
	close(body.release)
	if code := <-done; code != 204 {
		t.Fatalf("straggler: %d", code)
	}
	ri := s.Requests()
	seen := map[int]bool{}
	for _, r := range ri {
		if seen[r.Push] {
			t.Fatalf("push number %d used twice: %+v", r.Push, ri)
		}
		seen[r.Push] = true
	}
	if s.Pushes() != len(ri) {
		t.Fatalf("Pushes() = %d, %d requests recorded", s.Pushes(), len(ri))
	}
	for _, e := range s.Entries() {
		if !seen[e.Push] {
			t.Fatalf("entry %q from push %d, which is not recorded: %+v", e.Line, e.Push, ri)
		}
	}
}

func oneEntryAt(line string) *push.PushRequest {
	return &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entry(clockNow, line))}}
}

// Close ends waits: nothing can arrive any more.
func TestWaitReturnsOnClose(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	go func() {
		_, err := s.WaitEntries(ctx, 1)
		errs <- err
	}()
	go func() {
		_, err := s.WaitRequests(ctx, 1)
		errs <- err
	}()
	time.Sleep(10 * time.Millisecond) // let the waits start; they must end either way
	s.Close()
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Fatalf("wait ended with %v, want ErrClosed", err)
		}
	}
	// After Close, a wait already satisfied still succeeds; one that is not
	// fails at once.
	if _, err := s.WaitEntries(ctx, 0); err != nil {
		t.Fatalf("satisfied wait after Close: %v", err)
	}
	if _, err := s.WaitRequests(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("wait after Close: %v", err)
	}
}

// Returned entries, streams and requests are copies: changing them does not
// change what the server holds.
func TestReturnedDataIsACopy(t *testing.T) {
	s := unstarted(t, WithClock(fixedClock))
	req := &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entry(clockNow, "x", "k", "v"), entry(clockNow, "y", "k", "v"))}}
	serve(s, protoBody(t, req), map[string]string{"X-Test": "h"})
	es := s.Entries()
	es[0].Labels["a"] = "changed"
	es[0].Metadata["k"] = "changed"
	st := s.Streams()
	st[0].Labels["a"] = "changed"
	st[0].Entries[1].Metadata["k"] = "changed"
	ri := s.Requests()
	ri[0].Header.Set("X-Test", "changed")
	for _, e := range s.Entries() {
		if e.Labels["a"] != "1" || e.Metadata["k"] != "v" {
			t.Fatalf("server state changed: %+v", e)
		}
	}
	if s.Requests()[0].Header.Get("X-Test") != "h" {
		t.Fatal("request header changed")
	}
}

// Pushes, fault scripting, Reset, Stop/Restart and every reader run at once;
// run under -race. Afterwards every request is recorded once and every entry
// belongs to a recorded request.
func TestConcurrentResetAndPush(t *testing.T) {
	s := NewTestServer(t)
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(2)
	go func() {
		defer bg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			switch i % 6 {
			case 0:
				s.Reset()
			case 1:
				s.FailNext(1, 503)
			case 2:
				s.DropNext(1, AfterStore())
			case 3:
				s.SetDelay(time.Millisecond)
			case 4:
				s.SetDelay(0)
			case 5:
				s.Stop()
				if err := s.Restart(); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	go func() {
		defer bg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			_, _ = s.WaitEntries(ctx, 1<<30)
			_, _ = s.WaitRequests(ctx, 1<<30)
			cancel()
			_ = s.Streams()
			_ = s.Dump()
		}
	}()
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(t)
			for i := range 30 {
				req := &push.PushRequest{Streams: []push.Stream{stream(fmt.Sprintf(`{p="%d"}`, p), entry(time.Now(), fmt.Sprint(i)))}}
				_ = pushProto(t, c, s.URL(), req, nil)
			}
		}()
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	ri := s.Requests()
	seen := map[int]bool{}
	for _, r := range ri {
		if seen[r.Push] {
			t.Fatalf("push number %d recorded twice", r.Push)
		}
		seen[r.Push] = true
	}
	for _, e := range s.Entries() {
		if !seen[e.Push] {
			t.Fatalf("entry of unrecorded push %d", e.Push)
		}
	}
}

// A snappy block header announces the decoded size; a few bytes claiming
// 64 MiB must be refused as corrupt before that much memory is allocated
// (a valid block decodes to at most about 22 times its size).
func TestSnappyHeaderCannotForceLargeAllocation(t *testing.T) {
	s := unstarted(t)
	// uvarint 64 MiB, then one literal tag: far too little data.
	body := binary.AppendUvarint(nil, 64<<20)
	body = append(body, 0x00, 'x')
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rec := serve(s, body, nil)
	runtime.ReadMemStats(&after)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "snappy") {
		t.Fatalf("got %d %q", rec.Code, rec.Body)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Fatalf("a %d-byte body made the server allocate %d bytes", len(body), grew)
	}
}

// Loki reads a JSON timestamp as a JSON string (escapes undone) holding
// strconv.ParseInt's base-10 syntax; anything else fails the push.
func TestJSONTimestampForms(t *testing.T) {
	tests := map[string]struct {
		ts     string // raw JSON
		status int
		want   int64
	}{
		"plain":          {ts: `"1748779200000000000"`, status: 204, want: 1748779200000000000},
		"leading zeros":  {ts: `"0001748779200000000000"`, status: 204, want: 1748779200000000000},
		"plus sign":      {ts: `"+1748779200000000000"`, status: 204, want: 1748779200000000000},
		"escaped digits": {ts: `"\u0031748779200000000000"`, status: 204, want: 1748779200000000000},
		"number":         {ts: `1748779200000000000`, status: 400},
		"null":           {ts: `null`, status: 400},
		"fraction":       {ts: `"1748779200.5"`, status: 400},
		"RFC 3339":       {ts: `"2025-06-01T12:00:00Z"`, status: 400},
		"underscores":    {ts: `"1_748_779_200_000_000_000"`, status: 400},
		"overflow":       {ts: `"99999999999999999999"`, status: 400},
		"empty":          {ts: `""`, status: 400},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := unstarted(t, WithClock(fixedClock))
			body := `{"streams":[{"stream":{"a":"1"},"values":[[` + tc.ts + `,"x"]]}]}`
			rec := serve(s, []byte(body), map[string]string{"Content-Type": "application/json"})
			if rec.Code != tc.status {
				t.Fatalf("got %d %q, want %d", rec.Code, rec.Body, tc.status)
			}
			es := s.Entries()
			if tc.status == 204 && (len(es) != 1 || es[0].Timestamp.UnixNano() != tc.want) {
				t.Fatalf("entries %+v", es)
			}
			if tc.status != 204 && len(es) != 0 {
				t.Fatalf("stored %+v", es)
			}
		})
	}
}

// A 1xx status cannot be a final answer: net/http sends it as an interim
// response and then 200, so the client would see 200 while the request is
// recorded with the 1xx. Scripting one is refused on the caller's goroutine.
func TestFailNextRefusesInformationalStatus(t *testing.T) {
	s := unstarted(t)
	for _, status := range []int{100, 103, 199} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("FailNext(1, %d) accepted", status)
				}
			}()
			s.FailNext(1, status)
		}()
	}
	if n := s.PendingFaults(); n != 0 {
		t.Fatalf("%d faults queued", n)
	}
}
