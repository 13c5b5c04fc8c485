package lokitest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
)

var clockNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return clockNow }

func entry(ts time.Time, line string, md ...string) push.Entry {
	e := push.Entry{Timestamp: ts, Line: line}
	for i := 0; i+1 < len(md); i += 2 {
		e.StructuredMetadata = append(e.StructuredMetadata, push.LabelAdapter{Name: md[i], Value: md[i+1]})
	}
	return e
}

func stream(labels string, entries ...push.Entry) push.Stream {
	return push.Stream{Labels: labels, Entries: entries}
}

func manyLabels(n int, extra string) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf(`l%02d="v"`, i))
	}
	if extra != "" {
		parts = append(parts, extra)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func manyMetadata(n, valueSize int) []string {
	var md []string
	for i := range n {
		md = append(md, fmt.Sprintf("k%d", i), strings.Repeat("v", valueSize))
	}
	return md
}

// TestValidation checks every Loki rule: the status, the reason, and that a
// 400 is a partial success (the good stream of the push is stored, the bad
// item is not).
func TestValidation(t *testing.T) {
	now := clockNow
	good := stream(`{app="good"}`, entry(now, "good line"))
	tests := map[string]struct {
		bad      push.Stream
		status   int
		reason   string
		stored   int // entries stored, the good one included
		noGood   bool
		override []Option
	}{
		"reserved label name":     {bad: stream(`{__x="1"}`, entry(now, "x")), status: 400, reason: "reserved", stored: 1},
		"lexically invalid name":  {bad: stream(`{a.b="1"}`, entry(now, "x")), status: 400, reason: "couldn't parse labels", stored: 0},
		"metric name prefix":      {bad: stream(`up{a="1"}`, entry(now, "x")), status: 400, reason: "couldn't parse labels", stored: 0},
		"duplicate label name":    {bad: stream(`{a="1", a="2"}`, entry(now, "x")), status: 400, reason: "duplicate label name: 'a'", stored: 1},
		"no labels":               {bad: stream(`{}`, entry(now, "x")), status: 400, reason: "at least one label pair", stored: 1},
		"only empty labels":       {bad: stream(`{a=""}`, entry(now, "x")), status: 400, reason: "at least one label pair", stored: 1},
		"16 labels":               {bad: stream(manyLabels(16, ""), entry(now, "x")), status: 400, reason: "has 16 label names; limit 15", stored: 1},
		"15 labels":               {bad: stream(manyLabels(15, ""), entry(now, "x")), status: 204, stored: 2},
		"15 plus service_name":    {bad: stream(manyLabels(15, `service_name="s"`), entry(now, "x")), status: 204, stored: 2},
		"name too long":           {bad: stream(`{`+strings.Repeat("n", 1025)+`="v"}`, entry(now, "x")), status: 400, reason: "label name too long", stored: 1},
		"name at limit":           {bad: stream(`{`+strings.Repeat("n", 1024)+`="v"}`, entry(now, "x")), status: 204, stored: 2},
		"value too long":          {bad: stream(`{a="`+strings.Repeat("v", 2049)+`"}`, entry(now, "x")), status: 400, reason: "label value too long", stored: 1},
		"value at limit":          {bad: stream(`{a="`+strings.Repeat("v", 2048)+`"}`, entry(now, "x")), status: 204, stored: 2},
		"line too long":           {bad: stream(`{a="1"}`, entry(now, strings.Repeat("x", 256<<10+1))), status: 400, reason: "Max entry size '262144' bytes exceeded", stored: 1},
		"line at limit":           {bad: stream(`{a="1"}`, entry(now, strings.Repeat("x", 256<<10))), status: 204, stored: 2},
		"too old":                 {bad: stream(`{a="1"}`, entry(now.Add(-7*24*time.Hour-time.Second), "x")), status: 400, reason: "timestamp too old", stored: 1},
		"just young enough":       {bad: stream(`{a="1"}`, entry(now.Add(-7*24*time.Hour), "x")), status: 204, stored: 2},
		"too new":                 {bad: stream(`{a="1"}`, entry(now.Add(10*time.Minute+time.Nanosecond), "x")), status: 400, reason: "timestamp too new", stored: 1},
		"future within grace":     {bad: stream(`{a="1"}`, entry(now.Add(10*time.Minute), "x")), status: 204, stored: 2},
		"metadata too large":      {bad: stream(`{a="1"}`, entry(now, "x", manyMetadata(2, 32<<10)...)), status: 400, reason: "structured metadata too large", stored: 1},
		"metadata at size limit":  {bad: stream(`{a="1"}`, entry(now, "x", "k", strings.Repeat("v", 64<<10-1))), status: 204, stored: 2},
		"too many metadata":       {bad: stream(`{a="1"}`, entry(now, "x", manyMetadata(129, 1)...)), status: 400, reason: "too many structured metadata labels: '129', limit: '128'", stored: 1},
		"metadata at count limit": {bad: stream(`{a="1"}`, entry(now, "x", manyMetadata(128, 1)...)), status: 204, stored: 2},
		"empty metadata name":     {bad: stream(`{a="1"}`, entry(now, "x", "", "v")), status: 500, reason: "empty name", stored: 0},
		"mixed stream": {bad: stream(`{a="1"}`, entry(now, "ok1"), entry(now.Add(time.Hour), "too new"), entry(now, strings.Repeat("x", 300<<10)), entry(now, "ok2")),
			status: 400, reason: "timestamp too new", stored: 3},
		"limits off": {bad: stream(manyLabels(20, ""), entry(now.Add(-30*24*time.Hour), strings.Repeat("x", 300<<10), manyMetadata(200, 1)...)), status: 204, stored: 2,
			override: []Option{WithLimits(Limits{MaxLineSize: -1, MaxLabelNames: -1, MaxMetadataEntries: -1, MaxAge: -1})}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := append([]Option{WithClock(fixedClock)}, tc.override...)
			s := NewTestServer(t, opts...)
			c := client(t)
			a := pushProto(t, c, s.URL(), &push.PushRequest{Streams: []push.Stream{good, tc.bad}}, nil)
			if a.err != nil || a.status != tc.status || !strings.Contains(a.body, tc.reason) {
				t.Fatalf("got %d %q (%v), want %d with %q", a.status, a.body, a.err, tc.status, tc.reason)
			}
			entries := s.Entries()
			if len(entries) != tc.stored {
				t.Fatalf("%d entries stored, want %d: %+v", len(entries), tc.stored, entries)
			}
			if tc.stored > 0 && entries[0].Line != "good line" {
				t.Fatalf("good entry missing: %+v", entries)
			}
			ri := s.Requests()[0]
			if ri.Accepted != tc.stored || ri.Status != tc.status {
				t.Fatalf("request info: %+v", ri)
			}
			total := len(good.Entries) + len(tc.bad.Entries)
			if tc.status == 400 && tc.stored > 0 && ri.Accepted+ri.Rejected != total {
				t.Fatalf("accepted %d + rejected %d != %d", ri.Accepted, ri.Rejected, total)
			}
			if tc.status == 400 && tc.stored > 0 && (len(ri.Rejections) == 0 || !strings.Contains(ri.Rejections[0].Reason, tc.reason)) {
				t.Fatalf("rejections: %+v", ri.Rejections)
			}
		})
	}
}

func TestOrderingWindow(t *testing.T) {
	s := NewTestServer(t, WithClock(fixedClock))
	c := client(t)
	now := clockNow
	send := func(entries ...push.Entry) answer {
		t.Helper()
		return pushProto(t, c, s.URL(), &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entries...)}}, nil)
	}
	if a := send(entry(now, "newest")); a.status != 204 {
		t.Fatalf("first push: %d %q", a.status, a.body)
	}
	// Out of order within the hour is fine; the hour itself is the edge.
	if a := send(entry(now.Add(-59*time.Minute), "late"), entry(now.Add(-time.Hour), "edge")); a.status != 204 {
		t.Fatalf("within window: %d %q", a.status, a.body)
	}
	a := send(entry(now.Add(-61*time.Minute), "too late"), entry(now.Add(-time.Minute), "fine"))
	if a.status != 400 || !strings.Contains(a.body, "entry too far behind") {
		t.Fatalf("behind window: %d %q", a.status, a.body)
	}
	// Another stream has its own window.
	b := pushProto(t, c, s.URL(), &push.PushRequest{Streams: []push.Stream{stream(`{a="2"}`, entry(now.Add(-3*time.Hour), "other stream"))}}, nil)
	if b.status != 204 {
		t.Fatalf("other stream: %d %q", b.status, b.body)
	}
	// Within one push, the newest entry so far moves the window.
	c2 := send(entry(now.Add(5*time.Minute), "newer"), entry(now.Add(-56*time.Minute), "now too late"))
	if c2.status != 400 {
		t.Fatalf("window moved within push: %d %q", c2.status, c2.body)
	}
	var lines []string
	for _, e := range s.Entries() {
		lines = append(lines, e.Line)
	}
	if got := strings.Join(lines, ","); got != "newest,late,edge,fine,other stream,newer" {
		t.Fatalf("stored %s", got)
	}
	// Reset forgets the window.
	s.Reset()
	if a := send(entry(now.Add(-5*time.Hour), "after reset")); a.status != 204 {
		t.Fatalf("after reset: %d %q", a.status, a.body)
	}
}

func TestMetadataNormalised(t *testing.T) {
	s := NewTestServer(t, WithClock(fixedClock))
	c := client(t)
	a := pushProto(t, c, s.URL(), &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`,
		entry(clockNow, "x", "http-method", "GET", "empty", "", "bad_utf8", "a\xffb", "1st", "v", "http.route", "/x"),
		entry(clockNow, "only empty", "k", ""),
	)}}, nil)
	if a.status != 204 {
		t.Fatalf("push: %d %q", a.status, a.body)
	}
	e := s.Entries()
	want := map[string]string{"http_method": "GET", "bad_utf8": "a b", "key_1st": "v", "http_route": "/x"}
	if fmt.Sprint(e[0].Metadata) != fmt.Sprint(want) {
		t.Fatalf("metadata %v, want %v", e[0].Metadata, want)
	}
	if e[1].Metadata != nil {
		t.Fatalf("metadata %v, want nil", e[1].Metadata)
	}
}

func TestLabelsNormalised(t *testing.T) {
	s := NewTestServer(t, WithClock(fixedClock))
	c := client(t)
	a := pushProto(t, c, s.URL(), &push.PushRequest{Streams: []push.Stream{
		stream(`{b="2", empty="", a="1"}`, entry(clockNow, "x")),
		stream(`{a="1",b="2"}`, entry(clockNow, "y")),
	}}, nil)
	if a.status != 204 {
		t.Fatalf("push: %d %q", a.status, a.body)
	}
	st := s.Streams()
	if len(st) != 1 || st[0].LabelString != `{a="1", b="2"}` || len(st[0].Entries) != 2 || len(st[0].Labels) != 2 {
		t.Fatalf("streams: %+v", st)
	}
}

func TestServiceNameDiscovery(t *testing.T) {
	s := NewTestServer(t, WithClock(fixedClock), WithServiceNameDiscovery())
	c := client(t)
	a := pushProto(t, c, s.URL(), &push.PushRequest{Streams: []push.Stream{
		stream(`{job="j", app="web"}`, entry(clockNow, "1")),
		stream(`{env="dev"}`, entry(clockNow, "2")),
		stream(`{service_name="mine", app="web"}`, entry(clockNow, "3")),
	}}, nil)
	if a.status != 204 {
		t.Fatalf("push: %d %q", a.status, a.body)
	}
	var got []string
	for _, e := range s.Entries() {
		got = append(got, e.LabelString)
	}
	want := []string{`{app="web", job="j", service_name="web"}`, `{env="dev", service_name="unknown_service"}`, `{app="web", service_name="mine"}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("labels %q, want %q", got, want)
	}
}

func TestTenants(t *testing.T) {
	s := NewTestServer(t, WithClock(fixedClock), WithMultiTenant())
	c := client(t)
	req := &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entry(clockNow, "x"))}}
	for tenant, status := range map[string]int{"": 401, "a|b": 400, "..": 400, "bad tenant": 400, strings.Repeat("t", 151): 400, "team-a_1.(x)": 204} {
		h := map[string]string{}
		if tenant != "" {
			h["X-Scope-OrgID"] = tenant
		}
		if a := pushProto(t, c, s.URL(), req, h); a.status != status {
			t.Errorf("tenant %q: %d %q, want %d", tenant, a.status, a.body, status)
		}
	}
	if e := s.Entries(); len(e) != 1 || e[0].Tenant != "team-a_1.(x)" {
		t.Fatalf("entries: %+v", e)
	}
}

func TestStreamLimit(t *testing.T) {
	s := NewTestServer(t, WithClock(fixedClock), WithLimits(Limits{MaxStreams: 2}))
	c := client(t)
	req := &push.PushRequest{Streams: []push.Stream{
		stream(`{s="1"}`, entry(clockNow, "1")),
		stream(`{s="2"}`, entry(clockNow, "2")),
		stream(`{s="1"}`, entry(clockNow, "1b")),
		// Last: Loki's ingester answers for the last stream of a push only
		// (TestIngesterAnswerIsLastStreams).
		stream(`{s="3"}`, entry(clockNow, "3"), entry(clockNow, "3b")),
	}}
	a := pushProto(t, c, s.URL(), req, map[string]string{"X-Scope-OrgID": "t"})
	if a.status != 429 || !strings.Contains(a.body, "Maximum active stream limit exceeded") {
		t.Fatalf("push: %d %q", a.status, a.body)
	}
	if n := len(s.Entries()); n != 3 {
		t.Fatalf("%d entries stored, want 3", n)
	}
	if ri := s.Requests()[0]; ri.Rejected != 2 || ri.Accepted != 3 {
		t.Fatalf("request info: %+v", ri)
	}
	// The limit is per tenant.
	if a := pushProto(t, c, s.URL(), req, map[string]string{"X-Scope-OrgID": "u"}); a.status != 429 {
		t.Fatalf("other tenant: %d", a.status)
	}
	if n := len(s.Entries()); n != 6 {
		t.Fatalf("%d entries stored, want 6", n)
	}
}

func TestAuth(t *testing.T) {
	req := &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entry(time.Now(), "x"))}}
	t.Run("basic", func(t *testing.T) {
		s := NewTestServer(t, WithBasicAuth("user", "pass"))
		c := client(t)
		for auth, status := range map[string]int{"": 401, "Basic dXNlcjp3cm9uZw==": 401, "Basic dXNlcjpwYXNz": 204} {
			h := map[string]string{}
			if auth != "" {
				h["Authorization"] = auth
			}
			if a := pushProto(t, c, s.URL(), req, h); a.status != status {
				t.Errorf("auth %q: %d, want %d", auth, a.status, status)
			}
		}
	})
	t.Run("bearer", func(t *testing.T) {
		s := NewTestServer(t, WithBearerToken("tok"))
		c := client(t)
		for auth, status := range map[string]int{"": 401, "Bearer nope": 401, "Bearer tok": 204} {
			h := map[string]string{}
			if auth != "" {
				h["Authorization"] = auth
			}
			if a := pushProto(t, c, s.URL(), req, h); a.status != status {
				t.Errorf("auth %q: %d, want %d", auth, a.status, status)
			}
		}
	})
}

func TestReasonsCapped(t *testing.T) {
	s := NewTestServer(t, WithClock(fixedClock))
	c := client(t)
	var entries []push.Entry
	for range 50 {
		entries = append(entries, entry(clockNow.Add(time.Hour), "future"))
	}
	a := pushProto(t, c, s.URL(), &push.PushRequest{Streams: []push.Stream{stream(`{a="1"}`, entries...)}}, nil)
	// Loki groups identical messages: one line for all 50.
	if a.status != 400 || strings.Count(a.body, "timestamp too new") != 1 || !strings.HasPrefix(a.body, "50 errors like: ") {
		t.Fatalf("got %d %q", a.status, a.body)
	}
	if ri := s.Requests()[0]; len(ri.Rejections) != 50 || ri.Rejected != 50 {
		t.Fatalf("rejections %d, rejected %d", len(ri.Rejections), ri.Rejected)
	}
}

func TestInvalidOptions(t *testing.T) {
	if _, err := New(WithLimits(Limits{MaxBodySize: -1})); err == nil {
		t.Fatal("negative MaxBodySize accepted")
	}
	if _, err := New(WithClock(nil)); err == nil {
		t.Fatal("nil clock accepted")
	}
	if _, err := New(WithAddr("256.0.0.1:0")); err == nil {
		t.Fatal("bad address accepted")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewServer did not panic on a bad option")
		}
	}()
	NewServer(WithClock(nil))
}

func TestDump(t *testing.T) {
	s := NewTestServer(t, WithClock(fixedClock))
	c := client(t)
	pushProto(t, c, s.URL(), &push.PushRequest{Streams: []push.Stream{
		stream(`{app="api"}`, entry(clockNow, "plain", "z", "1", "a", "2"), entry(clockNow.Add(time.Nanosecond), "two\nlines")),
	}}, map[string]string{"X-Scope-OrgID": "t"})
	want := `tenant "t" {app="api"}: 2 entries
  2025-06-01T12:00:00Z plain {a="2", z="1"}
  2025-06-01T12:00:00.000000001Z "two\nlines"
`
	if got := s.Dump(); got != want {
		t.Fatalf("Dump:\n%s\nwant:\n%s", got, want)
	}
}
