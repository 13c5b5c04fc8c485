package handler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/lokislog/lokislog/buffer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestReplaceAttr(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name     string
		rep      func([]string, slog.Attr) slog.Attr
		log      func(l *slog.Logger)
		want     string
		wantCall []string // "groups/key" for each call, in order
	}{
		{
			name:     "called for built-ins (no groups) and attrs in order",
			rep:      func(_ []string, a slog.Attr) slog.Attr { return a },
			log:      func(l *slog.Logger) { l.Info("m", "a", 1, slog.Group("g", "b", 2), "c", 3) },
			want:     `level=INFO msg=m a=1 g.b=2 c=3`,
			wantCall: []string{"/time", "/level", "/msg", "/a", "g/b", "/c"},
		},
		{
			name:     "groups from WithGroup and With",
			rep:      func(_ []string, a slog.Attr) slog.Attr { return a },
			log:      func(l *slog.Logger) { l.WithGroup("w").With("x", 1).WithGroup("v").Info("m", "y", 2) },
			want:     `level=INFO msg=m w.x=1 w.v.y=2`,
			wantCall: []string{"w/x", "/time", "/level", "/msg", "w.v/y"},
		},
		{
			name: "drop and rename",
			rep: func(g []string, a slog.Attr) slog.Attr {
				switch a.Key {
				case "secret":
					return slog.Attr{}
				case slog.LevelKey:
					return slog.String("severity", a.Value.String())
				case slog.MessageKey:
					a.Key = "message"
				}
				return a
			},
			log:  func(l *slog.Logger) { l.Error("m", "secret", "pw", "ok", true) },
			want: `severity=ERROR message=m ok=true`,
		},
		{
			name: "time rewritten goes into the line",
			rep: func(g []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey && len(g) == 0 {
					return slog.Int64("ts", a.Value.Time().Unix())
				}
				return a
			},
			log:  func(l *slog.Logger) { l.Info("m") },
			want: fmt.Sprintf(`ts=%d level=INFO msg=m`, at.Unix()),
		},
		{
			name: "group emptied by ReplaceAttr is omitted",
			rep: func(g []string, a slog.Attr) slog.Attr {
				if len(g) > 0 {
					return slog.Attr{}
				}
				return a
			},
			log:  func(l *slog.Logger) { l.Info("m", slog.Group("g", "a", 1), "b", 2) },
			want: `level=INFO msg=m b=2`,
		},
		{
			name: "returned LogValuer is resolved",
			rep: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == "v" {
					return slog.Any("v", logValuerFunc(func() slog.Value { return slog.StringValue("late") }))
				}
				return a
			},
			log:  func(l *slog.Logger) { l.Info("m", "v", 1) },
			want: `level=INFO msg=m v=late`,
		},
		{
			name: "not called for groups, value already resolved",
			rep: func(_ []string, a slog.Attr) slog.Attr {
				if a.Value.Kind() == slog.KindGroup || a.Value.Kind() == slog.KindLogValuer {
					return slog.String(a.Key, "BAD")
				}
				return a
			},
			log: func(l *slog.Logger) {
				l.Info("m", slog.Group("g", "a", 1), "lv", logValuerFunc(func() slog.Value { return slog.IntValue(5) }))
			},
			want: `level=INFO msg=m g.a=1 lv=5`,
		},
		{
			name: "source is passed as *slog.Source",
			rep: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.SourceKey {
					if _, ok := a.Value.Any().(*slog.Source); !ok {
						return slog.String("source", "NOT A SOURCE")
					}
					return slog.String("source", "ok")
				}
				return a
			},
			log:  func(l *slog.Logger) { l.Info("m") },
			want: `level=INFO source=ok msg=m`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls []string
			rep := func(g []string, a slog.Attr) slog.Attr {
				if g != nil && len(g) == 0 {
					t.Errorf("groups is empty but not nil for %s", a.Key)
				}
				calls = append(calls, strings.Join(g, ".")+"/"+a.Key)
				return tt.rep(g, a)
			}
			h, f := newTest(t, Config{ReplaceAttr: rep, AddSource: strings.Contains(tt.name, "source")})
			tt.log(slog.New(&fixedTime{h, at}))
			if got := f.last(t).line; got != tt.want {
				t.Errorf("line %s, want %s", got, tt.want)
			}
			if tt.wantCall != nil && strings.Join(calls, " ") != strings.Join(tt.wantCall, " ") {
				t.Errorf("calls %v, want %v", calls, tt.wantCall)
			}
		})
	}
}

// fixedTime sets every record's time (slog.Logger stamps time.Now()).
type fixedTime struct {
	slog.Handler
	at time.Time
}

func (f *fixedTime) Handle(ctx context.Context, r slog.Record) error {
	r.Time = f.at
	return f.Handler.Handle(ctx, r)
}
func (f *fixedTime) WithAttrs(as []slog.Attr) slog.Handler {
	return &fixedTime{f.Handler.WithAttrs(as), f.at}
}
func (f *fixedTime) WithGroup(n string) slog.Handler { return &fixedTime{f.Handler.WithGroup(n), f.at} }

func TestTruncate(t *testing.T) {
	for _, format := range []string{"logfmt", "json"} {
		for _, max := range []int{64, 100, 1000, 4096} {
			h, f := newTest(t, Config{Format: format, MaxLineSize: max})
			msg := strings.Repeat("日本語", 2000)
			slog.New(h).Info(msg)
			e := f.last(t)
			if len(e.line) > max || !utf8.ValidString(e.line) {
				t.Errorf("%s/%d: line %d bytes, valid=%v", format, max, len(e.line), utf8.ValidString(e.line))
			}
			full := len(`level=INFO msg=`) + len(msg)
			if format == "json" {
				full = len(`{"level":"INFO","msg":""}`) + len(msg)
			}
			i := strings.LastIndex(e.line, "…[truncated ")
			var n int
			if i < 0 || !strings.HasSuffix(e.line, " bytes]") {
				t.Fatalf("%s/%d: no marker: %q", format, max, e.line)
			}
			fmt.Sscanf(e.line[i:], "…[truncated %d bytes]", &n)
			if i+n != full {
				t.Errorf("%s/%d: kept %d + removed %d != %d", format, max, i, n, full)
			}
			if max-len(e.line) > 3 { // at most a cut rune of slack
				t.Errorf("%s/%d: line %d bytes, wasteful cut", format, max, len(e.line))
			}
			if st := h.Stats(); st.Truncated != 1 {
				t.Errorf("Truncated %d", st.Truncated)
			}
		}
	}
	h, f := newTest(t, Config{MaxLineSize: 64})
	slog.New(h).Info("short")
	if f.last(t).line != "level=INFO msg=short" || h.Stats().Truncated != 0 {
		t.Errorf("short line changed: %q", f.last(t).line)
	}
}

type panicValuer struct{}

func (panicValuer) LogValue() slog.Value { panic("valuer boom") }

type panicStringer struct{ p *int }

func (s panicStringer) String() string { return fmt.Sprint(*s.p) }

type nilStringer struct{ v int }

func (n *nilStringer) String() string { return fmt.Sprint(n.v) }

type panicTexter struct{}

func (panicTexter) MarshalText() ([]byte, error) { panic("text boom") }

type panicJSON struct{}

func (panicJSON) MarshalJSON() ([]byte, error) { panic("json boom") }

type errText struct{}

func (errText) MarshalText() ([]byte, error) { return nil, errors.New("cannot") }

func TestPanicsAreInline(t *testing.T) {
	for _, format := range []string{"logfmt", "json"} {
		h, f := newTest(t, Config{Format: format, MetadataKeys: []string{"m"}, LabelKeys: []string{"l"}})
		slog.New(h).Info("m", "valuer", panicValuer{}, "stringer", panicStringer{}, "nilptr", (*nilStringer)(nil),
			"text", panicTexter{}, "json", panicJSON{}, "errtext", errText{}, "m", panicStringer{}, "l", panicTexter{}, "after", 1)
		e := f.last(t)
		var m map[string]string
		if format == "json" {
			var raw map[string]any
			if err := jsonUnmarshal(e.line, &raw); err != nil {
				t.Fatalf("invalid JSON %s: %v", e.line, err)
			}
			m = map[string]string{}
			for k, v := range raw {
				m[k] = fmt.Sprint(v)
			}
		} else {
			m = logfmtMap(t, e.line)
		}
		checks := map[string]string{
			"valuer": "LogValue panicked", "stringer": "!PANIC:", "nilptr": "<nil>", "text": "!PANIC: text boom",
			"errtext": "!ERROR:cannot", "after": "1",
		}
		if format == "json" {
			checks["json"] = "!PANIC: json boom"
			checks["stringer"] = "map[]" // encoding/json ignores String
			checks["text"] = "!PANIC: text boom"
			checks["errtext"] = "cannot"
			checks["nilptr"] = "<nil>" // null, printed by fmt
		}
		for k, want := range checks {
			if !strings.Contains(m[k], want) {
				t.Errorf("%s: %s=%q, want it to contain %q (line %s)", format, k, m[k], want, e.line)
			}
		}
		if got := e.metaMap()["m"]; !strings.HasPrefix(got, "!PANIC:") {
			t.Errorf("%s: metadata m=%q", format, got)
		}
		if !strings.Contains(e.labels, `l="!PANIC: text boom"`) {
			t.Errorf("%s: labels %s", format, e.labels)
		}
	}
}

func TestPanickingReplaceAttr(t *testing.T) {
	h, f := newTest(t, Config{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == "boom" {
			panic("rep boom")
		}
		return a
	}})
	err := h.Handle(context.Background(), recordWith("boom", 1))
	if err == nil || !strings.Contains(err.Error(), "rep boom") {
		t.Fatalf("err %v", err)
	}
	if len(f.all()) != 0 {
		t.Errorf("entry sent despite panic")
	}
	if got := h.Stats().Dropped[ReasonEncodePanic]; got != 1 {
		t.Errorf("dropped %d", got)
	}
	// The handler still works.
	if err := h.Handle(context.Background(), recordWith("ok", 1)); err != nil {
		t.Fatal(err)
	}
}

func recordWith(args ...any) slog.Record {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "m", 0)
	r.Add(args...)
	return r
}

func TestShutdown(t *testing.T) {
	h, f := newTest(t, Config{TenantID: "t1"})
	l := slog.New(h)
	child := l.With("a", 1).WithGroup("g")
	l.Info("before")
	if e := f.last(t); e.tenant != "t1" {
		t.Errorf("tenant %q", e.tenant)
	}
	if err := h.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Shutdown through a clone shuts the shared pipeline, once.
	if err := child.Handler().(*Handler).Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := h.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f.shutdowns != 1 {
		t.Errorf("sink shut down %d times", f.shutdowns)
	}
	for _, hh := range []slog.Handler{h, child.Handler()} {
		if err := hh.Handle(context.Background(), recordWith()); !errors.Is(err, buffer.ErrClosed) {
			t.Errorf("Handle after Shutdown: %v", err)
		}
	}
	if err := h.Flush(context.Background()); !errors.Is(err, buffer.ErrClosed) {
		t.Errorf("Flush after Shutdown: %v", err)
	}
	st := h.Stats()
	if st.Dropped[buffer.ReasonClosed] != 2 || st.Enqueued != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestSinkErrorsReturned(t *testing.T) {
	h, f := newTest(t, Config{})
	f.full = true
	if err := h.Handle(context.Background(), recordWith()); !errors.Is(err, buffer.ErrFull) {
		t.Fatalf("err %v", err)
	}
	if got := h.Stats().Dropped[buffer.ReasonBufferFull]; got != 1 {
		t.Errorf("dropped %d", got)
	}
}

func TestEnabled(t *testing.T) {
	var lv slog.LevelVar
	h, _ := newTest(t, Config{Level: &lv})
	ctx := context.Background()
	if h.Enabled(ctx, slog.LevelDebug) || !h.Enabled(ctx, slog.LevelInfo) {
		t.Error("default level should be Info")
	}
	lv.Set(slog.LevelError)
	if h.WithGroup("g").Enabled(ctx, slog.LevelWarn) {
		t.Error("LevelVar change not seen by clone")
	}
	h2, _ := newTest(t, Config{})
	if h2.Enabled(ctx, slog.LevelDebug) || !h2.Enabled(ctx, slog.LevelInfo) {
		t.Error("nil Level should mean Info")
	}
}

// TestHandlerConcurrentSafe logs from many goroutines through shared and
// per-goroutine clones while Shutdown runs; run it with -race.
func TestHandlerConcurrentSafe(t *testing.T) {
	for _, format := range []string{"logfmt", "json"} {
		h, f := newTest(t, Config{Format: format, LabelKeys: []string{"worker"}, MetadataKeys: []string{"req"}, MaxStreams: 5})
		base := slog.New(h).With("svc", "x")
		var wg sync.WaitGroup
		var errs sync.Map
		start := make(chan struct{})
		for g := range 16 {
			wg.Go(func() {
				<-start
				l := base.WithGroup(fmt.Sprint("g", g%3)).With("worker", g%8)
				for i := range 200 {
					if err := l.Handler().Handle(context.Background(), recordWith("i", i, "req", g)); err != nil {
						errs.Store(err.Error(), true)
					}
					l = l.With("n", i%2)
				}
			})
		}
		wg.Go(func() {
			<-start
			time.Sleep(time.Millisecond)
			h.Shutdown(context.Background())
		})
		close(start)
		wg.Wait()
		errs.Range(func(k, _ any) bool {
			if !strings.Contains(k.(string), "closed") {
				t.Errorf("unexpected error %v", k)
			}
			return true
		})
		st := h.Stats()
		got := uint64(len(f.all())) + st.Dropped[buffer.ReasonClosed]
		if got != 16*200 {
			t.Errorf("%s: %d sent + %d dropped != %d", format, len(f.all()), st.Dropped[buffer.ReasonClosed], 16*200)
		}
		if st.Streams > 5 {
			t.Errorf("%d streams > MaxStreams", st.Streams)
		}
		for _, e := range f.all() {
			if format == "json" {
				var m map[string]any
				if err := jsonUnmarshal(e.line, &m); err != nil {
					t.Fatalf("bad line %s", e.line)
				}
			} else if _, err := parseLogfmt(e.line); err != nil {
				t.Fatalf("bad line %s: %v", e.line, err)
			}
		}
	}
}

// TestDropsReported checks that records dropped inside Handle, whose error
// slog.Logger discards, still reach the ErrorHandler: a record whose
// encoding panicked (with the panic as the cause) and records refused
// because memory is full.
func TestDropsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var drops []*buffer.DropError
		h, err := New(Config{
			URL: "http://127.0.0.1:1", BatchWait: time.Hour, MaxBufferBytes: 64 << 10,
			ErrorHandler: func(err error) {
				mu.Lock()
				defer mu.Unlock()
				if d := (*buffer.DropError)(nil); errors.As(err, &d) {
					drops = append(drops, d)
				}
			},
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == "boom" {
					panic("rep boom")
				}
				return a
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		l := slog.New(h)
		l.Info("panics", "boom", 1)
		for i := range 2000 {
			l.Info("fills memory", "i", i, "pad", strings.Repeat("x", 100))
		}
		time.Sleep(time.Second) // reports are at most a second apart
		synctest.Wait()
		st := h.Stats()
		mu.Lock()
		reported := make(map[string]uint64)
		var cause error
		for _, d := range drops {
			for r, n := range d.Dropped {
				reported[r] += n
			}
			if c := d.Causes[ReasonEncodePanic]; c != nil {
				cause = c
			}
		}
		n := len(drops)
		mu.Unlock()
		if n == 0 || n > 2 {
			t.Errorf("%d drop reports, want 1 or 2", n)
		}
		if reported[ReasonEncodePanic] != 1 || reported[buffer.ReasonBufferFull] == 0 ||
			reported[buffer.ReasonBufferFull] != st.Dropped[buffer.ReasonBufferFull] {
			t.Errorf("reported %v, want 1 encode_panic and the %d buffer_full drops of Stats", reported, st.Dropped[buffer.ReasonBufferFull])
		}
		if cause == nil || !strings.Contains(cause.Error(), "rep boom") {
			t.Errorf("encode_panic cause %v, want the panic", cause)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		h.Shutdown(ctx)
	})
}
