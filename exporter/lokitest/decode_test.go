package lokitest

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"

	"github.com/lokislog/lokislog/internal/lokiproto"
)

func labelMap(t testing.TB, s string) map[string]string {
	t.Helper()
	ls, err := lokiproto.ParseLabels(s)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

// expected returns the entries a push of req must record, in order.
func expected(t testing.TB, tenant string, req *push.PushRequest, push int) []Entry {
	var out []Entry
	for _, s := range req.Streams {
		labels := labelMap(t, s.Labels)
		ls, _ := lokiproto.ParseLabels(s.Labels)
		for _, e := range s.Entries {
			var md map[string]string
			for _, m := range e.StructuredMetadata {
				if md == nil {
					md = map[string]string{}
				}
				md[m.Name] = m.Value
			}
			out = append(out, Entry{Tenant: tenant, Labels: labels, LabelString: lokiproto.FormatLabels(ls),
				Timestamp: e.Timestamp, Line: e.Line, Metadata: md, Push: push})
		}
	}
	return out
}

func diffEntries(got, want []Entry) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		switch {
		case g.Tenant != w.Tenant:
			return fmt.Sprintf("entry %d: tenant %q, want %q", i, g.Tenant, w.Tenant)
		case !maps.Equal(g.Labels, w.Labels) || g.LabelString != w.LabelString:
			return fmt.Sprintf("entry %d: labels %v %s, want %v %s", i, g.Labels, g.LabelString, w.Labels, w.LabelString)
		case !g.Timestamp.Equal(w.Timestamp) || g.Timestamp.UnixNano() != w.Timestamp.UnixNano():
			return fmt.Sprintf("entry %d: timestamp %v, want %v", i, g.Timestamp, w.Timestamp)
		case g.Line != w.Line:
			return fmt.Sprintf("entry %d: line %q, want %q", i, g.Line, w.Line)
		case !maps.Equal(g.Metadata, w.Metadata) || (g.Metadata == nil) != (w.Metadata == nil):
			return fmt.Sprintf("entry %d: metadata %v, want %v", i, g.Metadata, w.Metadata)
		case g.Push != w.Push:
			return fmt.Sprintf("entry %d: push %d, want %d", i, g.Push, w.Push)
		}
	}
	return ""
}

var nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randName returns a valid label name that metadata normalisation keeps.
func randName(r *rand.Rand) string {
	var b strings.Builder
	b.WriteByte(nameChars[r.IntN(52)])
	for range r.IntN(10) {
		b.WriteByte(nameChars[r.IntN(len(nameChars))])
	}
	if r.IntN(3) == 0 {
		b.WriteByte('_')
		b.WriteByte(nameChars[r.IntN(len(nameChars))])
	}
	return b.String()
}

// randText returns non-empty valid UTF-8 without U+FFFD: ASCII, controls,
// quotes, backslashes and multi-byte runes.
func randText(r *rand.Rand, max int) string {
	runes := []rune{'a', 'z', ' ', '"', '\\', '\n', '\t', '\x00', '\x7f', 'é', '日', '😀', '\'', '`', '{', '}', '=', ','}
	var b strings.Builder
	for range 1 + r.IntN(max) {
		if r.IntN(4) == 0 {
			b.WriteRune(runes[r.IntN(len(runes))])
		} else {
			b.WriteByte(byte(' ' + r.IntN(95)))
		}
	}
	return b.String()
}

// randBytes returns arbitrary bytes, invalid UTF-8 included.
func randBytes(r *rand.Rand, max int) string {
	b := make([]byte, r.IntN(max+1))
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return string(b)
}

func randPush(r *rand.Rand, jsonSafe bool) *push.PushRequest {
	req := &push.PushRequest{}
	seen := map[string]bool{}
	for range 1 + r.IntN(4) {
		var ls []lokiproto.LabelPair
		names := map[string]bool{}
		for range 1 + r.IntN(5) {
			n := randName(r)
			if names[n] || strings.HasPrefix(n, "__") {
				continue
			}
			names[n] = true
			ls = append(ls, lokiproto.LabelPair{Name: n, Value: randText(r, 30)})
		}
		sortPairs(ls)
		str := lokiproto.FormatLabels(ls)
		if seen[str] {
			continue
		}
		seen[str] = true
		s := push.Stream{Labels: str}
		for range r.IntN(8) {
			var ts time.Time
			if jsonSafe {
				ts = time.Unix(0, r.Int64()-r.Int64()).UTC()
			} else {
				ts = time.Unix(r.Int64N(253402300800+62135596800)-62135596800, r.Int64N(1e9)).UTC()
			}
			line := randBytes(r, 200)
			if jsonSafe {
				line = randText(r, 200)
			}
			e := push.Entry{Timestamp: ts, Line: line}
			mnames := map[string]bool{}
			for range r.IntN(4) {
				n := randName(r)
				if mnames[n] {
					continue
				}
				mnames[n] = true
				e.StructuredMetadata = append(e.StructuredMetadata, push.LabelAdapter{Name: n, Value: randText(r, 40)})
			}
			s.Entries = append(s.Entries, e)
		}
		req.Streams = append(req.Streams, s)
	}
	return req
}

func sortPairs(ls []lokiproto.LabelPair) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].Name < ls[j-1].Name; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

// TestProtobufMatchesOfficialTypes pushes requests built with the official
// github.com/grafana/loki/pkg/push types and checks that what is recorded is
// exactly what was sent.
func TestProtobufMatchesOfficialTypes(t *testing.T) {
	s := NewTestServer(t, noTimeChecks)
	c := client(t)
	now := time.Now().UTC().Truncate(time.Second).Add(123456789)
	fixed := map[string]*push.PushRequest{
		"one line":                       {Streams: []push.Stream{{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: now, Line: "hello"}}}}},
		"labels out of order and spaced": {Streams: []push.Stream{{Labels: ` { z="1",a = "2" } `, Entries: []push.Entry{{Timestamp: now, Line: "x"}}}}},
		"metadata": {Streams: []push.Stream{{Labels: `{app="api", env="prod"}`, Entries: []push.Entry{
			{Timestamp: now, Line: `level=INFO msg="request handled"`, StructuredMetadata: push.LabelsAdapter{{Name: "trace_id", Value: "4bf92f3577b34da6a3ce929d0e0e4736"}, {Name: "span_id", Value: "00f067aa0ba902b7"}}},
			{Timestamp: now.Add(time.Nanosecond), Line: "second"},
		}}}},
		"escaped label values": {Streams: []push.Stream{{Labels: `{path="/a\"b\\c\n", u="日本"}`, Entries: []push.Entry{{Timestamp: now, Line: "x"}}}}},
		"several streams":      {Streams: []push.Stream{{Labels: `{a="1"}`, Entries: []push.Entry{{Timestamp: now, Line: "1"}}}, {Labels: `{a="2"}`, Entries: []push.Entry{{Timestamp: now, Line: "2"}, {Timestamp: now, Line: "3"}}}}},
		"binary line":          {Streams: []push.Stream{{Labels: `{a="1"}`, Entries: []push.Entry{{Timestamp: now, Line: "\x00\xff\n\xc3"}}}}},
		"pre-1970 and far":     {Streams: []push.Stream{{Labels: `{a="1"}`, Entries: []push.Entry{{Timestamp: time.Unix(-1, 1).UTC(), Line: "old"}, {Timestamp: time.Date(9999, 1, 1, 0, 0, 0, 5, time.UTC), Line: "far"}}}}},
	}
	pushNo := 0
	check := func(t *testing.T, req *push.PushRequest, tenant string) {
		t.Helper()
		s.Reset()
		pushNo = 1
		h := map[string]string{}
		if tenant != "" {
			h["X-Scope-OrgID"] = tenant
		}
		a := pushProto(t, c, s.URL(), req, h)
		if a.err != nil || a.status != http.StatusNoContent {
			t.Fatalf("push: %d %q %v", a.status, a.body, a.err)
		}
		if d := diffEntries(s.Entries(), expected(t, tenant, req, pushNo)); d != "" {
			t.Fatal(d)
		}
	}
	for name, req := range fixed {
		t.Run(name, func(t *testing.T) { check(t, req, "team-a") })
	}
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 100 {
		req := randPush(r, false)
		t.Run(fmt.Sprintf("random%d", i), func(t *testing.T) { check(t, req, "") })
	}
}

// TestJSONMatchesProtobuf pushes the same requests as JSON (plain, gzip,
// deflate) and checks that they are recorded exactly.
func TestJSONMatchesProtobuf(t *testing.T) {
	s := NewTestServer(t, noTimeChecks)
	c := client(t)
	r := rand.New(rand.NewPCG(9, 10))
	encodings := map[string]func([]byte) []byte{
		"":        func(b []byte) []byte { return b },
		"gzip":    gzipped,
		"deflate": deflated,
	}
	for i := range 60 {
		req := randPush(r, true)
		for enc, f := range encodings {
			t.Run(fmt.Sprintf("random%d/%s", i, enc), func(t *testing.T) {
				s.Reset()
				h := map[string]string{"Content-Type": "application/json; charset=utf-8"}
				if enc != "" {
					h["Content-Encoding"] = enc
				}
				a := post(t, c, s.URL(), f(jsonBody(t, req)), h)
				if a.err != nil || a.status != http.StatusNoContent {
					t.Fatalf("push: %d %q %v", a.status, a.body, a.err)
				}
				if d := diffEntries(s.Entries(), expected(t, "", req, 1)); d != "" {
					t.Fatal(d)
				}
			})
		}
	}
}

// TestProtobufEncodings: Loki also undoes gzip and deflate on protobuf
// bodies, and ignores Content-Encoding: snappy.
func TestProtobufEncodings(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	req := &push.PushRequest{Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "x"}}}}}
	for enc, f := range map[string]func([]byte) []byte{"snappy": func(b []byte) []byte { return b }, "gzip": gzipped, "deflate": deflated} {
		a := post(t, c, s.URL(), f(protoBody(t, req)), map[string]string{"Content-Type": "application/x-protobuf", "Content-Encoding": enc})
		if a.status != http.StatusNoContent {
			t.Errorf("%s: %d %q", enc, a.status, a.body)
		}
	}
	if got := len(s.Entries()); got != 3 {
		t.Fatalf("%d entries stored, want 3", got)
	}
}

func TestMalformedRequests(t *testing.T) {
	s := NewTestServer(t, WithLimits(Limits{MaxBodySize: 4096}))
	c := client(t)
	good := protoBody(t, &push.PushRequest{Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "x"}}}}})
	big := protoBody(t, &push.PushRequest{Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: strings.Repeat("x", 5000)}}}}})
	bomb := gzipped([]byte(`{"streams":[` + strings.Repeat(" ", 10000) + `]}`))
	proto := "application/x-protobuf"
	tests := map[string]struct {
		body   []byte
		header map[string]string
		status int
		msg    string
	}{
		"no content type":        {body: good, status: 400, msg: "mime"},
		"bad content type":       {body: good, header: map[string]string{"Content-Type": "a b"}, status: 400},
		"unknown encoding":       {body: good, header: map[string]string{"Content-Type": proto, "Content-Encoding": "br"}, status: 400, msg: `Content-Encoding "br" not supported`},
		"not snappy":             {body: []byte("hello world"), header: map[string]string{"Content-Type": proto}, status: 400},
		"snappy of junk":         {body: []byte{0x03, 0x08, 0xff, 0xff, 0xff}, header: map[string]string{"Content-Type": proto}, status: 400, msg: "protobuf"},
		"not gzip":               {body: good, header: map[string]string{"Content-Type": proto, "Content-Encoding": "gzip"}, status: 400, msg: "gzip"},
		"zlib is not deflate":    {body: []byte{0x78, 0x9c, 0x03, 0x00}, header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "deflate"}, status: 400},
		"bad json":               {body: []byte(`{"streams":`), header: map[string]string{"Content-Type": "application/json"}, status: 400},
		"bad labels":             {body: []byte(`{"streams":[{"stream":{"a-b":"c"},"values":[["1","x"]]}]}`), header: map[string]string{"Content-Type": "application/json"}, status: 400},
		"body too large":         {body: big, header: map[string]string{"Content-Type": proto}, status: 413},
		"decompressed too large": {body: bomb, header: map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, status: 413},
		"snappy too large":       {body: []byte{0x80, 0x80, 0x04, 0x00}, header: map[string]string{"Content-Type": proto}, status: 413},
		"empty streams":          {body: []byte(`{"streams":[]}`), header: map[string]string{"Content-Type": "application/json"}, status: 422},
		"empty protobuf":         {body: protoBody(t, &push.PushRequest{}), header: map[string]string{"Content-Type": proto}, status: 422},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := post(t, c, s.URL(), tc.body, tc.header)
			if a.err != nil || a.status != tc.status || !strings.Contains(a.body, tc.msg) {
				t.Fatalf("got %d %q (%v), want %d containing %q", a.status, a.body, a.err, tc.status, tc.msg)
			}
		})
	}
	if n := len(s.Entries()); n != 0 {
		t.Fatalf("%d entries stored from malformed requests", n)
	}
	// Other methods and paths.
	resp, err := c.Get(s.URL() + PushPath)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET push: %d", resp.StatusCode)
	}
	resp, err = c.Get(s.URL() + "/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /ready: %d", resp.StatusCode)
	}
}

func TestRequestsRecorded(t *testing.T) {
	s := NewTestServer(t)
	c := client(t)
	req := &push.PushRequest{Streams: []push.Stream{{Labels: `{a="b"}`, Entries: []push.Entry{{Timestamp: time.Now(), Line: "x"}}}}}
	body := protoBody(t, req)
	a := post(t, c, s.URL(), body, map[string]string{
		"Content-Type": "application/x-protobuf", "X-Scope-OrgID": "t1", "User-Agent": "lokislog/test",
		"Authorization": "Bearer secret", "X-Custom": "v",
	})
	if a.status != http.StatusNoContent {
		t.Fatalf("push: %d %q", a.status, a.body)
	}
	reqs := s.Requests()
	if len(reqs) != 1 || s.Pushes() != 1 {
		t.Fatalf("%d requests, %d pushes", len(reqs), s.Pushes())
	}
	ri := reqs[0]
	if ri.Push != 1 || ri.Method != "POST" || ri.Tenant != "t1" || ri.ContentType != "application/x-protobuf" || ri.UserAgent != "lokislog/test" ||
		!ri.Authorization || ri.Header.Get("X-Custom") != "v" || ri.BodySize != len(body) || ri.Status != 204 || ri.Accepted != 1 || ri.Rejected != 0 || ri.Fault != "" {
		t.Fatalf("request info: %+v", ri)
	}
	if e := s.Entries(); len(e) != 1 || e[0].Tenant != "t1" {
		t.Fatalf("entries: %+v", e)
	}
	// Results are copies.
	s.Entries()[0].Labels["a"] = "changed"
	s.Requests()[0].Header.Set("X-Custom", "changed")
	if s.Entries()[0].Labels["a"] != "b" || s.Requests()[0].Header.Get("X-Custom") != "v" {
		t.Fatal("results alias the server's state")
	}
	if st := s.Streams(); len(st) != 1 || len(st[0].Entries) != 1 || st[0].Tenant != "t1" || st[0].LabelString != `{a="b"}` {
		t.Fatalf("streams: %+v", st)
	}
	s.Reset()
	if len(s.Entries()) != 0 || len(s.Requests()) != 0 || s.Pushes() != 0 || len(s.Streams()) != 0 {
		t.Fatal("Reset left data")
	}
}
