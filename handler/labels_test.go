package handler

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"
)

func TestServiceNameDefault(t *testing.T) {
	h, f := newTest(t, Config{})
	slog.New(h).Info("m")
	want := fmt.Sprintf(`{service_name=%q}`, defaultServiceName())
	if got := f.last(t).labels; got != want {
		t.Errorf("labels %s, want %s", got, want)
	}
	if defaultServiceName() == "" || strings.ContainsAny(defaultServiceName(), `/\`) {
		t.Errorf("bad default service name %q", defaultServiceName())
	}
	h, f = newTest(t, Config{Labels: map[string]string{"service_name": "api", "env": "prod"}})
	slog.New(h).Info("m")
	if got := f.last(t).labels; got != `{env="prod", service_name="api"}` {
		t.Errorf("labels %s", got)
	}
	// An empty value means: no such label (Loki would then add its own).
	h, f = newTest(t, Config{Labels: map[string]string{"service_name": "", "app": "a"}})
	slog.New(h).Info("m")
	if got := f.last(t).labels; got != `{app="a"}` {
		t.Errorf("labels %s", got)
	}
}

func TestLabelKeys(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		log        func(l *slog.Logger)
		wantLabels string
		wantLine   string
	}{
		{
			name:       "top-level key",
			cfg:        Config{LabelKeys: []string{"env"}},
			log:        func(l *slog.Logger) { l.Info("m", "env", "prod", "a", 1) },
			wantLabels: `{env="prod", service_name="svc"}`,
			wantLine:   `level=INFO msg=m a=1`,
		},
		{
			name:       "dotted path in a group",
			cfg:        Config{LabelKeys: []string{"http.method"}},
			log:        func(l *slog.Logger) { l.Info("m", slog.Group("http", "method", "GET", "path", "/")) },
			wantLabels: `{http_method="GET", service_name="svc"}`,
			wantLine:   `level=INFO msg=m http.path=/`,
		},
		{
			name:       "dotted path from WithGroup",
			cfg:        Config{LabelKeys: []string{"http.method"}},
			log:        func(l *slog.Logger) { l.WithGroup("http").Info("m", "method", "PUT") },
			wantLabels: `{http_method="PUT", service_name="svc"}`,
			wantLine:   `level=INFO msg=m`,
		},
		{
			name:       "group emptied by labels is omitted",
			cfg:        Config{Format: "json", LabelKeys: []string{"http.method"}},
			log:        func(l *slog.Logger) { l.Info("m", slog.Group("http", "method", "GET"), "a", 1) },
			wantLabels: `{http_method="GET", service_name="svc"}`,
			wantLine:   `{"level":"INFO","msg":"m","a":1}`,
		},
		{
			name:       "same key outside the group is not a label",
			cfg:        Config{LabelKeys: []string{"http.method"}},
			log:        func(l *slog.Logger) { l.Info("m", "method", "GET") },
			wantLabels: `{service_name="svc"}`,
			wantLine:   `level=INFO msg=m method=GET`,
		},
		{
			name:       "level as a label",
			cfg:        Config{LabelKeys: []string{"level"}},
			log:        func(l *slog.Logger) { l.Warn("m") },
			wantLabels: `{level="WARN", service_name="svc"}`,
			wantLine:   `msg=m`,
		},
		{
			name:       "level is not a label by default",
			cfg:        Config{},
			log:        func(l *slog.Logger) { l.Warn("m", "level", "x") },
			wantLabels: `{service_name="svc"}`,
			wantLine:   `level=WARN msg=m level=x`,
		},
		{
			name:       "WithAttrs labels",
			cfg:        Config{LabelKeys: []string{"env", "region"}},
			log:        func(l *slog.Logger) { l.With("env", "dev").With("region", "eu").Info("m", "x", 1) },
			wantLabels: `{env="dev", region="eu", service_name="svc"}`,
			wantLine:   `level=INFO msg=m x=1`,
		},
		{
			name:       "record label overrides WithAttrs and static (later wins)",
			cfg:        Config{Labels: map[string]string{"env": "static"}, LabelKeys: []string{"env"}},
			log:        func(l *slog.Logger) { l.With("env", "with").Info("m", "env", "rec") },
			wantLabels: `{env="rec", service_name="svc"}`,
			wantLine:   `level=INFO msg=m`,
		},
		{
			name:       "sanitised collision: later wins",
			cfg:        Config{LabelKeys: []string{"http.method", "http_method"}},
			log:        func(l *slog.Logger) { l.Info("m", slog.Group("http", "method", "GET"), "http_method", "POST") },
			wantLabels: `{http_method="POST", service_name="svc"}`,
			wantLine:   `level=INFO msg=m`,
		},
		{
			name:       "non-string values and escaping",
			cfg:        Config{LabelKeys: []string{"code", "q"}},
			log:        func(l *slog.Logger) { l.Info("m", "code", 404, "q", "a\"b\\c\nd") },
			wantLabels: `{code="404", q="a\"b\\c\nd", service_name="svc"}`,
			wantLine:   `level=INFO msg=m`,
		},
		{
			name:       "empty value is no label",
			cfg:        Config{LabelKeys: []string{"env"}},
			log:        func(l *slog.Logger) { l.Info("m", "env", "") },
			wantLabels: `{service_name="svc"}`,
			wantLine:   `level=INFO msg=m`,
		},
		{
			name: "ReplaceAttr result is matched",
			cfg: Config{LabelKeys: []string{"env"}, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == "environment" {
					a.Key = "env"
				}
				return a
			}},
			log:        func(l *slog.Logger) { l.Info("m", "environment", "prod") },
			wantLabels: `{env="prod", service_name="svc"}`,
			wantLine:   `level=INFO msg=m`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Labels = withService(tt.cfg.Labels)
			h, f := newTest(t, tt.cfg)
			tt.log(slog.New(h))
			e := f.last(t)
			if e.labels != tt.wantLabels {
				t.Errorf("labels %s, want %s", e.labels, tt.wantLabels)
			}
			if e.line != tt.wantLine {
				t.Errorf("line %s, want %s", e.line, tt.wantLine)
			}
		})
	}
}

func withService(m map[string]string) map[string]string {
	out := map[string]string{"service_name": "svc"}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestLabelValueCut(t *testing.T) {
	h, f := newTest(t, Config{Labels: withService(nil), LabelKeys: []string{"v"}})
	long := strings.Repeat("é", 1500) // 3000 bytes
	slog.New(h).Info("m", "v", long)
	l := f.last(t).labels
	i := strings.Index(l, `v="`)
	v := l[i+3 : strings.Index(l[i+3:], `"`)+i+3]
	if len(v) > 2048 || !utf8.ValidString(v) || !strings.HasPrefix(long, v) || len(v) < 2046 {
		t.Errorf("value cut to %d bytes, valid=%v", len(v), utf8.ValidString(v))
	}
}

func TestTooManyLabels(t *testing.T) {
	static := withService(nil)
	for i := range 10 {
		static[fmt.Sprintf("s%02d", i)] = "x"
	}
	var keys []string
	var args []any
	for i := range 8 {
		k := fmt.Sprintf("d%d", i)
		keys = append(keys, k)
		args = append(args, k, "v")
	}
	h, f := newTest(t, Config{Labels: static, LabelKeys: keys})
	slog.New(h).Info("m", args...)
	e := f.last(t)
	n := strings.Count(e.labels, "=")
	if n != 15 {
		t.Fatalf("%d labels, want 15: %s", n, e.labels)
	}
	for k := range static {
		if !strings.Contains(e.labels, k+`="`) {
			t.Errorf("static label %s lost: %s", k, e.labels)
		}
	}
	// 11 static, 8 dynamic: d0..d3 fit, d4..d7 go to metadata.
	meta := e.metaMap()
	for i := 4; i < 8; i++ {
		if meta[fmt.Sprintf("d%d", i)] != "v" {
			t.Errorf("d%d not in metadata: %v", i, e.meta)
		}
	}
	if st := h.Stats(); st.LabelOverflow != 1 {
		t.Errorf("LabelOverflow %d, want 1", st.LabelOverflow)
	}
}

func TestMaxStreams(t *testing.T) {
	h, f := newTest(t, Config{Labels: withService(nil), LabelKeys: []string{"user"}, MaxStreams: 3})
	l := slog.New(h)
	for i := range 5 {
		l.Info("m", "user", fmt.Sprint("u", i), "i", i)
	}
	es := f.all()
	wantSets := []string{`{service_name="svc", user="u0"}`, `{service_name="svc", user="u1"}`, `{service_name="svc"}`, `{service_name="svc"}`, `{service_name="svc"}`}
	for i, e := range es {
		if e.labels != wantSets[i] {
			t.Errorf("record %d: labels %s, want %s", i, e.labels, wantSets[i])
		}
		if i >= 2 && e.metaMap()["user"] != fmt.Sprint("u", i) {
			t.Errorf("record %d: overflowed label not in metadata: %v", i, e.meta)
		}
		if i < 2 && len(e.meta) != 0 {
			t.Errorf("record %d: unexpected metadata %v", i, e.meta)
		}
	}
	// An existing stream is still used.
	l.Info("m", "user", "u1")
	if got := f.last(t).labels; got != wantSets[1] {
		t.Errorf("existing stream not reused: %s", got)
	}
	// WithAttrs labels overflow too, per record.
	l.With("user", "u9").Info("m")
	l.With("user", "u9").Info("m")
	if e := f.last(t); e.labels != `{service_name="svc"}` || e.metaMap()["user"] != "u9" {
		t.Errorf("WithAttrs overflow: %s %v", e.labels, e.meta)
	}
	st := h.Stats()
	if st.StreamOverflow != 5 || st.Streams != 3 {
		t.Errorf("StreamOverflow %d (want 5), Streams %d (want 3)", st.StreamOverflow, st.Streams)
	}
}

func TestMetadata(t *testing.T) {
	h, f := newTest(t, Config{Labels: withService(nil), MetadataKeys: []string{"user_id", "req.id", "x-forwarded", "n"}})
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("1112131415161718")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	l := slog.New(h)
	l.With("user_id", "u1").InfoContext(ctx, "m", slog.Group("req", "id", "r9"), "x-forwarded", "yes", "n", "", "keep", 1)
	e := f.last(t)
	want := map[string]string{"trace_id": "0102030405060708090a0b0c0d0e0f10", "span_id": "1112131415161718",
		"user_id": "u1", "req_id": "r9", "x_forwarded": "yes"}
	if got := e.metaMap(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metadata %v, want %v", got, want)
	}
	if e.line != `level=INFO msg=m keep=1` {
		t.Errorf("line %s", e.line)
	}
	// No valid span: no trace ids; nil ctx does not panic.
	l.Info("m")
	if len(f.last(t).meta) != 0 {
		t.Errorf("metadata without span: %v", f.last(t).meta)
	}
	if err := h.Handle(nil, slog.NewRecord(time.Time{}, slog.LevelInfo, "nil ctx", 0)); err != nil { //nolint:staticcheck // nil ctx on purpose
		t.Fatal(err)
	}
}

func TestMetadataLimits(t *testing.T) {
	var keys []string
	var args []any
	for i := range 130 {
		k := fmt.Sprintf("k%03d", i)
		keys = append(keys, k)
		args = append(args, k, "v")
	}
	h, f := newTest(t, Config{Labels: withService(nil), MetadataKeys: append(keys, "big")})
	slog.New(h).Info("m", args...)
	e := f.last(t)
	if len(e.meta) != 128 {
		t.Errorf("%d metadata pairs, want 128", len(e.meta))
	}
	// The two that did not fit stay in the line, nothing is lost.
	if e.line != `level=INFO msg=m k128=v k129=v` {
		t.Errorf("line %s", e.line)
	}
	big := strings.Repeat("b", 40<<10)
	slog.New(h).Info("m", "big", big, "k000", big)
	e = f.last(t)
	size := 0
	for _, m := range e.meta {
		size += len(m.Name) + len(m.Value)
	}
	if size > 64<<10 || e.metaMap()["big"] != big || !strings.Contains(e.line, "k000="+big) {
		t.Errorf("metadata size %d, line %d bytes", size, len(e.line))
	}
	if st := h.Stats(); st.MetadataOverflow != 2 {
		t.Errorf("MetadataOverflow %d, want 2", st.MetadataOverflow)
	}
}

func TestMetadataFromWithAndRecord(t *testing.T) {
	h, f := newTest(t, Config{Labels: withService(nil), MetadataKeys: []string{"user_id", "tenant"}})
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("1112131415161718")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	l := slog.New(h).With("user_id", "from-with", "tenant", "t1").With("user_id", "from-with-2")
	l.InfoContext(ctx, "m", "user_id", "from-record")
	want := map[string]string{"trace_id": tid.String(), "span_id": sid.String(), "user_id": "from-record", "tenant": "t1"}
	e := f.last(t)
	if got := e.metaMap(); fmt.Sprint(got) != fmt.Sprint(want) || len(e.meta) != 4 {
		t.Errorf("metadata %v, want %v (later wins, no duplicates)", e.meta, want)
	}
	l.Info("m")
	if got := f.last(t).metaMap(); got["user_id"] != "from-with-2" || len(got) != 2 {
		t.Errorf("metadata %v", got)
	}
}

func TestMetadataLimitsInWithAttrs(t *testing.T) {
	var keys []string
	var args []any
	for i := range 130 {
		k := fmt.Sprintf("k%03d", i)
		keys = append(keys, k)
		args = append(args, k, "v")
	}
	h, f := newTest(t, Config{Labels: withService(nil), MetadataKeys: keys})
	tid, _ := trace.TraceIDFromHex("0102030405060708090a0b0c0d0e0f10")
	sid, _ := trace.SpanIDFromHex("1112131415161718")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	l := slog.New(h).With(args...)
	l.InfoContext(ctx, "m")
	e := f.last(t)
	// With kept 128 pairs (k128 and k129 went to its line); at Handle the
	// trace ids come first, so two With pairs no longer fit and are
	// dropped, counted.
	if len(e.meta) != 128 || e.metaMap()["trace_id"] == "" {
		t.Errorf("%d metadata pairs: %v", len(e.meta), e.metaMap()["trace_id"])
	}
	if e.line != "level=INFO msg=m k128=v k129=v" {
		t.Errorf("line %s", e.line)
	}
	if st := h.Stats(); st.MetadataOverflow != 2 {
		t.Errorf("MetadataOverflow %d, want 2 (one in With, one in Handle)", st.MetadataOverflow)
	}
}
