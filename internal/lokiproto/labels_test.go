package lokiproto

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseLabels(t *testing.T) {
	tests := map[string]struct {
		in      string
		want    []LabelPair
		wantErr bool
	}{
		"simple":              {in: `{a="b"}`, want: []LabelPair{{"a", "b"}}},
		"canonical":           {in: `{a="b", c="d"}`, want: []LabelPair{{"a", "b"}, {"c", "d"}}},
		"sorted":              {in: `{z="1",a="2"}`, want: []LabelPair{{"a", "2"}, {"z", "1"}}},
		"spaces":              {in: " \t{ a = \"b\" ,\n c=\"d\" } \r\n", want: []LabelPair{{"a", "b"}, {"c", "d"}}},
		"trailing comma":      {in: `{a="b",}`, want: []LabelPair{{"a", "b"}}},
		"empty set":           {in: `{}`, want: nil},
		"empty value dropped": {in: `{a="", b="c"}`, want: []LabelPair{{"b", "c"}}},
		"escapes":             {in: `{a="x\"y\\z\n\t\u00e9\x41"}`, want: []LabelPair{{"a", "x\"y\\z\n\té" + "A"}}},
		"single quotes":       {in: `{a='it\'s'}`, want: []LabelPair{{"a", "it's"}}},
		"raw string":          {in: "{a=`x\\n\ny`}", want: []LabelPair{{"a", "x\\n\ny"}}},
		"utf8 value":          {in: `{a="日本"}`, want: []LabelPair{{"a", "日本"}}},
		"duplicates kept":     {in: `{a="1", b="x", a="2"}`, want: []LabelPair{{"a", "1"}, {"a", "2"}, {"b", "x"}}},
		"empty dup dropped":   {in: `{a="", a="2"}`, want: []LabelPair{{"a", "2"}}},
		"reserved name":       {in: `{__name__="x"}`, want: []LabelPair{{"__name__", "x"}}},
		"underscore digits":   {in: `{_1="x", A9="y"}`, want: []LabelPair{{"A9", "y"}, {"_1", "x"}}},
		"empty":               {in: ``, wantErr: true},
		"no brace":            {in: `a="b"`, wantErr: true},
		"metric name":         {in: `up{a="b"}`, wantErr: true},
		"unclosed":            {in: `{a="b"`, wantErr: true},
		"unclosed string":     {in: `{a="b}`, wantErr: true},
		"newline in string":   {in: "{a=\"b\nc\"}", wantErr: true},
		"dot in name":         {in: `{a.b="c"}`, wantErr: true},
		"dash in name":        {in: `{a-b="c"}`, wantErr: true},
		"digit first":         {in: `{1a="c"}`, wantErr: true},
		"quoted name":         {in: `{"a.b"="c"}`, wantErr: true},
		"not equal":           {in: `{a!="b"}`, wantErr: true},
		"regex":               {in: `{a=~"b"}`, wantErr: true},
		"double equal":        {in: `{a=="b"}`, wantErr: true},
		"unquoted value":      {in: `{a=b}`, wantErr: true},
		"lone comma":          {in: `{,}`, wantErr: true},
		"double comma":        {in: `{a="b",,}`, wantErr: true},
		"missing comma":       {in: `{a="b" c="d"}`, wantErr: true},
		"text after":          {in: `{a="b"} x`, wantErr: true},
		"bad escape":          {in: `{a="\q"}`, wantErr: true},
		"invalid utf8":        {in: "{a=\"\xff\"}", wantErr: true},
		"invalid utf8 escape": {in: `{a="\xff"}`, wantErr: true},
		"name without value":  {in: `{a}`, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseLabels(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseLabels(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if !tc.wantErr && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseLabels(%q) = %v, want %v", tc.in, got, tc.want)
			}
		})
	}
}

func TestFormatLabels(t *testing.T) {
	got := FormatLabels([]LabelPair{{"a", "b"}, {"c", "x\"y\n"}})
	if want := `{a="b", c="x\"y\n"}`; got != want {
		t.Fatalf("FormatLabels = %s, want %s", got, want)
	}
	if got := FormatLabels(nil); got != "{}" {
		t.Fatalf("FormatLabels(nil) = %s", got)
	}
}

func TestValidLabelName(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "_": true, "__x": true, "A_9": true, "": false, "9a": false, "a-b": false, "a.b": false, "é": false,
	} {
		if got := ValidLabelName(name); got != want {
			t.Errorf("ValidLabelName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestNormalizeMetadataName(t *testing.T) {
	tests := map[string]struct {
		want    string
		wantErr bool
	}{
		"trace_id":      {want: "trace_id"},
		"http-method":   {want: "http_method"},
		"http.method":   {want: "http_method"},
		"a..-b":         {want: "a_b"},
		"a__b":          {want: "a_b"},
		"1abc":          {want: "key_1abc"},
		"_private":      {want: "_private"},
		"__reserved__":  {want: "__reserved__"},
		"__a.b__":       {want: "__a_b__"},
		"ünïcode":       {want: "_n_code"},
		"":              {wantErr: true},
		"-":             {wantErr: true},
		"___":           {wantErr: true},
		"..":            {wantErr: true},
		"Upper_Case-ok": {want: "Upper_Case_ok"},
	}
	for in, tc := range tests {
		got, err := NormalizeMetadataName(in)
		if (err != nil) != tc.wantErr {
			t.Errorf("NormalizeMetadataName(%q) error = %v, want error %v", in, err, tc.wantErr)
			continue
		}
		if tc.wantErr {
			if !errors.Is(err, ErrMetadataName) {
				t.Errorf("NormalizeMetadataName(%q) error %v is not ErrMetadataName", in, err)
			}
			continue
		}
		if got != tc.want {
			t.Errorf("NormalizeMetadataName(%q) = %q, want %q", in, got, tc.want)
		}
	}
}

// FuzzParseLabels checks that the parser never panics, that what it accepts
// is well formed (valid names, valid UTF-8, non-empty values, sorted), and that
// the canonical form of its result parses back to the same result.
func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{`{a="b"}`, `{a="b", c="d"}`, `{a='x\'y'}`, "{a=`r`}", `{a="\u00e9\x41\101"}`, `{}`, `{a="",}`, `{a="b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ls, err := ParseLabels(s)
		if err != nil {
			return
		}
		for i, l := range ls {
			if !ValidLabelName(l.Name) || l.Value == "" || !utf8.ValidString(l.Value) {
				t.Fatalf("accepted bad pair %q=%q from %q", l.Name, l.Value, s)
			}
			if i > 0 && strings.Compare(ls[i-1].Name, l.Name) > 0 {
				t.Fatalf("not sorted: %v", ls)
			}
		}
		again, err := ParseLabels(FormatLabels(ls))
		if err != nil {
			t.Fatalf("canonical form %s of %q does not parse: %v", FormatLabels(ls), s, err)
		}
		if !reflect.DeepEqual(again, ls) && !(len(again) == 0 && len(ls) == 0) {
			t.Fatalf("round trip of %q: %v, then %v", s, ls, again)
		}
	})
}

func FuzzNormalizeMetadataName(f *testing.F) {
	for _, s := range []string{"trace_id", "http-method", "1a", "__x__", "", "-", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeMetadataName(s)
		if err != nil {
			return
		}
		if !ValidLabelName(got) {
			t.Fatalf("NormalizeMetadataName(%q) = %q, not a valid name", s, got)
		}
		again, err := NormalizeMetadataName(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", s, got, again, err)
		}
	})
}
