package labels

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValid(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "_a": true, "A_1": true, "": false, "1a": false, "a-b": false, "a.b": false,
		"__a": false, "_": true, "é": false, strings.Repeat("a", 1024): true, strings.Repeat("a", 1025): false,
	} {
		if got := Valid(name); got != want {
			t.Errorf("Valid(%q) = %v", name, got)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"http.method": "http_method",
		"ok_name":     "ok_name",
		"a-b c":       "a_b_c",
		"1abc":        "_1abc",
		"__name__":    "_name__",
		"___":         "_",
		"":            "_",
		"é":           "_",
		"x.y.z":       "x_y_z",
		"\xffa":       "_a",
		".a":          "_a",
		"..a":         "_a",
	} {
		if got := Sanitize(in); got != want {
			t.Errorf("Sanitize(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Sanitize(strings.Repeat("-", 3000)); len(got) > MaxNameLen || !Valid(got) {
		t.Errorf("long name: %d bytes", len(got))
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "a", "__x", "1", "http.method", "é-ü", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Sanitize(s)
		if !Valid(got) {
			t.Fatalf("Sanitize(%q) = %q is not valid", s, got)
		}
		if Sanitize(got) != got {
			t.Fatalf("Sanitize not idempotent on %q", got)
		}
		if Valid(s) && got != s {
			t.Fatalf("valid %q changed to %q", s, got)
		}
	})
}

func TestCutValue(t *testing.T) {
	if got := CutValue("héllo", 2); got != "h" {
		t.Errorf("got %q", got)
	}
	if got := CutValue("a\xffb", 10); got != "a\uFFFDb" {
		t.Errorf("got %q", got)
	}
}

func FuzzCutValue(f *testing.F) {
	f.Add("héllo", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 {
			return
		}
		got := CutValue(s, max)
		if len(got) > max || !utf8.ValidString(got) {
			t.Fatalf("CutValue(%q, %d) = %q", s, max, got)
		}
		if valid := strings.ToValidUTF8(s, "\uFFFD"); !strings.HasPrefix(valid, got) || len(valid)-len(got) > 0 && max-len(got) >= utf8.UTFMax {
			t.Fatalf("CutValue(%q, %d) = %q: not the longest prefix", s, max, got)
		}
	})
}

func TestAppendSet(t *testing.T) {
	ps := []Pair{{"b", `x"y\z`}, {"a", "1\n2"}}
	SortPairs(ps)
	if got := string(AppendSet(nil, ps)); got != `{a="1\n2", b="x\"y\\z"}` {
		t.Errorf("got %s", got)
	}
	if got := string(AppendSet(nil, nil)); got != "{}" {
		t.Errorf("empty set %s", got)
	}
}

// FuzzAppendValue checks that every value survives the label-set quoting
// the way Loki's (Go-style) string lexer reads it back.
func FuzzAppendValue(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "\n\r\t\x00\x7f", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		s = CutValue(s, MaxValueLen)
		q := `"` + string(AppendValue(nil, s)) + `"`
		if strings.ContainsAny(q, "\n") {
			t.Fatalf("raw newline in %q", q)
		}
		got, err := strconv.Unquote(q)
		if err != nil || got != s {
			t.Fatalf("Unquote(%s) = %q, %v; want %q", q, got, err, s)
		}
	})
}

func TestSortPairs(t *testing.T) {
	ps := []Pair{{"c", ""}, {"a", ""}, {"b", ""}, {"_", ""}, {"A", ""}}
	SortPairs(ps)
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "A,_,a,b,c" {
		t.Errorf("sorted %v", names)
	}
}
