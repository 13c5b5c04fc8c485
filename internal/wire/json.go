package wire

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/lokislog/lokislog/internal/enc"
)

// LabelsError reports a stream whose label set is not in Loki's form. The
// JSON push format carries labels as an object, so the encoder must parse
// them; the protobuf format passes them through for Loki to judge.
type LabelsError struct {
	// Stream is the index of the stream in the encoded slice.
	Stream int
	// Err describes what is wrong and where.
	Err error
}

func (e *LabelsError) Error() string {
	return fmt.Sprintf("stream %d: %v", e.Stream, e.Err)
}

func (e *LabelsError) Unwrap() error { return e.Err }

// AppendJSON appends streams encoded as Loki's JSON push body to dst:
//
//	{"streams":[{"stream":{"app":"api"},"values":[["1700000000000000000","line",{"trace_id":"abc"}]]}]}
//
// The timestamp is a string of nanoseconds since the Unix epoch; the third
// element of a value is present only when the entry has metadata. Strings
// are escaped so the output is valid JSON and valid UTF-8: invalid bytes in
// lines and metadata become U+FFFD.
//
// Each stream's label set is parsed as [ParseLabels] does. When one is
// malformed, AppendJSON returns dst with its original length and a
// *[LabelsError] naming the stream.
func AppendJSON[S Stream[E, P], E Entry[P], P Pair](dst []byte, streams []S) ([]byte, error) {
	start := len(dst)
	dst = append(dst, `{"streams":[`...)
	for i := range streams {
		s := stream[E, P](streams[i])
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"stream":`...)
		var err error
		if dst, err = appendLabelsJSON(dst, s.Labels); err != nil {
			return dst[:start], &LabelsError{Stream: i, Err: err}
		}
		dst = append(dst, `,"values":[`...)
		for j := range s.Entries {
			e := entry[P](s.Entries[j])
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `["`...)
			dst = strconv.AppendInt(dst, e.Timestamp, 10)
			dst = append(dst, `",`...)
			dst = enc.AppendJSONString(dst, e.Line)
			if len(e.Metadata) > 0 {
				dst = append(dst, ",{"...)
				for k := range e.Metadata {
					m := pair(e.Metadata[k])
					if k > 0 {
						dst = append(dst, ',')
					}
					dst = enc.AppendJSONString(dst, m.Name)
					dst = append(dst, ':')
					dst = enc.AppendJSONString(dst, m.Value)
				}
				dst = append(dst, '}')
			}
			dst = append(dst, ']')
		}
		dst = append(dst, "]}"...)
	}
	return append(dst, "]}"...), nil
}

// appendLabelsJSON appends the label set s as a JSON object.
func appendLabelsJSON(dst []byte, s string) ([]byte, error) {
	start := len(dst)
	dst = append(dst, '{')
	sc := labelScanner{s: s}
	for n := 0; sc.next(); n++ {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = enc.AppendJSONString(dst, sc.name)
		dst = append(dst, ':')
		if sc.escaped {
			var tmp [64]byte
			dst = enc.AppendJSONString(dst, string(appendUnquoted(tmp[:0], sc.value)))
		} else {
			dst = enc.AppendJSONString(dst, sc.value)
		}
	}
	if sc.err != nil {
		return dst[:start], sc.err
	}
	return append(dst, '}'), nil
}

// ParseLabels calls fn with each name and (unescaped) value of s, a label
// set in Loki's form: {app="api", env="prod"}.
//
// The form is strict: braces around the set; names matching
// [a-zA-Z_][a-zA-Z0-9_]*, each at most once; "=" with no space around it;
// values in double quotes with Go's escapes (\" \\ \n \t \xNN \u00e9 ...,
// as strconv.Quote writes them) and no raw newline; pairs separated by a
// comma and optional spaces; optional spaces after "{" and before "}"; nothing
// after "}". "{}" is an empty set. Raw bytes that are not valid UTF-8 are
// kept as they are.
//
// On a malformed set, fn may already have been called for the pairs before
// the fault; the error says what is wrong and at which byte offset.
func ParseLabels(s string, fn func(name, value string)) error {
	sc := labelScanner{s: s}
	for sc.next() {
		if sc.escaped {
			fn(sc.name, string(appendUnquoted(nil, sc.value)))
		} else {
			fn(sc.name, sc.value)
		}
	}
	return sc.err
}

// maxLabels is how many names labelScanner checks for duplicates without
// allocating; Loki accepts 15 labels per stream by default.
const maxLabels = 32

// labelScanner reads a label set pair by pair without allocating (up to
// maxLabels names).
type labelScanner struct {
	s   string
	i   int
	err error

	name    string
	value   string // between the quotes, still escaped when escaped is true
	escaped bool

	n     int
	names [maxLabels]string
	more  []string // names beyond maxLabels
}

func (sc *labelScanner) fail(msg string) bool {
	sc.err = fmt.Errorf("labels: %s at offset %d", msg, sc.i)
	return false
}

func (sc *labelScanner) spaces() {
	for sc.i < len(sc.s) && sc.s[sc.i] == ' ' {
		sc.i++
	}
}

// next scans the next pair into name and value. It returns false at the end
// of the set or on an error, which is then in err.
func (sc *labelScanner) next() bool {
	s := sc.s
	if sc.err != nil {
		return false
	}
	if sc.i == 0 {
		if s == "" || s[0] != '{' {
			return sc.fail(`expected "{"`)
		}
		sc.i = 1
		sc.spaces()
		if sc.i < len(s) && s[sc.i] == '}' {
			sc.i++
			return sc.end()
		}
	} else {
		sc.spaces()
		switch {
		case sc.i >= len(s):
			return sc.fail(`expected "," or "}"`)
		case s[sc.i] == '}':
			sc.i++
			return sc.end()
		case s[sc.i] != ',':
			return sc.fail(`expected "," or "}"`)
		}
		sc.i++
		sc.spaces()
	}

	// name
	start := sc.i
	for sc.i < len(s) && isNameByte(s[sc.i], sc.i == start) {
		sc.i++
	}
	if sc.i == start {
		return sc.fail("expected a label name")
	}
	name := s[start:sc.i]
	if sc.seen(name) {
		sc.i = start
		return sc.fail("duplicate label name " + strconv.Quote(name))
	}
	if sc.i >= len(s) || s[sc.i] != '=' {
		return sc.fail(`expected "="`)
	}
	sc.i++
	if sc.i >= len(s) || s[sc.i] != '"' {
		return sc.fail("expected a quoted value")
	}
	sc.i++

	// value
	start = sc.i
	escaped := false
	for {
		if sc.i >= len(s) {
			return sc.fail("unterminated value")
		}
		c := s[sc.i]
		if c == '"' {
			break
		}
		switch c {
		case '\n':
			return sc.fail("newline in value")
		case '\\':
			_, _, tail, err := strconv.UnquoteChar(s[sc.i:], '"')
			if err != nil {
				return sc.fail("invalid escape")
			}
			escaped = true
			sc.i = len(s) - len(tail)
		default:
			sc.i++
		}
	}
	sc.name, sc.value, sc.escaped = name, s[start:sc.i], escaped
	sc.i++ // closing quote
	return true
}

// end checks that nothing follows the closing brace.
func (sc *labelScanner) end() bool {
	if sc.i != len(sc.s) {
		sc.fail(`unexpected text after "}"`)
	}
	return false
}

// seen records name and reports whether it was seen before.
func (sc *labelScanner) seen(name string) bool {
	for _, n := range sc.names[:min(sc.n, maxLabels)] {
		if n == name {
			return true
		}
	}
	for _, n := range sc.more {
		if n == name {
			return true
		}
	}
	if sc.n < maxLabels {
		sc.names[sc.n] = name
	} else {
		sc.more = append(sc.more, name)
	}
	sc.n++
	return false
}

func isNameByte(c byte, first bool) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

// appendUnquoted appends the text between the quotes of a valid Go string
// literal, with its escapes resolved, to dst.
func appendUnquoted(dst []byte, s string) []byte {
	for len(s) > 0 {
		if s[0] != '\\' {
			dst = append(dst, s[0])
			s = s[1:]
			continue
		}
		r, multibyte, tail, err := strconv.UnquoteChar(s, '"')
		if err != nil { // not reached: the scanner checked every escape
			return append(dst, s...)
		}
		if multibyte || r < utf8.RuneSelf {
			dst = utf8.AppendRune(dst, r)
		} else {
			dst = append(dst, byte(r)) // \xNN or octal: a raw byte
		}
		s = tail
	}
	return dst
}
