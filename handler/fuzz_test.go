package handler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lokislog/lokislog/internal/labels"
)

// parseLabelSet parses Loki's {a="b", c="d"} form strictly.
func parseLabelSet(s string) (map[string]string, error) {
	if !strings.HasPrefix(s, "{") || !strings.HasSuffix(s, "}") {
		return nil, fmt.Errorf("no braces: %q", s)
	}
	s = s[1 : len(s)-1]
	m := map[string]string{}
	prev := ""
	for s != "" {
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return nil, fmt.Errorf("no =\" in %q", s)
		}
		name := s[:eq]
		if !labels.Valid(name) || name <= prev {
			return nil, fmt.Errorf("bad or unsorted name %q after %q", name, prev)
		}
		prev = name
		s = s[eq+1:]
		end := 1
		for ; end < len(s) && s[end] != '"'; end++ {
			if s[end] == '\\' {
				end++
			}
		}
		if end >= len(s) {
			return nil, fmt.Errorf("unterminated value")
		}
		v, err := strconv.Unquote(s[:end+1])
		if err != nil {
			return nil, fmt.Errorf("value %s: %v", s[:end+1], err)
		}
		if len(v) > labels.MaxValueLen || !utf8.ValidString(v) || v == "" {
			return nil, fmt.Errorf("bad value %q", v)
		}
		m[name] = v
		s = s[end+1:]
		if s != "" {
			if !strings.HasPrefix(s, ", ") {
				return nil, fmt.Errorf("want \", \" at %q", s)
			}
			s = s[2:]
		}
	}
	return m, nil
}

// FuzzHandle logs arbitrary keys and values and checks that the line
// parses back to them in both formats, that the label set is valid Loki
// syntax with the sanitised label, and that the metadata is kept.
func FuzzHandle(f *testing.F) {
	f.Add("key", "value", false)
	f.Add("a b", "x=y \"q\"", true)
	f.Add("__x", "\xff\x00", false)
	f.Add("1.2", strings.Repeat("é", 1100), true)
	f.Fuzz(func(t *testing.T, key, value string, js bool) {
		if key == "" || key == "m" || strings.Contains(key, ".") || key == "level" || key == "msg" {
			return // keep the expected line simple: no collisions with built-ins
		}
		format := "logfmt"
		if js {
			format = "json"
		}
		h, fs := newTest(t, Config{Format: format, Labels: withService(nil), LabelKeys: []string{"l." + key},
			MetadataKeys: []string{"m"}, MaxLineSize: 64 << 10})
		slog.New(h).Info("msg", key, value, slog.Group("l", key, value), "m", value)
		e := fs.last(t)
		valid := perByteValid(value)
		var got string
		if js {
			var m map[string]any
			if err := json.Unmarshal([]byte(e.line), &m); err != nil {
				t.Fatalf("invalid JSON %q: %v", e.line, err)
			}
			got, _ = m[perByteValid(key)].(string)
		} else {
			kvs, err := parseLogfmt(e.line)
			if err != nil {
				t.Fatalf("invalid logfmt %q: %v", e.line, err)
			}
			for _, kv := range kvs {
				if kv[0] == perByteValid(key) {
					got = kv[1]
				}
			}
		}
		if got != valid {
			t.Fatalf("value %q came back as %q in %s", value, got, e.line)
		}
		ls, err := parseLabelSet(e.labels)
		if err != nil {
			t.Fatalf("label set %q: %v", e.labels, err)
		}
		name := labels.Sanitize("l." + key)
		if want := labels.CutValue(value, labels.MaxValueLen); ls[name] != want && name != "service_name" {
			t.Fatalf("label %s=%q, want %q (%s)", name, ls[name], want, e.labels)
		}
		if value != "" && e.metaMap()["m"] != labels.CutValue(value, labels.MaxMetadataBytes) {
			t.Fatalf("metadata m=%q", e.metaMap()["m"])
		}
	})
}

// perByteValid replaces each invalid UTF-8 byte with U+FFFD, as the line
// encoders (and encoding/json) do.
func perByteValid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString("\uFFFD")
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// FuzzTextFastPath checks that appendAttr's direct path for scalars
// (logfmt, no ReplaceAttr, no group, not a label or metadata key) writes
// the line the general path writes: the same record through a handler
// whose ReplaceAttr returns every attribute unchanged takes the general
// path for each attribute.
func FuzzTextFastPath(f *testing.F) {
	f.Add("key", "value", int64(-42), 1.5, int64(1234567))
	f.Add("a b", "x=y \"q\"", int64(0), math.NaN(), int64(-1))
	f.Add("é", "\xff\x00", int64(math.MinInt64), math.Inf(-1), int64(math.MaxInt64))
	f.Add("", "", int64(7), 0.0, int64(0))
	f.Fuzz(func(t *testing.T, key, s string, i int64, fl float64, d int64) {
		line := func(cfg Config) string {
			h, fs := newTest(t, cfg)
			l := slog.New(h).With("w", s)
			l.LogAttrs(context.Background(), slog.LevelWarn, "m",
				slog.String(key, s), slog.Int64(key+"i", i), slog.Uint64(key+"u", uint64(i)),
				slog.Float64(key+"f", fl), slog.Bool(key+"b", i%2 == 0), slog.Duration(key+"d", time.Duration(d)),
				slog.Time(key+"t", time.Unix(0, d).UTC()), slog.Any(key+"a", s), slog.Group("g", slog.String(key, s)))
			return fs.last(t).line
		}
		same := func(_ []string, a slog.Attr) slog.Attr { return a }
		// A label key of key's length makes the fast path ask classify.
		for _, keys := range [][]string{nil, {strings.Repeat("z", max(1, len(key)))}} {
			fast := line(Config{MetadataKeys: keys})
			general := line(Config{MetadataKeys: keys, ReplaceAttr: same})
			if fast != general {
				t.Fatalf("keys %q: fast path wrote\n%s\ngeneral path\n%s", keys, fast, general)
			}
		}
	})
}
