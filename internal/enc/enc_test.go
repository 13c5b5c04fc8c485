package enc

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAppendJSONString(t *testing.T) {
	tests := map[string]string{
		"":           `""`,
		"plain":      `"plain"`,
		`q"b\`:       `"q\"b\\"`,
		"\n\r\t\x01": `"\n\r\t\u0001"`,
		"<>&":        `"<>&"`,
		"\u2028":     `"\u2028"`,
		"\xffa":      `"\ufffda"`,
		"héllo":      `"héllo"`,
	}
	for in, want := range tests {
		if got := string(AppendJSONString(nil, in)); got != want {
			t.Errorf("AppendJSONString(%q) = %s, want %s", in, got, want)
		}
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a b", "\x00\xff", "\u2028", `"\`, "日本", "request handled", "01234567\"abcdefgh", "0123456789abcdef\\", "abcdefg\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString([]byte("x"), s)
		if b[0] != 'x' {
			t.Fatal("prefix overwritten")
		}
		if ref := appendEscaped([]byte(`x"`), s, false); string(b[:len(b)-1]) != string(ref) {
			t.Fatalf("AppendJSONString(%q) = %s, byte-by-byte escaping gives %s\"", s, b[1:], ref[1:])
		}
		var got string
		if err := json.Unmarshal(b[1:], &got); err != nil {
			t.Fatalf("invalid JSON %s: %v", b[1:], err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); got != want && utf8.ValidString(s) {
			t.Fatalf("round trip %q -> %q", s, got)
		}
		if !utf8.Valid(b) {
			t.Fatalf("output not UTF-8: %q", b)
		}
		// strconv.Unquote (Go escapes) reads it back the same way.
		if u, err := strconv.Unquote(string(b[1:])); err != nil || u != got {
			t.Fatalf("strconv.Unquote(%s) = %q, %v; want %q", b[1:], u, err, got)
		}
	})
}

func TestNeedsQuoting(t *testing.T) {
	for s, want := range map[string]bool{
		"": true, "a": false, "a b": true, "a=b": true, `a"b`: true, `a\b`: false, "é": false,
		"\u00a0": true, "\t": true, "\xff": true, "日本": false, "a\x7f": false, // DEL is printable enough for slog too
	} {
		if got := NeedsQuoting(s); got != want {
			t.Errorf("NeedsQuoting(%q) = %v", s, got)
		}
	}
}

func FuzzLogfmtString(f *testing.F) {
	for _, s := range []string{"", "a b", "a=b", "\xff", `q"`, `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := string(AppendLogfmtString(nil, s))
		if strings.ContainsAny(b, " =") && b[0] != '"' {
			t.Fatalf("unquoted output with space or '=': %q", b)
		}
		got := b
		if b != "" && b[0] == '"' {
			if err := json.Unmarshal([]byte(b), &got); err != nil {
				t.Fatalf("bad quoted %s: %v", b, err)
			}
		}
		if got != strings.ToValidUTF8(s, "\uFFFD") && utf8.ValidString(s) {
			t.Fatalf("%q came back as %q", s, got)
		}
		// The one-pass copy equals the definition (NeedsQuoting, then a
		// bare copy or a quoted string), after existing bytes, with and
		// without spare capacity.
		want := "k="
		if NeedsQuoting(s) {
			want = string(AppendJSONString([]byte(want), s))
		} else {
			want += s
		}
		for _, spare := range []int{0, 3, len(s) + 8} {
			dst := append(make([]byte, 0, 2+spare), "k="...)
			if got := string(AppendLogfmtString(dst, s)); got != want {
				t.Fatalf("AppendLogfmtString(%q) with %d spare bytes = %q, want %q", s, spare, got, want)
			}
		}
	})
}

func TestAppendLogfmtKey(t *testing.T) {
	for _, tc := range []struct{ prefix, key, want string }{
		{"", "a", "a"}, {"g.", "a", "g.a"}, {"g.", "a b", `"g.a b"`}, {"g h.", "a", `"g h.a"`}, {"", "", `""`},
	} {
		if got := string(AppendLogfmtKey(nil, []byte(tc.prefix), tc.key)); got != tc.want {
			t.Errorf("AppendLogfmtKey(%q, %q) = %s, want %s", tc.prefix, tc.key, got, tc.want)
		}
	}
}

func FuzzAppendJSONFloat(f *testing.F) {
	for _, v := range []float64{0, -0.0, 1, 1.5, 1e-7, 1e-6, 1e20, 1e21, 123456789.123, -3e-300, math.MaxFloat64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendJSONFloat(nil, v); string(got) != string(want) {
			t.Fatalf("AppendJSONFloat(%v) = %s, want %s", v, got, want)
		}
	})
}

func TestAppendRFC3339Millis(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2024, 1, 2, 3, 4, 5, 999999999, time.FixedZone("x", 3600)),
		time.Date(1999, 12, 31, 23, 59, 59, 1000000, time.UTC),
	} {
		want := tm.Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z07:00")
		if got := string(AppendRFC3339Millis([]byte("p"), tm)); got != "p"+want {
			t.Errorf("got %s, want p%s", got, want)
		}
	}
}

func TestAppendDuration(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 1500 * time.Microsecond, -time.Hour, math.MaxInt64, math.MinInt64} {
		if got := string(AppendDuration(nil, d)); got != d.String() {
			t.Errorf("got %s, want %s", got, d)
		}
	}
	n := testing.AllocsPerRun(100, func() {
		var buf [64]byte
		_ = AppendDuration(buf[:0], 1234567*time.Nanosecond)
	})
	if n != 0 {
		t.Errorf("AppendDuration allocates %.0f times", n)
	}
}

func FuzzTruncateUTF8(f *testing.F) {
	f.Add("héllo wörld 日本語", 5)
	f.Add("\xff\xfe", 1)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > len(s)+4 {
			return
		}
		got := TruncateUTF8([]byte(s), max)
		if len(got) > max || !strings.HasPrefix(s, string(got)) {
			t.Fatalf("TruncateUTF8(%q, %d) = %q", s, max, got)
		}
		if utf8.ValidString(s) && (!utf8.Valid(got) || len(s) > max && max-len(got) >= utf8.UTFMax) {
			t.Fatalf("TruncateUTF8(%q, %d) = %q: invalid or too short", s, max, got)
		}
	})
}

// needsQuotingRef is NeedsQuoting byte by byte, the definition the
// word-at-a-time version must match.
func needsQuotingRef(s string) bool { return len(s) == 0 || needsQuotingFrom(s, 0) }

func TestNeedsQuotingWords(t *testing.T) {
	// Every byte value at every position of strings of 1 to 20 bytes.
	base := "abcdefghijklmnopqrst"
	for n := 1; n <= len(base); n++ {
		for pos := range n {
			for c := range 256 {
				s := base[:pos] + string([]byte{byte(c)}) + base[pos+1:n]
				if got, want := NeedsQuoting(s), needsQuotingRef(s); got != want {
					t.Fatalf("NeedsQuoting(%q) = %v, want %v", s, got, want)
				}
			}
		}
	}
}

func FuzzNeedsQuoting(f *testing.F) {
	for _, s := range []string{"", "0123456789abcdef", "01234567=9abcdef", "0123456789abcdé", "request_id_01J9Z3YVQ8K4T6M2",
		"a", "a=", " a", "ab\"", "GET", "é", "pa th", "status", "status\x00", "méthode", "0123456789abcde ", "\x7f\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := NeedsQuoting(s), needsQuotingRef(s); got != want {
			t.Fatalf("NeedsQuoting(%q) = %v, want %v", s, got, want)
		}
	})
}

// BenchmarkNeedsQuoting compares NeedsQuoting with the byte-by-byte
// definition on the workload's values.
func BenchmarkNeedsQuoting(b *testing.B) {
	vals := []string{"request handled", "GET", "/api/v1/users/42", "01J9Z3YVQ8K4T6M2N5P7R9S1U3", "1.234567ms", "checkout", "user_id", "request_id"}
	for _, f := range []struct {
		name string
		fn   func(string) bool
	}{{"words", NeedsQuoting}, {"bytes", needsQuotingRef}} {
		b.Run(f.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				for _, v := range vals {
					if f.fn(v) {
						n++
					}
				}
			}
			if n != b.N {
				b.Fatalf("%d of %d quoted, want 1 per round", n, b.N)
			}
		})
	}
}

// BenchmarkAppendJSONString escapes the workload's message and a longer
// value with a quote.
func BenchmarkAppendJSONString(b *testing.B) {
	vals := []string{"request handled", `upstream "payments" answered 503 after 1.2s, retrying`}
	buf := make([]byte, 0, 256)
	for b.Loop() {
		for _, v := range vals {
			buf = AppendJSONString(buf[:0], v)
		}
	}
}

// TestBareWord compares the branch-free word test with the byte table:
// every byte value at every position of a bare word, then random words
// (mostly bare ASCII, the case where borrows between bytes matter).
func TestBareWord(t *testing.T) {
	ref := func(x uint64) bool {
		for i := range 8 {
			b := byte(x >> (8 * i))
			if b >= utf8.RuneSelf || !bare[b] {
				return false
			}
		}
		return true
	}
	check := func(x uint64) {
		if got, want := bareWord(x), ref(x); got != want {
			t.Fatalf("bareWord(%#016x) = %v, want %v", x, got, want)
		}
	}
	for pos := range 8 {
		for b := range 256 {
			check(lo8*'a'&^(0xff<<(8*pos)) | uint64(b)<<(8*pos))
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1 << 20 {
		var x uint64
		for i := range 8 {
			b := uint64(0x21 + r.IntN(0x5f)) // bare-ish ASCII
			if r.IntN(16) == 0 {
				b = uint64(r.IntN(256)) // any byte
			}
			x |= b << (8 * i)
		}
		check(x)
	}
}
