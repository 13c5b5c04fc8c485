package exporter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fastConfig returns a config with waits short enough for real-time tests.
func fastConfig(url string) Config {
	return Config{
		URL:           url,
		MinBackoff:    time.Millisecond,
		MaxBackoff:    2 * time.Millisecond,
		MaxRetryAfter: 20 * time.Millisecond,
		MaxRetryTime:  10 * time.Second,
		Timeout:       5 * time.Second,
	}
}

func newTestClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return c
}

// outcome is the class of an Export result.
type outcome int

const (
	delivered outcome = iota
	rejected          // *PermanentError
	partial           // *PartialError
	retryable         // any other error
)

// accepted reports whether r is a 2xx answer.
func (r reply) accepted() bool {
	return !r.hangup && !r.hang && (r.status == 0 || r.status/100 == 2)
}

func classify(err error) outcome {
	var pe *PermanentError
	var pa *PartialError
	switch {
	case err == nil:
		return delivered
	case errors.As(err, &pa):
		return partial
	case errors.As(err, &pe):
		return rejected
	default:
		return retryable
	}
}

func (o outcome) String() string {
	return [...]string{"delivered", "rejected", "partial", "retryable"}[o]
}

// TestFaults sends an 8-entry batch to a fake Loki scripted with one fault
// and checks how the client classified it, with exact counts.
func TestFaults(t *testing.T) {
	ra := func(status int, v string) reply {
		return reply{status: status, header: map[string]string{"Retry-After": v}}
	}
	// too large answers 413 to requests of more than limit entries.
	tooLarge := func(limit int) func(int, *pushed) reply {
		return func(_ int, p *pushed) reply {
			if p.Batch.Len() > limit {
				return reply{status: 413, body: "request body too large"}
			}
			return reply{}
		}
	}
	tests := map[string]struct {
		script      func(int, *pushed) reply
		retryTime   time.Duration // MaxRetryTime; default 10s
		want        outcome
		status      int // of the PermanentError or last StatusError
		reason      string
		requests    int // exact, or at least -requests when negative
		retries     int // exact when requests is
		sent        int // entries accepted (client stats)
		rejected    int
		splits      int
		minWait     time.Duration // least gap between the first two requests
		wantBatches []int         // entries per request, when checked
	}{
		"200":                  {script: always(reply{status: 200}), want: delivered, requests: 1, sent: 8},
		"204":                  {script: always(reply{}), want: delivered, requests: 1, sent: 8},
		"400":                  {script: always(reply{status: 400, body: "entry too far behind\n"}), want: rejected, status: 400, reason: "entry too far behind", requests: 1, rejected: 8},
		"401":                  {script: always(reply{status: 401, body: "no org id"}), want: rejected, status: 401, reason: "no org id", requests: 1, rejected: 8},
		"403":                  {script: always(reply{status: 403}), want: rejected, status: 403, requests: 1, rejected: 8},
		"404":                  {script: always(reply{status: 404, body: "404 page not found"}), want: rejected, status: 404, reason: "404 page not found", requests: 1, rejected: 8},
		"422":                  {script: always(reply{status: 422}), want: rejected, status: 422, requests: 1, rejected: 8},
		"501":                  {script: always(reply{status: 501}), want: rejected, status: 501, requests: 1, rejected: 8},
		"302 not followed":     {script: always(reply{status: 302, header: map[string]string{"Location": "https://u:pw@sso.example/login?token=x"}}), want: rejected, status: 302, reason: "redirect to https://sso.example/login not followed", requests: 1, rejected: 8},
		"307 followed":         {script: replies(reply{status: 307, header: map[string]string{"Location": "/elsewhere"}}), want: delivered, requests: 2, sent: 8},
		"408 then ok":          {script: replies(reply{status: 408}), want: delivered, requests: 2, retries: 1, sent: 8},
		"429 then ok":          {script: replies(reply{status: 429}, reply{status: 429}), want: delivered, requests: 3, retries: 2, sent: 8},
		"429 retry-after secs": {script: replies(ra(429, "1")), want: delivered, requests: 2, retries: 1, sent: 8, minWait: 20 * time.Millisecond},
		"429 retry-after date": {script: replies(ra(429, time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))), want: delivered, requests: 2, retries: 1, sent: 8, minWait: 20 * time.Millisecond},
		"500 then ok":          {script: replies(reply{status: 500}), want: delivered, requests: 2, retries: 1, sent: 8},
		"502 then ok":          {script: replies(reply{status: 502}, reply{status: 502}), want: delivered, requests: 3, retries: 2, sent: 8},
		"503 retry-after":      {script: replies(ra(503, "1")), want: delivered, requests: 2, retries: 1, sent: 8, minWait: 20 * time.Millisecond},
		"504 then ok":          {script: replies(reply{status: 504}), want: delivered, requests: 2, retries: 1, sent: 8},
		"dropped connection":   {script: replies(reply{hangup: true}, reply{hangup: true}), want: delivered, requests: 3, retries: 2, sent: 8},
		"503 until giving up": {
			script: always(reply{status: 503, body: "ingester unavailable"}), retryTime: time.Second,
			want: retryable, status: 503, reason: "ingester unavailable", requests: -2,
		},
		"429 until giving up": {
			script: always(ra(429, "3600")), retryTime: time.Second,
			want: retryable, status: 429, requests: -2,
		},
		"413 splits": {
			script: tooLarge(2), want: delivered, requests: 7, sent: 8, splits: 3,
			wantBatches: []int{8, 4, 2, 2, 4, 2, 2},
		},
		"413 single entry": {
			script: tooLarge(0), want: rejected, status: 413, reason: "too large", requests: 15, rejected: 8, splits: 7,
			wantBatches: []int{8, 4, 2, 1, 1, 2, 1, 1, 4, 2, 1, 1, 2, 1, 1},
		},
		"413 one entry too large": {
			script: func(n int, p *pushed) reply {
				if p.Batch.Len() > 4 || slices.Contains(batchLines(p.Batch), "line 5") {
					return reply{status: 413}
				}
				return reply{}
			},
			want: rejected, status: 413, requests: 7, sent: 7, rejected: 1, splits: 3,
			wantBatches: []int{8, 4, 4, 2, 1, 1, 2},
		},
		"413 then 400 for a half": {
			script: func(n int, p *pushed) reply {
				switch {
				case p.Batch.Len() > 4:
					return reply{status: 413}
				case slices.Contains(batchLines(p.Batch), "line 6"):
					return reply{status: 400, body: "bad half"}
				}
				return reply{}
			},
			want: rejected, status: 400, reason: "bad half", requests: 3, sent: 4, rejected: 4, splits: 1,
			wantBatches: []int{8, 4, 4},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.script)
			cfg := fastConfig(f.serve())
			if tt.retryTime > 0 {
				cfg.MaxRetryTime = tt.retryTime
			}
			c := newTestClient(t, cfg)
			b := testBatch(8, 3)
			err := c.Export(context.Background(), b)
			if got := classify(err); got != tt.want {
				t.Fatalf("Export = %v (%v), want %v", err, got, tt.want)
			}
			st := c.Stats()
			reqs := f.requests()
			switch {
			case tt.requests < 0 && len(reqs) < -tt.requests:
				t.Errorf("fake saw %d requests, want at least %d", len(reqs), -tt.requests)
			case tt.requests >= 0 && len(reqs) != tt.requests:
				t.Errorf("fake saw %d requests, want %d", len(reqs), tt.requests)
			}
			// A request cut by MaxRetryTime may not have reached the fake.
			if int(st.Requests) != len(reqs) && (tt.requests >= 0 || int(st.Requests) != len(reqs)+1) {
				t.Errorf("Stats.Requests = %d, fake saw %d", st.Requests, len(reqs))
			}
			if tt.requests >= 0 && int(st.Retries) != tt.retries {
				t.Errorf("Stats.Retries = %d, want %d", st.Retries, tt.retries)
			}
			if tt.requests < 0 && st.Retries != st.Requests-1 {
				t.Errorf("Stats.Retries = %d after %d requests", st.Retries, st.Requests)
			}
			if int(st.EntriesSent) != tt.sent || int(st.EntriesRejected) != tt.rejected || int(st.Splits) != tt.splits {
				t.Errorf("Stats sent/rejected/splits = %d/%d/%d, want %d/%d/%d",
					st.EntriesSent, st.EntriesRejected, st.Splits, tt.sent, tt.rejected, tt.splits)
			}
			var body int
			for _, p := range reqs {
				body += p.Size
			}
			if int(st.BytesSent) != body && tt.requests >= 0 {
				t.Errorf("Stats.BytesSent = %d, fake received %d", st.BytesSent, body)
			}
			if tt.wantBatches != nil {
				var sizes []int
				for _, p := range reqs {
					sizes = append(sizes, p.Batch.Len())
				}
				if !reflect.DeepEqual(sizes, tt.wantBatches) {
					t.Errorf("entries per request = %v, want %v", sizes, tt.wantBatches)
				}
			}
			// Whatever was delivered was delivered once and in order.
			ok := f.lines(func(n int) bool { return tt.script(n, reqs[n]).accepted() })
			if tt.want == delivered && !reflect.DeepEqual(ok, batchLines(b)) {
				t.Errorf("delivered lines %q, want %q", ok, batchLines(b))
			}
			if len(ok) != tt.sent {
				t.Errorf("fake accepted %d entries, client counted %d", len(ok), tt.sent)
			}
			if tt.minWait > 0 {
				if gap := reqs[1].At.Sub(reqs[0].At); gap < tt.minWait {
					t.Errorf("retried after %v, want at least %v (Retry-After capped by MaxRetryAfter)", gap, tt.minWait)
				}
			}
			var pe *PermanentError
			var se *StatusError
			switch tt.want {
			case rejected:
				errors.As(err, &pe)
				if pe.Status != tt.status || pe.Entries != tt.rejected || !strings.Contains(pe.Reason, tt.reason) {
					t.Errorf("PermanentError = %+v, want status %d, %d entries, reason with %q", pe, tt.status, tt.rejected, tt.reason)
				}
			case retryable:
				if !errors.As(err, &se) || se.Status != tt.status || !strings.Contains(se.Reason, tt.reason) {
					t.Errorf("error %v does not wrap a StatusError with status %d", err, tt.status)
				}
				if want := "status " + strconv.Itoa(tt.status); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
				if errors.As(err, new(*PermanentError)) {
					t.Errorf("retryable error %v is also permanent", err)
				}
			}
			if tt.want != rejected && st.EntriesRejected != 0 {
				t.Errorf("rejected %d entries", st.EntriesRejected)
			}
			if wantLast := tt.script(len(reqs)-1, reqs[len(reqs)-1]); tt.requests >= 0 && !wantLast.hangup && st.LastStatus != cmpOr(wantLast.status, 204) {
				t.Errorf("LastStatus = %d, want %d", st.LastStatus, cmpOr(wantLast.status, 204))
			}
		})
	}
}

// TestPartial checks that after some halves of a split batch were
// delivered, a retryable failure returns exactly what was not delivered.
func TestPartial(t *testing.T) {
	tests := map[string]struct {
		script        func(int, *pushed) reply
		remaining     []string
		rejected      int // entries in PartialError.Rejected
		sent          int
		rejectedTotal int
	}{
		"second half fails": {
			// 8 -> 413; 4 -> 413; 2 ok; then 503 for ever.
			script: func(n int, p *pushed) reply {
				switch {
				case p.Batch.Len() > 2:
					return reply{status: 413}
				case n >= 3:
					return reply{status: 503}
				}
				return reply{}
			},
			remaining: []string{"line 2", "line 3", "line 4", "line 5", "line 6", "line 7"},
			sent:      2,
		},
		"rejected then fails": {
			// 8 -> 413; 4 -> 400 (rejected); then 503 for ever.
			script: func(n int, p *pushed) reply {
				switch {
				case p.Batch.Len() > 4:
					return reply{status: 413}
				case n == 1:
					return reply{status: 400, body: "bad"}
				}
				return reply{status: 503}
			},
			remaining:     []string{"line 4", "line 5", "line 6", "line 7"},
			rejected:      4,
			rejectedTotal: 4,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.script)
			cfg := fastConfig(f.serve())
			cfg.MaxRetryTime = time.Second
			c := newTestClient(t, cfg)
			b := testBatch(8, 3)
			err := c.Export(context.Background(), b)
			var pa *PartialError
			if !errors.As(err, &pa) {
				t.Fatalf("Export = %v, want a PartialError", err)
			}
			if got := batchLines(pa.Remaining); !reflect.DeepEqual(got, tt.remaining) {
				t.Errorf("Remaining = %q, want %q", got, tt.remaining)
			}
			if pa.Remaining.Tenant != b.Tenant {
				t.Errorf("Remaining.Tenant = %q", pa.Remaining.Tenant)
			}
			// A stream cut by a split comes back whole.
			for i := 1; i < len(pa.Remaining.Streams); i++ {
				if pa.Remaining.Streams[i].Labels == pa.Remaining.Streams[i-1].Labels {
					t.Errorf("Remaining has stream %s twice in a row", pa.Remaining.Streams[i].Labels)
				}
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Status != 503 {
				t.Errorf("PartialError.Err = %v, want a 503 StatusError", pa.Err)
			}
			switch {
			case tt.rejected == 0 && pa.Rejected != nil:
				t.Errorf("Rejected = %+v, want nil", pa.Rejected)
			case tt.rejected > 0 && (pa.Rejected == nil || pa.Rejected.Entries != tt.rejected || pa.Rejected.Status != 400):
				t.Errorf("Rejected = %+v, want 400 for %d entries", pa.Rejected, tt.rejected)
			}
			st := c.Stats()
			if int(st.EntriesSent) != tt.sent || int(st.EntriesRejected) != tt.rejectedTotal {
				t.Errorf("sent/rejected = %d/%d, want %d/%d", st.EntriesSent, st.EntriesRejected, tt.sent, tt.rejectedTotal)
			}
			// Sending Remaining delivers the rest; nothing is sent twice.
			f2 := newFake(t, nil)
			c2 := newTestClient(t, fastConfig(f2.serve()))
			if err := c2.Export(context.Background(), pa.Remaining); err != nil {
				t.Fatal(err)
			}
			delivered := f.lines(func(n int) bool { return tt.script(n, f.requests()[n]).status == 0 })
			delivered = append(delivered, f2.lines(func(int) bool { return true })...)
			var want []string
			for _, l := range batchLines(b) {
				if slices.Contains(delivered, l) || slices.Contains(tt.remaining, l) {
					want = append(want, l)
				}
			}
			if !reflect.DeepEqual(delivered, want) || len(delivered)+tt.rejectedTotal != b.Len() {
				t.Errorf("delivered %q; want every entry not rejected once, in order", delivered)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := fastConfig("http://" + addr)
	cfg.MaxRetryTime = 300 * time.Millisecond
	c := newTestClient(t, cfg)
	err = c.Export(context.Background(), testBatch(3, 3))
	if classify(err) != retryable || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Export = %v, want a retryable connection refused error", err)
	}
	if !strings.Contains(err.Error(), "http://"+addr+PushPath) {
		t.Errorf("error %q does not name the push URL", err)
	}
	st := c.Stats()
	if st.Requests < 2 || st.Retries != st.Requests-1 || st.LastStatus != 0 || st.EntriesSent != 0 {
		t.Errorf("Stats = %+v, want several requests, all retried, no status", st)
	}
}

func TestEmptyBatch(t *testing.T) {
	f := newFake(t, nil)
	c := newTestClient(t, fastConfig(f.serve()))
	for _, b := range []*Batch{nil, {}, {Streams: []Stream{{Labels: `{a="b"}`}}}} {
		if err := c.Export(context.Background(), b); err != nil {
			t.Errorf("Export(%+v) = %v", b, err)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests for empty batches, want 0 (Loki answers 422)", n)
	}
}

func TestHeaders(t *testing.T) {
	tests := map[string]struct {
		cfg    func(*Config)
		tenant string // Batch.Tenant
		want   map[string]string
		absent []string
	}{
		"defaults": {
			cfg:    func(*Config) {},
			want:   map[string]string{"User-Agent": "lokislog/" + Version, "Content-Type": "application/x-protobuf"},
			absent: []string{"X-Scope-OrgID", "Authorization", "Content-Encoding"},
		},
		"tenant from config": {
			cfg:  func(c *Config) { c.TenantID = "team-a" },
			want: map[string]string{"X-Scope-OrgID": "team-a"},
		},
		"tenant from batch": {
			cfg:    func(c *Config) { c.TenantID = "team-a" },
			tenant: "team-b",
			want:   map[string]string{"X-Scope-OrgID": "team-b"},
		},
		"basic auth": {
			cfg:  func(c *Config) { c.Username, c.Password = "user", "secret" },
			want: map[string]string{"Authorization": "Basic dXNlcjpzZWNyZXQ="},
		},
		"basic auth from url": {
			cfg:  func(c *Config) { c.URL = strings.Replace(c.URL, "http://", "http://user:secret@", 1) },
			want: map[string]string{"Authorization": "Basic dXNlcjpzZWNyZXQ="},
		},
		"config auth over url": {
			cfg: func(c *Config) {
				c.URL = strings.Replace(c.URL, "http://", "http://other:pw@", 1)
				c.Username, c.Password = "user", "secret"
			},
			want: map[string]string{"Authorization": "Basic dXNlcjpzZWNyZXQ="},
		},
		"bearer": {
			cfg:  func(c *Config) { c.BearerToken = "tok123" },
			want: map[string]string{"Authorization": "Bearer tok123"},
		},
		"custom headers": {
			cfg: func(c *Config) {
				c.Headers = map[string]string{"X-Custom": "v1", "content-type": "text/plain", "X-Scope-OrgID": "from-header"}
				c.UserAgent = "mu-api/2.0"
			},
			want: map[string]string{"X-Custom": "v1", "Content-Type": "application/x-protobuf", "User-Agent": "mu-api/2.0", "X-Scope-OrgID": "from-header"},
		},
		"json gzip": {
			cfg:  func(c *Config) { c.Protocol = "json" },
			want: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"},
		},
		"json plain": {
			cfg:    func(c *Config) { c.Protocol, c.Compression = "JSON", "none" },
			want:   map[string]string{"Content-Type": "application/json"},
			absent: []string{"Content-Encoding"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, nil)
			cfg := fastConfig(f.serve())
			tt.cfg(&cfg)
			c := newTestClient(t, cfg)
			b := testBatch(5, 2)
			b.Tenant = tt.tenant
			if err := c.Export(context.Background(), b); err != nil {
				t.Fatal(err)
			}
			reqs := f.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			p := reqs[0]
			for k, v := range tt.want {
				if got := p.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.absent {
				if v, ok := p.Header[http.CanonicalHeaderKey(k)]; ok {
					t.Errorf("%s = %q, want none", k, v)
				}
			}
			if p.Path != PushPath {
				t.Errorf("path = %q", p.Path)
			}
			if got, want := batchLines(p.Batch), batchLines(b); !reflect.DeepEqual(got, want) {
				t.Errorf("lines = %q, want %q", got, want)
			}
			// Both protocols carry timestamps and metadata.
			e := p.Batch.Streams[1].Entries[0]
			if e.Timestamp != b.Streams[1].Entries[0].Timestamp || !reflect.DeepEqual(e.Metadata, b.Streams[1].Entries[0].Metadata) {
				t.Errorf("entry = %+v, want %+v", e, b.Streams[1].Entries[0])
			}
		})
	}
}

// TestJSONBadLabels checks that in JSON mode a stream whose labels cannot
// be encoded is rejected by the client and the rest is sent.
func TestJSONBadLabels(t *testing.T) {
	f := newFake(t, nil)
	cfg := fastConfig(f.serve())
	cfg.Protocol = "json"
	c := newTestClient(t, cfg)
	b := testBatch(6, 2)
	b.Streams[1].Labels = `{app="test", app="dup"}`
	err := c.Export(context.Background(), b)
	var pe *PermanentError
	if !errors.As(err, &pe) || pe.Status != 0 || pe.Entries != 2 || !strings.Contains(pe.Reason, "duplicate") {
		t.Fatalf("Export = %v, want a PermanentError for 2 entries", err)
	}
	want := []string{"line 0", "line 1", "line 4", "line 5"}
	if got := f.lines(func(int) bool { return true }); !reflect.DeepEqual(got, want) {
		t.Errorf("received %q, want %q", got, want)
	}
	if st := c.Stats(); st.EntriesSent != 4 || st.EntriesRejected != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestInvalidTenant(t *testing.T) {
	f := newFake(t, nil)
	c := newTestClient(t, fastConfig(f.serve()))
	b := testBatch(2, 2)
	b.Tenant = "a\nb"
	var pe *PermanentError
	if err := c.Export(context.Background(), b); !errors.As(err, &pe) || pe.Entries != 2 {
		t.Fatalf("Export = %v, want a PermanentError", err)
	}
	if len(f.requests()) != 0 {
		t.Errorf("sent a request with an invalid tenant")
	}
}

func TestURLPath(t *testing.T) {
	tests := map[string]string{
		"http://loki:3100":                          "http://loki:3100/loki/api/v1/push",
		"http://loki:3100/":                         "http://loki:3100/loki/api/v1/push",
		"https://gw.example/loki":                   "https://gw.example/loki/loki/api/v1/push",
		"https://gw.example/loki/":                  "https://gw.example/loki/loki/api/v1/push",
		"http://loki:3100/loki/api/v1/push":         "http://loki:3100/loki/api/v1/push",
		"http://loki:3100/loki/api/v1/push/":        "http://loki:3100/loki/api/v1/push",
		"http://vl:9428/insert/loki/api/v1/push":    "http://vl:9428/insert/loki/api/v1/push",
		"http://gw/my/loki/api/v1/pushx":            "http://gw/my/loki/api/v1/pushx/loki/api/v1/push",
		"http://gw/myloki/api/v1/push":              "http://gw/myloki/api/v1/push/loki/api/v1/push",
		"http://gw/p?tenant=x":                      "http://gw/p/loki/api/v1/push?tenant=x",
		"http://user:pass@loki:3100":                "http://loki:3100/loki/api/v1/push",
		"http://[::1]:3100#frag":                    "http://[::1]:3100/loki/api/v1/push",
		"HTTP://LOKI:3100/a%20b":                    "http://LOKI:3100/a%20b/loki/api/v1/push",
		"https://logs-prod.grafana.net/loki/api/v1": "https://logs-prod.grafana.net/loki/api/v1/loki/api/v1/push",
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			c, err := NewClient(Config{URL: in})
			if err != nil {
				t.Fatal(err)
			}
			if c.set.url != want {
				t.Errorf("push URL = %q, want %q", c.set.url, want)
			}
			if strings.Contains(c.set.redacted, "pass") || strings.Contains(c.set.redacted, "?") {
				t.Errorf("redacted URL %q keeps user information or query", c.set.redacted)
			}
		})
	}
	// The path prefix is really used.
	f := newFake(t, nil)
	c := newTestClient(t, fastConfig(f.serve()+"/gw/?x=1"))
	if err := c.Export(context.Background(), testBatch(1, 1)); err != nil {
		t.Fatal(err)
	}
	if p := f.requests()[0]; p.Path != "/gw"+PushPath || p.Query != "x=1" {
		t.Errorf("request to %q?%q", p.Path, p.Query)
	}
}

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	pki := newPKI(t, dir)
	notPEM := filepath.Join(dir, "notpem.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		cfg Config
		err string // part of NewClient's error; "" when valid
	}{
		"minimal":               {cfg: Config{URL: "http://loki:3100"}},
		"everything":            {cfg: Config{URL: "https://loki", TenantID: "t", Protocol: "json", Compression: "none", Username: "u", Password: "p", Headers: map[string]string{"X-A": "b"}, TLS: TLSConfig{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey, ServerName: "loki"}, Timeout: time.Second, MinBackoff: time.Millisecond, MaxBackoff: time.Second, MaxRetryTime: time.Minute, MaxRetryAfter: time.Second, UserAgent: "x"}},
		"protobuf snappy":       {cfg: Config{URL: "http://l", Protocol: "protobuf", Compression: "snappy"}},
		"http client skips tls": {cfg: Config{URL: "http://l", HTTPClient: http.DefaultClient, TLS: TLSConfig{CAFile: "/does/not/exist"}}},
		"no url":                {cfg: Config{}, err: "url is required"},
		"bad scheme":            {cfg: Config{URL: "ftp://loki"}, err: `scheme "ftp"`},
		"no scheme":             {cfg: Config{URL: "loki:3100"}, err: "scheme"},
		"no host":               {cfg: Config{URL: "http://"}, err: "no host"},
		"port only":             {cfg: Config{URL: "http://:3100"}, err: "no host"},
		"unparsable":            {cfg: Config{URL: "http://user:secretpw@loki:port"}, err: "invalid port"},
		"protocol":              {cfg: Config{URL: "http://l", Protocol: "xml"}, err: `protocol "xml"`},
		"gzip protobuf":         {cfg: Config{URL: "http://l", Compression: "gzip"}, err: "snappy"},
		"zstd json":             {cfg: Config{URL: "http://l", Protocol: "json", Compression: "zstd"}, err: `compression "zstd"`},
		"password only":         {cfg: Config{URL: "http://l", Password: "p"}, err: "password set without username"},
		"basic and bearer":      {cfg: Config{URL: "http://l", Username: "u", BearerToken: "t"}, err: "both basic auth and bearer token"},
		"negative timeout":      {cfg: Config{URL: "http://l", Timeout: -1}, err: "timeout: negative"},
		"negative min backoff":  {cfg: Config{URL: "http://l", MinBackoff: -1}, err: "min_backoff: negative"},
		"negative max backoff":  {cfg: Config{URL: "http://l", MaxBackoff: -1}, err: "max_backoff: negative"},
		"negative retry time":   {cfg: Config{URL: "http://l", MaxRetryTime: -time.Second}, err: "max_retry_time: negative"},
		"negative retry after":  {cfg: Config{URL: "http://l", MaxRetryAfter: -time.Second}, err: "max_retry_after: negative"},
		"backoffs swapped":      {cfg: Config{URL: "http://l", MinBackoff: time.Minute, MaxBackoff: time.Second}, err: "less than min_backoff"},
		"header name":           {cfg: Config{URL: "http://l", Headers: map[string]string{"Bad Name": "v"}}, err: "invalid header name"},
		"header value":          {cfg: Config{URL: "http://l", Headers: map[string]string{"X-A": "v\r\nX-B: c"}}, err: "control character"},
		"tenant":                {cfg: Config{URL: "http://l", TenantID: "a\nb"}, err: "tenant_id"},
		"user agent":            {cfg: Config{URL: "http://l", UserAgent: "a\x00"}, err: "user_agent"},
		"bearer line break":     {cfg: Config{URL: "http://l", BearerToken: "a\nb"}, err: "bearer_token"},
		"missing ca":            {cfg: Config{URL: "https://l", TLS: TLSConfig{CAFile: dir + "/missing.pem"}}, err: "missing.pem"},
		"ca not pem":            {cfg: Config{URL: "https://l", TLS: TLSConfig{CAFile: notPEM}}, err: "notpem.txt: no PEM certificate"},
		"cert without key":      {cfg: Config{URL: "https://l", TLS: TLSConfig{CertFile: pki.clientCert}}, err: "cert_file set without key_file"},
		"key without cert":      {cfg: Config{URL: "https://l", TLS: TLSConfig{KeyFile: pki.clientKey}}, err: "key_file set without cert_file"},
		"key mismatch":          {cfg: Config{URL: "https://l", TLS: TLSConfig{CertFile: pki.clientCert, KeyFile: pki.serverKey}}, err: "client.crt"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := NewClient(tt.cfg)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("NewClient: %v", err)
				}
				c.Shutdown(context.Background())
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("NewClient error = %v, want one containing %q", err, tt.err)
			}
			if !strings.HasPrefix(err.Error(), "exporter: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Errorf("error %q shows the URL's password", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := NewClient(Config{URL: "http://loki:3100"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	got := c.set.cfg
	if got.Timeout != DefaultTimeout || got.MinBackoff != DefaultMinBackoff || got.MaxBackoff != DefaultMaxBackoff ||
		got.MaxRetryTime != DefaultMaxRetryTime || got.MaxRetryAfter != DefaultMaxRetryAfter || got.UserAgent != "lokislog/0.1.0" {
		t.Errorf("defaults not applied: %+v", got)
	}
	if c.transport == nil || c.transport.tls.MinVersion == 0 {
		t.Fatalf("own transport lacks TLS settings")
	}
	if reflect.ValueOf(c.transport.proxy).Pointer() != reflect.ValueOf(http.ProxyFromEnvironment).Pointer() {
		t.Errorf("own transport does not use the proxy from the environment")
	}
	// NewClient never dials: a URL nobody listens on is fine.
	if _, err := NewClient(Config{URL: "http://127.0.0.1:1"}); err != nil {
		t.Errorf("NewClient with an unreachable URL: %v", err)
	}
}

func TestConfigTags(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		j, y := f.Tag.Get("json"), f.Tag.Get("yaml")
		if j == "" || j != y {
			t.Errorf("field %s: json tag %q, yaml tag %q", f.Name, j, y)
		}
	}
}

func TestReasonLimit(t *testing.T) {
	big := strings.Repeat("é", 1<<19)                            // 1 MiB, two-byte runes
	f := newFake(t, always(reply{status: 400, body: " " + big})) // the limit cuts a rune
	c := newTestClient(t, fastConfig(f.serve()))
	err := c.Export(context.Background(), testBatch(2, 2))
	var pe *PermanentError
	if !errors.As(err, &pe) {
		t.Fatalf("Export = %v", err)
	}
	if len(pe.Reason) > maxReason || len(pe.Reason) < maxReason-10 || !strings.HasPrefix(pe.Reason, "é") {
		t.Errorf("reason of %d bytes (%q...), want about %d", len(pe.Reason), pe.Reason[:min(10, len(pe.Reason))], maxReason)
	}
	if !utf8Valid(pe.Reason) {
		t.Errorf("reason is not valid UTF-8")
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

// TestNoCredentialsInErrors checks every failure path for secrets.
func TestNoCredentialsInErrors(t *testing.T) {
	const (
		user     = "loki-user"
		password = "hunter2-password"
		token    = "tok-0123456789"
		apiKey   = "key-abcdef"
	)
	basic := "bG9raS11c2VyOmh1bnRlcjItcGFzc3dvcmQ=" // base64(user:password)
	secrets := []string{password, token, apiKey, basic}

	l, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := l.Addr().String()
	l.Close()

	echo := func(_ int, p *pushed) reply { // echoes the credentials it got
		_, pw, _ := (&http.Request{Header: p.Header}).BasicAuth()
		return reply{status: 400, body: p.Header.Get("Authorization") + " " + p.Header.Get("X-Api-Key") + " " + pw}
	}
	hang := func(int, *pushed) reply { return reply{hang: true} }
	tests := map[string]struct {
		script func(int, *pushed) reply
		url    func(srv string) string
		cfg    func(*Config)
	}{
		"refused, url userinfo": {url: func(string) string { return "http://" + user + ":" + password + "@" + refused }},
		"refused, password":     {url: func(string) string { return "http://" + refused }, cfg: func(c *Config) { c.Username, c.Password = user, password }},
		"refused, token":        {url: func(string) string { return "http://" + refused }, cfg: func(c *Config) { c.BearerToken = token }},
		"400 echo, userinfo":    {script: echo, url: func(s string) string { return strings.Replace(s, "http://", "http://"+user+":"+password+"@", 1) }},
		"400 echo, token":       {script: echo, cfg: func(c *Config) { c.BearerToken = token; c.Headers = map[string]string{"X-Api-Key": apiKey} }},
		"503, userinfo":         {script: always(reply{status: 503, body: password}), url: func(s string) string { return strings.Replace(s, "http://", "http://"+user+":"+password+"@", 1) }},
		"timeout, userinfo": {script: hang, url: func(s string) string { return strings.Replace(s, "http://", "http://"+user+":"+password+"@", 1) }, cfg: func(c *Config) {
			c.Timeout = 20 * time.Millisecond
		}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFake(t, tt.script)
			srv := f.serve()
			url := srv
			if tt.url != nil {
				url = tt.url(srv)
			}
			cfg := fastConfig(url)
			cfg.MaxRetryTime = 50 * time.Millisecond
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := newTestClient(t, cfg)
			err := c.Export(context.Background(), testBatch(2, 2))
			if err == nil {
				t.Fatal("Export succeeded")
			}
			msg := err.Error()
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("error %q contains secret %q", msg, s)
				}
			}
			if strings.Contains(msg, user+":") || strings.Contains(msg, user+"@") {
				t.Errorf("error %q contains URL user information", msg)
			}
			if st := fmt.Sprintf("%+v", c.Stats()); strings.Contains(st, password) {
				t.Errorf("stats contain the password")
			}
		})
	}
	// NewClient errors, too.
	_, err := NewClient(Config{URL: "http://" + user + ":" + password + "@loki:port"})
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("NewClient error %v shows the password (or no error)", err)
	}
}

func TestRequestTimeout(t *testing.T) {
	f := newFake(t, replies(reply{hang: true}))
	cfg := fastConfig(f.serve())
	cfg.Timeout = 500 * time.Millisecond
	c := newTestClient(t, cfg)
	if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
		t.Fatalf("Export after one timed-out request: %v", err)
	}
	// Exact counts are checked in TestTimeoutSynctest; here a busy machine
	// may time out the second request too.
	if st := c.Stats(); st.Requests < 2 || st.Retries != st.Requests-1 || st.EntriesSent != 2 {
		t.Errorf("Stats = %+v, want 2 requests, 1 retry", st)
	}
}

func TestContextCanceled(t *testing.T) {
	f := newFake(t, always(reply{hang: true}))
	c := newTestClient(t, fastConfig(f.serve()))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for len(f.requests()) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err := c.Export(ctx, testBatch(2, 2))
	if !errors.Is(err, context.Canceled) || classify(err) != retryable {
		t.Fatalf("Export = %v, want a retryable error wrapping context.Canceled", err)
	}
}

func TestShutdown(t *testing.T) {
	f := newFake(t, always(reply{hang: true}))
	c, err := NewClient(fastConfig(f.serve()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Export(context.Background(), testBatch(2, 2)) }()
	for len(f.requests()) == 0 {
		time.Sleep(time.Millisecond)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// Shutdown waited for the running Export: none is registered any more.
	// (The goroutine's send on done may still be a moment behind.)
	c.mu.Lock()
	active := c.active
	c.mu.Unlock()
	if active != 0 {
		t.Fatalf("Shutdown returned with %d Export calls still running", active)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrShutdown) || classify(err) != retryable {
			t.Errorf("running Export = %v, want a retryable error wrapping ErrShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the running Export did not return after Shutdown")
	}
	if err := c.Export(context.Background(), testBatch(1, 1)); err != ErrShutdown {
		t.Errorf("Export after Shutdown = %v, want ErrShutdown", err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestShutdownConcurrentSafe(t *testing.T) {
	f := newFake(t, nil)
	c, err := NewClient(fastConfig(f.serve()))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			err := c.Export(context.Background(), testBatch(3, 2))
			if errors.Is(err, ErrShutdown) {
				return
			}
			if err != nil {
				t.Errorf("Export: %v", err)
				return
			}
			_ = c.Stats()
		}
	}()
	for len(f.requests()) < 3 {
		time.Sleep(time.Millisecond)
	}
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- c.Shutdown(context.Background()) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}
	<-done
}

// TestSendBufReuse checks that a buffer the transport may still read is not
// written again.
func TestSendBufReuse(t *testing.T) {
	sb := &sendBuf{b: make([]byte, 10)}
	r := sb.reader()
	if sb.reuse() == sb {
		t.Error("buffer with an open reader reused")
	}
	r.Close()
	r.Close() // twice is harmless
	if sb.reuse() != sb {
		t.Error("buffer with closed readers not reused")
	}
	big := &sendBuf{b: make([]byte, 0, maxKeep+1)}
	if big.reuse() == big {
		t.Error("oversized buffer kept")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 30, 12, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                               0,
		"0":                              0,
		"5":                              5 * time.Second,
		" 120 ":                          2 * time.Minute,
		"-1":                             0,
		"1.5":                            0,
		"soon":                           0,
		"99999999999999":                 0,
		"Mon, 30 Jun 2025 12:00:30 GMT":  30 * time.Second,
		"Monday, 30-Jun-25 12:01:00 GMT": time.Minute,
		"Mon Jun 30 12:00:10 2025":       10 * time.Second,
		"Mon, 30 Jun 2025 11:00:00 GMT":  0,
	}
	for in, want := range tests {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

// TestExportAllocs checks that allocations per Export do not grow with the
// number of entries or streams (buffers are reused). 10 entries are one
// stream, 10,000 are 100 streams: one allocation more per stream would add
// 100, one per entry 10,000. The margin of 50 takes in what is not the
// client's: the test server's goroutines allocate in the same process, and
// under the race detector sync.Pool drops a quarter of what is put back, so
// the pooled gzip writer is sometimes made anew. Each count is the lowest of
// three rounds, as such noise only ever adds.
func TestExportAllocs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the whole body before answering, as Loki does: an answer sent
		// before a large body is read makes the server close the connection,
		// and the redials would be counted too.
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	for _, proto := range []string{"protobuf", "json"} {
		c := newTestClient(t, Config{URL: srv.URL, Protocol: proto})
		measure := func(n int) float64 {
			b := testBatch(n, 100)
			c.Export(context.Background(), b) // grow the buffers
			lowest := math.Inf(1)
			for range 3 {
				lowest = min(lowest, testing.AllocsPerRun(10, func() {
					if err := c.Export(context.Background(), b); err != nil {
						t.Fatal(err)
					}
				}))
			}
			return lowest
		}
		small, large := measure(10), measure(10000)
		t.Logf("%s: %v allocations for 10 entries, %v for 10000", proto, small, large)
		if large > small+50 {
			t.Errorf("%s: %v allocations for 10000 entries, %v for 10: they grow with entries", proto, large, small)
		}
	}
}

func BenchmarkExport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	batch := testBatch(5000, 500) // about 1 MiB with the benchmark line below
	for i := range batch.Streams {
		for j := range batch.Streams[i].Entries {
			batch.Streams[i].Entries[j].Line += ` level=INFO msg="request handled" method=GET path=/api/v1/items/12345 status=200 duration=1.2ms bytes=5120 user_agent="Mozilla/5.0 (X11; Linux x86_64)"`
		}
	}
	for _, proto := range []string{"protobuf", "json"} {
		b.Run(proto, func(b *testing.B) {
			c, err := NewClient(Config{URL: srv.URL, Protocol: proto})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Shutdown(context.Background())
			b.ReportAllocs()
			b.SetBytes(int64(batch.Size()))
			for b.Loop() {
				if err := c.Export(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestConcat(t *testing.T) {
	b := testBatch(10, 4)
	b.Tenant = "t"
	first, second, _ := Split(b) // cuts the second stream
	a, c, _ := Split(second)     // cuts the third
	got := concat(b.Tenant, []*Batch{first, a, c})
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("concat of the parts = %+v, want %+v", got, b)
	}
	// No memory shared with the parts: overwrite their entries.
	for i := range b.Streams {
		for j := range b.Streams[i].Entries {
			b.Streams[i].Entries[j] = Entry{Line: "reused"}
		}
	}
	if lines := batchLines(got); lines[0] != "line 0" || lines[9] != "line 9" || len(got.Streams) != 3 {
		t.Errorf("concat result changed with its parts: %q", lines)
	}
}

func TestConfigYAML(t *testing.T) {
	doc := `
url: https://logs.example.com/loki
tenant_id: team-a
protocol: json
compression: none
username: u
password: p
headers:
  X-Extra: v
tls_config:
  server_name: loki.internal
  insecure_skip_verify: true
timeout: 3s
min_backoff: 100ms
max_backoff: 10s
max_retry_time: 2m
max_retry_after: 30s
user_agent: mu-api
`
	var cfg Config
	if err := yaml.Unmarshal([]byte(doc), &cfg); err != nil {
		t.Fatal(err)
	}
	want := Config{
		URL: "https://logs.example.com/loki", TenantID: "team-a", Protocol: "json", Compression: "none",
		Username: "u", Password: "p", Headers: map[string]string{"X-Extra": "v"},
		TLS:     TLSConfig{ServerName: "loki.internal", InsecureSkipVerify: true},
		Timeout: 3 * time.Second, MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second,
		MaxRetryTime: 2 * time.Minute, MaxRetryAfter: 30 * time.Second, UserAgent: "mu-api",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("decoded %+v\nwant    %+v", cfg, want)
	}
	if _, err := NewClient(cfg); err != nil {
		t.Errorf("NewClient: %v", err)
	}
}
