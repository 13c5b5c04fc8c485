package handler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"testing"
	"testing/slogtest"
	"time"
)

// timeInLine is a ReplaceAttr that keeps the record time in the line (as a
// string), the documented way to get slog's exact line with time.
func timeInLine(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
		return slog.String(slog.TimeKey, a.Value.Time().Format(time.RFC3339Nano))
	}
	return a
}

func TestSlogtest(t *testing.T) {
	for _, format := range []string{"logfmt", "json"} {
		t.Run(format, func(t *testing.T) {
			var f *fakeSink
			slogtest.Run(t, func(t *testing.T) slog.Handler {
				var h *Handler
				h, f = newTest(t, Config{Format: format, ReplaceAttr: timeInLine})
				return h
			}, func(t *testing.T) map[string]any {
				e := f.last(t)
				var m map[string]any
				var err error
				if format == "json" {
					err = json.Unmarshal([]byte(e.line), &m)
				} else {
					m, err = nestLogfmt(e.line)
				}
				if err != nil {
					t.Fatalf("parse %q: %v", e.line, err)
				}
				return m
			})
		})
	}
}

// TestTimeIsTimestamp checks the default: the record time is the entry
// timestamp and is not repeated in the line; a zero time becomes the time
// of Handle.
func TestTimeIsTimestamp(t *testing.T) {
	for _, format := range []string{"logfmt", "json"} {
		h, f := newTest(t, Config{Format: format})
		at := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)
		r := slog.NewRecord(at, slog.LevelWarn, "m", 0)
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		e := f.last(t)
		if e.ts != at.UnixNano() {
			t.Errorf("%s: ts %d, want %d", format, e.ts, at.UnixNano())
		}
		if strings.Contains(e.line, "time") || strings.Contains(e.line, "2025") {
			t.Errorf("%s: line has the time: %s", format, e.line)
		}
		before := time.Now().UnixNano()
		if err := h.Handle(context.Background(), slog.NewRecord(time.Time{}, slog.LevelInfo, "zero", 0)); err != nil {
			t.Fatal(err)
		}
		after := time.Now().UnixNano()
		if ts := f.last(t).ts; ts < before || ts > after {
			t.Errorf("%s: zero time got ts %d, want within [%d, %d]", format, ts, before, after)
		}
	}
}

type logValuerFunc func() slog.Value

func (f logValuerFunc) LogValue() slog.Value { return f() }

type textM struct{ s string }

func (t textM) MarshalText() ([]byte, error) { return []byte("T:" + t.s), nil }

type jsonM struct{ N int }

func (j jsonM) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf(`{"n":%d}`, j.N)), nil }

type strS struct{ v int }

func (s *strS) String() string { return fmt.Sprintf("strS<%d>", s.v) }

type formatted struct{}

func (formatted) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "formatted<%c,%v>", verb, f.Flag('+'))
}

type namedBytes []byte

// scenarios are log calls compared, line for line, with slog's own
// handlers (which write time; it is removed there with ReplaceAttr).
var scenarios = []struct {
	name string
	log  func(l *slog.Logger)
}{
	{"plain", func(l *slog.Logger) { l.Info("hello") }},
	{"kinds", func(l *slog.Logger) {
		l.Warn("kinds", "s", "str", "i", -42, "u", uint64(1<<63), "f", 3.25, "fbig", 1e22, "fsmall", 1e-9,
			"b", true, "d", 1500*time.Millisecond, "dz", time.Duration(0), "dus", 3*time.Microsecond,
			"t", time.Date(2024, 1, 2, 3, 4, 5, 600000000, time.UTC), "err", errors.New("boom"),
			"bytes", []byte("raw bytes"), "tm", textM{"x"}, "addr", netip.MustParseAddr("10.0.0.1"),
			"nilany", nil, "strs", []string{"a", "b"}, "mapv", map[string]int{"a": 1}, "jm", jsonM{3})
	}},
	{"quoting", func(l *slog.Logger) {
		l.Error("needs \"quotes\" and = and\nnewline", "empty", "", "sp", "a b", "eq", "a=b", "bs", `back\slash`,
			"tab", "a\tb", "uni", "héllo", "k y", "keyspace")
	}},
	{"groups", func(l *slog.Logger) {
		l.Info("g", slog.Group("req", "method", "GET", slog.Group("inner", "x", 1)), slog.Group("empty"),
			slog.Group("", "inl", 2), "after", 3)
	}},
	{"with", func(l *slog.Logger) {
		l.With("a", 1).WithGroup("g").With("b", 2).WithGroup("h").Info("m", "c", 3)
	}},
	{"with-empty-record", func(l *slog.Logger) {
		l.With("a", 1).WithGroup("g").With("b", 2).WithGroup("h").Info("m")
	}},
	{"group-no-attrs", func(l *slog.Logger) { l.WithGroup("g").WithGroup("h").Info("m") }},
	{"logvaluer", func(l *slog.Logger) {
		l.Info("lv", "v", logValuerFunc(func() slog.Value { return slog.StringValue("resolved") }),
			"gv", logValuerFunc(func() slog.Value { return slog.GroupValue(slog.Int("a", 1), slog.Int("b", 2)) }))
	}},
	{"stringer", func(l *slog.Logger) { l.Info("s", "p", &strS{7}) }},
	{"formatter-and-named-bytes", func(l *slog.Logger) {
		l.Info("f", "fm", formatted{}, "nb", namedBytes("a b"), "st", struct{ A, B int }{1, 2}, "ptr", &struct{ A int }{3})
	}},
	{"level-offset", func(l *slog.Logger) { l.Log(context.Background(), slog.LevelInfo+2, "x") }},
	{"with-only-empty-group", func(l *slog.Logger) { l.With(slog.Group("e")).Info("m", "a", 1) }},
}

// TestLinesMatchSlog compares every scenario's line with slog's
// JSONHandler and TextHandler output without the time. Both formats must
// be byte-identical: the same keys, values, groups and quoting.
func TestLinesMatchSlog(t *testing.T) {
	noTime := func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	for _, format := range []string{"logfmt", "json"} {
		for _, sc := range scenarios {
			t.Run(format+"/"+sc.name, func(t *testing.T) {
				var want bytes.Buffer
				opts := &slog.HandlerOptions{ReplaceAttr: noTime}
				var ref slog.Handler = slog.NewTextHandler(&want, opts)
				if format == "json" {
					ref = slog.NewJSONHandler(&want, opts)
				}
				sc.log(slog.New(ref))
				h, f := newTest(t, Config{Format: format})
				sc.log(slog.New(h))
				got := f.last(t).line
				if w := strings.TrimSuffix(want.String(), "\n"); got != w {
					t.Errorf("line differs\n got: %s\nwant: %s", got, w)
				}
			})
		}
	}
}

// TestQuotingParsesBack checks that values with characters slog would
// quote Go-style (\x.., \u..) come back intact through a JSON-escape
// parser, which is what Loki's `| logfmt` and `| json` use.
func TestQuotingParsesBack(t *testing.T) {
	values := []string{"plain", "", "a b", "a=b", `q"q`, `b\s`, "nl\nx", "\x00\x1f\x7f", "héllo wörld",
		"\u2028\u2029", "nbsp\u00a0x", "emoji 🙂", string([]byte{0xff, 'a'}), "<>&"}
	for _, format := range []string{"logfmt", "json"} {
		h, f := newTest(t, Config{Format: format})
		for _, v := range values {
			slog.New(h).Info(v, "k", v, v, "as key")
			line := f.last(t).line
			var m map[string]string
			if format == "json" {
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%s: %q: %v", format, line, err)
				}
			} else {
				m = logfmtMap(t, line)
			}
			want := strings.ToValidUTF8(v, "\uFFFD")
			if m["msg"] != want || m["k"] != want || m[want] != "as key" {
				t.Errorf("%s: value %q came back as msg=%q k=%q from %s", format, v, m["msg"], m["k"], line)
			}
		}
	}
}

func TestJSONSpecialFloats(t *testing.T) {
	h, f := newTest(t, Config{Format: "json"})
	slog.New(h).Info("f", "nan", math.NaN(), "inf", math.Inf(1))
	var m map[string]any
	if err := json.Unmarshal([]byte(f.last(t).line), &m); err != nil {
		t.Fatalf("invalid JSON %s: %v", f.last(t).line, err)
	}
	if !strings.HasPrefix(m["nan"].(string), "!ERROR:") || !strings.Contains(m["inf"].(string), "+Inf") {
		t.Errorf("got %v", m)
	}
}
