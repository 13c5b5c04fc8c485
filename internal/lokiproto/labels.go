package lokiproto

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ParseLabels parses a stream's label-set string, `{name="value", ...}`, the
// way Loki does (Prometheus' ParseMetric followed by dropping empty values):
//
//   - whitespace (space, tab, CR, LF) may surround every token;
//   - names are `[a-zA-Z_][a-zA-Z0-9_]*`; quoted (UTF-8) names and a metric
//     name before the brace are rejected;
//   - values are quoted with ", ' or ` (raw); " and ' strings take Go escapes
//     and may not contain a raw newline; values must be valid UTF-8;
//   - pairs are separated by commas; one trailing comma is allowed;
//   - a pair with an empty value is dropped, as absent;
//   - the result is sorted by name; duplicate names are kept (side by side)
//     so that validation can reject them, as Loki does.
func ParseLabels(s string) ([]LabelPair, error) {
	p := labelParser{s: s}
	ls, err := p.parse()
	if err != nil {
		return nil, fmt.Errorf("parse labels %s: %w", quoteCut(s), err)
	}
	return ls, nil
}

type labelParser struct {
	s string
	i int
}

func (p *labelParser) skipSpace() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *labelParser) errorf(format string, args ...any) error {
	return fmt.Errorf("at offset %d: %s", p.i, fmt.Sprintf(format, args...))
}

func (p *labelParser) parse() ([]LabelPair, error) {
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != '{' {
		return nil, p.errorf("expected '{'")
	}
	p.i++
	var ls []LabelPair
	for {
		p.skipSpace()
		if p.i >= len(p.s) {
			return nil, p.errorf("unexpected end of input")
		}
		if p.s[p.i] == '}' {
			p.i++
			break
		}
		name, err := p.name()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.i >= len(p.s) || p.s[p.i] != '=' {
			return nil, p.errorf("expected '=' after label name %q", name)
		}
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '~' || p.s[p.i] == '=') {
			return nil, p.errorf("only '=' is allowed in a label set")
		}
		p.skipSpace()
		value, err := p.value()
		if err != nil {
			return nil, err
		}
		if value != "" {
			ls = append(ls, LabelPair{Name: name, Value: value})
		}
		p.skipSpace()
		if p.i >= len(p.s) {
			return nil, p.errorf("unexpected end of input")
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return nil, p.errorf("unexpected text after '}'")
	}
	slices.SortStableFunc(ls, func(a, b LabelPair) int { return strings.Compare(a.Name, b.Name) })
	return ls, nil
}

func (p *labelParser) name() (string, error) {
	start := p.i
	for p.i < len(p.s) && isNameByte(p.s[p.i], p.i == start) {
		p.i++
	}
	if p.i == start {
		return "", p.errorf("expected a label name")
	}
	return p.s[start:p.i], nil
}

func (p *labelParser) value() (string, error) {
	if p.i >= len(p.s) {
		return "", p.errorf("expected a quoted label value")
	}
	q := p.s[p.i]
	switch q {
	case '`':
		end := strings.IndexByte(p.s[p.i+1:], '`')
		if end < 0 {
			return "", p.errorf("unterminated raw string")
		}
		v := p.s[p.i+1 : p.i+1+end]
		if !utf8.ValidString(v) {
			return "", p.errorf("invalid UTF-8 in label value")
		}
		p.i += end + 2
		return v, nil
	case '"', '\'':
	default:
		return "", p.errorf("expected a quoted label value")
	}
	p.i++
	var b strings.Builder
	for {
		if p.i >= len(p.s) {
			return "", p.errorf("unterminated quoted string")
		}
		c := p.s[p.i]
		switch {
		case c == q:
			p.i++
			v := b.String()
			if !utf8.ValidString(v) {
				return "", p.errorf("invalid UTF-8 in label value")
			}
			return v, nil
		case c == '\n':
			return "", p.errorf("unterminated quoted string")
		case c == '\\':
			r, multibyte, tail, err := strconv.UnquoteChar(p.s[p.i:], q)
			if err != nil {
				return "", p.errorf("invalid escape sequence")
			}
			if r < utf8.RuneSelf || !multibyte {
				b.WriteByte(byte(r))
			} else {
				b.WriteRune(r)
			}
			p.i = len(p.s) - len(tail)
		case c < utf8.RuneSelf:
			b.WriteByte(c)
			p.i++
		default:
			r, size := utf8.DecodeRuneInString(p.s[p.i:])
			if r == utf8.RuneError && size == 1 {
				return "", p.errorf("invalid UTF-8 in label value")
			}
			b.WriteString(p.s[p.i : p.i+size])
			p.i += size
		}
	}
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

// ValidLabelName reports whether name matches `[a-zA-Z_][a-zA-Z0-9_]*`.
// Names starting with "__" are valid here; Loki reserves them, and callers
// that validate as Loki does reject them separately.
func ValidLabelName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i], i == 0) {
			return false
		}
	}
	return true
}

// FormatLabels returns ls in Loki's canonical form, `{a="b", c="d"}`, in the
// order given, values quoted with strconv.Quote.
func FormatLabels(ls []LabelPair) string {
	n := 2
	for _, l := range ls {
		n += len(l.Name) + len(l.Value) + 5
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	for i, l := range ls {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, l.Name...)
		b = append(b, '=')
		b = strconv.AppendQuote(b, l.Value)
	}
	b = append(b, '}')
	return string(b)
}

// ErrMetadataName is returned by [NormalizeMetadataName] for a name that
// normalises to nothing usable (empty, or only underscores).
var ErrMetadataName = errors.New("invalid structured metadata name")

// NormalizeMetadataName normalises a structured metadata name as Loki's
// distributor does (Prometheus' otlptranslator LabelNamer, default settings):
// every run of characters outside [a-zA-Z0-9] (underscores included) becomes
// one '_', so "http-method", "http.method" and "http__method" all become
// "http_method"; a name wrapped in "__" keeps that wrapping; a name starting
// with a digit gets the prefix "key_". An empty name, or one that normalises
// to underscores only, is an error ([ErrMetadataName]); Loki then fails the
// whole push.
func NormalizeMetadataName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: empty name", ErrMetadataName)
	}
	inner, reserved := name, false
	if len(name) >= 4 && strings.HasPrefix(name, "__") && strings.HasSuffix(name, "__") {
		inner, reserved = name[2:len(name)-2], true
	}
	b := make([]byte, 0, len(name)+4)
	if reserved {
		b = append(b, "__"...)
	}
	prevUnderscore := false
	for _, r := range inner {
		if r < utf8.RuneSelf && r != '_' && isNameByte(byte(r), false) {
			b = append(b, byte(r))
			prevUnderscore = false
		} else if !prevUnderscore {
			b = append(b, '_')
			prevUnderscore = true
		}
	}
	if reserved {
		b = append(b, "__"...)
	}
	out := string(b)
	if out != "" && out[0] >= '0' && out[0] <= '9' {
		out = "key_" + out
	}
	if strings.Trim(out, "_") == "" {
		return "", fmt.Errorf("%w: %q normalises to %q", ErrMetadataName, name, out)
	}
	return out, nil
}

// quoteCut quotes s for an error message, cut to 120 bytes.
func quoteCut(s string) string {
	if len(s) > 120 {
		return strconv.Quote(s[:120]) + "..."
	}
	return strconv.Quote(s)
}
