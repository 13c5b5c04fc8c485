// Package enc holds the append-style encoders the handler uses to build log
// lines: logfmt keys and values, JSON strings and numbers, times and
// durations. Every function appends to dst and returns the extended slice;
// none allocates unless dst has to grow.
//
// Strings are escaped with JSON's rules (without HTML escaping) in both
// formats, because that is the escape set that Loki's `| logfmt` and `| json`
// parsers, Go's strconv.Unquote and encoding/json all read back the same way.
// Invalid UTF-8 becomes U+FFFD.
package enc

import (
	"encoding/binary"
	"math"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"
)

const hexDigits = "0123456789abcdef"

// safe[b] is true for the ASCII bytes that can appear in a JSON string
// without escaping.
var safe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// bare[b] is true for the ASCII bytes that may appear in an unquoted logfmt
// key or value: printable, not space, '=' or '"' (a backslash may).
var bare = func() (t [utf8.RuneSelf]bool) {
	for b := 0x21; b < utf8.RuneSelf; b++ {
		t[b] = b != '=' && b != '"'
	}
	return t
}()

// NeedsQuoting reports whether s has to be quoted to be a single logfmt key
// or value: it is empty, or holds a space, '=', '"', a control character, a
// non-printable or space rune, or invalid UTF-8. A backslash alone does not
// need quoting.
func NeedsQuoting(s string) bool {
	n := len(s)
	p := unsafe.StringData(s)
	var x uint64
	switch {
	case n >= 8:
		// Eight bytes at a time, the last word overlapping the one before;
		// at the first word with a byte that is not bare ASCII, look byte
		// by byte (non-ASCII runes may be printable).
		i := 0
		for ; i+8 <= n; i += 8 {
			if !bareWord(load64(p, i)) {
				return needsQuotingFrom(s, i)
			}
		}
		if i == n || bareWord(load64(p, n-8)) {
			return false
		}
		return needsQuotingFrom(s, n-8)
	case n >= 4: // two overlapping four-byte loads cover every byte
		x = uint64(load32(p, 0)) | uint64(load32(p, n-4))<<32
	case n > 0: // s[0], s[n/2] and s[n-1] are every byte; pad with 'a'
		x = lo8*'a'&^0xffffff | uint64(s[0]) | uint64(s[n/2])<<8 | uint64(s[n-1])<<16
	default:
		return true
	}
	return !bareWord(x) && needsQuotingFrom(s, 0)
}

// safeWord reports whether the eight bytes of x are all ASCII that a JSON
// string holds as they are (safe).
func safeWord(x uint64) bool {
	return x&hi8 == 0 && !hasLess(x, 0x20) && !hasZero(x^(lo8*'"')) && !hasZero(x^(lo8*'\\'))
}

// bareWord reports whether the eight bytes of x are all bare ASCII. It is
// the conjunction of "x is ASCII" and hasLess/hasZero tests that are exact
// on ASCII words, computed without branches: any high bit set in the
// combined word answers false.
func bareWord(x uint64) bool {
	eq, qt := x^(lo8*'='), x^(lo8*'"')
	return (x|(x-lo8*0x21)&^x|(eq-lo8)&^eq|(qt-lo8)&^qt)&hi8 == 0
}

func load64(p *byte, i int) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(unsafe.Add(unsafe.Pointer(p), i))[:])
}

func store64(p *byte, i int, x uint64) {
	binary.LittleEndian.PutUint64((*[8]byte)(unsafe.Add(unsafe.Pointer(p), i))[:], x)
}

func store32(p *byte, i int, x uint32) {
	binary.LittleEndian.PutUint32((*[4]byte)(unsafe.Add(unsafe.Pointer(p), i))[:], x)
}

func load32(p *byte, i int) uint32 {
	return binary.LittleEndian.Uint32((*[4]byte)(unsafe.Add(unsafe.Pointer(p), i))[:])
}

// needsQuotingFrom is NeedsQuoting's byte-by-byte check of s[i:].
func needsQuotingFrom(s string, i int) bool {
	for i < len(s) {
		b := s[i]
		if b < utf8.RuneSelf {
			if !bare[b] {
				return true
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
		i += size
	}
	return false
}

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// hasLess reports whether a word of ASCII bytes (high bits clear) has a
// byte below n (n ≤ 128).
func hasLess(x, n uint64) bool { return (x-lo8*n)&^x&hi8 != 0 }

// hasZero reports whether a word of ASCII bytes has a zero byte.
func hasZero(x uint64) bool { return hasLess(x, 1) }

// AppendEscaped appends s escaped for the inside of a JSON string (no
// surrounding quotes). Control characters become \n, \r, \t or \u00XX,
// invalid UTF-8 becomes \ufffd, U+2028 and U+2029 are escaped, '<', '>'
// and '&' are not.
func AppendEscaped(dst []byte, s string) []byte { return appendEscaped(dst, s, true) }

// appendEscaped is AppendEscaped; without words it looks at one byte at a
// time (the definition the fuzz target compares the faster path with).
func appendEscaped(dst []byte, s string, words bool) []byte {
	start := 0
	for i := 0; i < len(s); {
		// Eight safe ASCII bytes at a time.
		for words && i+8 <= len(s) && safeWord(load64(unsafe.StringData(s), i)) {
			i += 8
		}
		if i == len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			if safe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// AppendJSONString appends s as a quoted JSON string.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = AppendEscaped(dst, s)
	return append(dst, '"')
}

// AppendLogfmtString appends s as a logfmt key or value: bare when
// [NeedsQuoting] is false, otherwise quoted with JSON escapes.
func AppendLogfmtString(dst []byte, s string) []byte {
	out, r := appendBareASCII(dst, s)
	switch {
	case r == bareCopied:
		return out
	case r == bareUnknown && !NeedsQuoting(s):
		return append(dst, s...)
	}
	return AppendJSONString(dst, s)
}

// Results of appendBareASCII.
const (
	bareCopied  = iota // s was bare ASCII and is appended
	bareQuote          // s holds an ASCII byte that needs quoting (or is empty)
	bareUnknown        // s holds non-ASCII bytes: NeedsQuoting decides
)

// appendBareASCII appends s when every byte of s is bare ASCII (the common
// case of NeedsQuoting being false), checking and copying in one pass,
// eight bytes at a time. Otherwise dst's length is unchanged (bytes past it
// may have been written) and the result says why. Strings under four bytes,
// and dst without room for s, are left to the two-pass path (bareUnknown).
func appendBareASCII(dst []byte, s string) ([]byte, int) {
	n := len(s)
	if n < 4 || cap(dst)-len(dst) < n {
		return dst, bareUnknown
	}
	p, d := unsafe.StringData(s), unsafe.SliceData(dst[len(dst):len(dst)+n])
	if n < 8 { // two overlapping four-byte words cover every byte
		x, y := load32(p, 0), load32(p, n-4)
		if w := uint64(x) | uint64(y)<<32; !bareWord(w) {
			return dst, notBare(w)
		}
		store32(d, 0, x)
		store32(d, n-4, y)
		return dst[:len(dst)+n], bareCopied
	}
	for i := 0; ; i += 8 {
		i = min(i, n-8) // the last word overlaps the one before
		x := load64(p, i)
		if !bareWord(x) {
			return dst, notBare(x)
		}
		store64(d, i, x)
		if i == n-8 {
			return dst[:len(dst)+n], bareCopied
		}
	}
}

// notBare says what a word that is not bareWord means: with only ASCII
// bytes, one of them needs quoting; otherwise a non-ASCII rune may be
// printable, and NeedsQuoting has to look.
func notBare(x uint64) int {
	if x&hi8 == 0 {
		return bareQuote
	}
	return bareUnknown
}

// AppendLogfmtKey appends the logfmt key prefix+key (prefix is the dotted
// path of the open groups, ending in '.', or empty), quoted when needed.
func AppendLogfmtKey(dst []byte, prefix []byte, key string) []byte {
	if len(prefix) == 0 {
		return AppendLogfmtString(dst, key)
	}
	if !NeedsQuoting(string(prefix)) && !NeedsQuoting(key) {
		dst = append(dst, prefix...)
		return append(dst, key...)
	}
	dst = append(dst, '"')
	dst = AppendEscaped(dst, string(prefix))
	dst = AppendEscaped(dst, key)
	return append(dst, '"')
}

// AppendJSONFloat appends f the way encoding/json writes a float64: like
// strconv 'f' format, switching to 'e' for very small and very large
// magnitudes, with exponents not padded. f must be finite; NaN and
// infinities have no JSON form and the caller must handle them.
func AppendJSONFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	n0 := len(dst)
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-09 -> e-9
		n := len(dst)
		if n-n0 >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// AppendRFC3339Millis appends t in RFC 3339 with exactly three fractional
// digits (2006-01-02T15:04:05.000Z07:00), as slog's TextHandler writes times.
func AppendRFC3339Millis(dst []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(dst)
	// RFC3339Nano trims trailing zeros; adding a tenth of a millisecond
	// after truncating guarantees four fraction digits, of which the last
	// is dropped.
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	if len(dst) < n+prefixLen+1 {
		return dst // years outside 0..9999; leave as formatted
	}
	return append(dst[:n+prefixLen], dst[n+prefixLen+1:]...)
}

// AppendDuration appends d as time.Duration.String does.
func AppendDuration(dst []byte, d time.Duration) []byte {
	return append(dst, d.String()...)
}

// TruncateUTF8 returns the longest prefix of s that is at most max bytes
// long and does not end inside a UTF-8 sequence.
func TruncateUTF8(s []byte, max int) []byte {
	if len(s) <= max {
		return s
	}
	if max <= 0 {
		return s[:0]
	}
	// Step back over continuation bytes to the start of the rune that
	// straddles the cut, then keep it only when it fits whole.
	i := max
	for i > 0 && i > max-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
