// Package labels holds Loki's rules for stream label names and values and
// writes label sets in Loki's text form.
//
// Loki (like Prometheus) accepts label names matching [a-zA-Z_][a-zA-Z0-9_]*
// and reserves the "__" prefix; names are at most 1024 bytes, values at most
// 2048 bytes, and a stream has at most 15 labels. Structured metadata names
// follow the same naming rule here, so LogQL label filters can address them.
package labels

import (
	"strings"
	"unicode/utf8"
)

// Loki's default per-stream limits.
const (
	// MaxNameLen is the longest label name Loki accepts, in bytes.
	MaxNameLen = 1024
	// MaxValueLen is the longest label value Loki accepts, in bytes.
	MaxValueLen = 2048
	// MaxLabels is the most labels a stream may have.
	MaxLabels = 15
	// MaxMetadataEntries is the most structured metadata pairs per entry.
	MaxMetadataEntries = 128
	// MaxMetadataBytes is the most bytes of structured metadata (names and
	// values) per entry.
	MaxMetadataBytes = 64 << 10
)

func isNameByte(b byte, first bool) bool {
	switch {
	case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b == '_':
		return true
	case b >= '0' && b <= '9':
		return !first
	}
	return false
}

// Valid reports whether name is a label name Loki accepts from a client:
// non-empty, [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__", at most
// [MaxNameLen] bytes.
func Valid(name string) bool {
	if name == "" || len(name) > MaxNameLen || strings.HasPrefix(name, "__") {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i], i == 0) {
			return false
		}
	}
	return true
}

// Sanitize turns any string into a valid label name: every rune outside
// [a-zA-Z0-9_] becomes '_' (so the dotted path "http.method" becomes
// "http_method"), a leading digit gets a '_' in front, a run of leading
// underscores is cut to one (Loki reserves "__"), an empty result becomes
// "_", and the name is cut to [MaxNameLen] bytes. Valid names are returned
// unchanged.
func Sanitize(name string) string {
	if Valid(name) {
		return name
	}
	b := make([]byte, 0, len(name)+1)
	for _, r := range name { // invalid bytes come as RuneError, one each
		c := byte('_')
		if r < utf8.RuneSelf && isNameByte(byte(r), false) {
			c = byte(r)
		}
		b = append(b, c)
	}
	// Cut a run of leading underscores to one.
	i := 0
	for i+1 < len(b) && b[i] == '_' && b[i+1] == '_' {
		i++
	}
	b = b[i:]
	switch {
	case len(b) == 0:
		return "_"
	case b[0] >= '0' && b[0] <= '9':
		b = append([]byte{'_'}, b...)
	}
	if len(b) > MaxNameLen {
		b = b[:MaxNameLen]
	}
	return string(b)
}

// CutValue returns v made valid for a label or metadata value: invalid
// UTF-8 replaced by U+FFFD and the result cut to at most max bytes without
// splitting a rune. It allocates only when v is invalid UTF-8.
func CutValue(v string, max int) string {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	if len(v) <= max {
		return v
	}
	i := max
	for i > 0 && !utf8.RuneStart(v[i]) {
		i--
	}
	return v[:i]
}

// AppendValue appends v escaped for the inside of a quoted label value in
// Loki's label-set syntax: backslash, double quote and control characters
// are escaped. v must be valid UTF-8 (see [CutValue]).
func AppendValue(dst []byte, v string) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			continue
		}
		dst = append(dst, v[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
		start = i + 1
	}
	return append(dst, v[start:]...)
}

// Pair is one label.
type Pair struct {
	Name, Value string
}

// AppendSet appends the label set {a="b", c="d"} for pairs, which must be
// sorted by name with unique names and valid values.
func AppendSet(dst []byte, pairs []Pair) []byte {
	dst = append(dst, '{')
	for i, p := range pairs {
		if i > 0 {
			dst = append(dst, ',', ' ')
		}
		dst = append(dst, p.Name...)
		dst = append(dst, '=', '"')
		dst = AppendValue(dst, p.Value)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// SortPairs sorts a small slice of pairs by name (insertion sort: label
// sets hold at most a few dozen pairs, and it does not allocate).
func SortPairs(p []Pair) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j].Name < p[j-1].Name; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}
