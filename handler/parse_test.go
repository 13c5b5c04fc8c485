package handler

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// parseLogfmt parses one logfmt line as Loki's `| logfmt` reads it: pairs
// key=value separated by spaces, keys and values bare or double-quoted with
// JSON escapes. It returns the pairs in order.
func parseLogfmt(line string) ([][2]string, error) {
	var out [][2]string
	s := line
	readTok := func(stop string) (string, error) {
		if strings.HasPrefix(s, `"`) {
			i := 1
			for ; i < len(s); i++ {
				if s[i] == '\\' {
					i++
					continue
				}
				if s[i] == '"' {
					break
				}
			}
			if i >= len(s) {
				return "", fmt.Errorf("unterminated quote in %q", line)
			}
			var v string
			if err := json.Unmarshal([]byte(s[:i+1]), &v); err != nil {
				return "", fmt.Errorf("bad quoted %q: %v", s[:i+1], err)
			}
			s = s[i+1:]
			return v, nil
		}
		i := strings.IndexAny(s, stop)
		if i < 0 {
			i = len(s)
		}
		tok := s[:i]
		s = s[i:]
		if strings.ContainsAny(tok, "\"") {
			return "", fmt.Errorf("bare token with quote %q", tok)
		}
		return tok, nil
	}
	for len(s) > 0 {
		k, err := readTok("= ")
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(s, "=") {
			return nil, fmt.Errorf("no '=' after key %q in %q", k, line)
		}
		s = s[1:]
		v, err := readTok(" ")
		if err != nil {
			return nil, err
		}
		out = append(out, [2]string{k, v})
		if len(s) > 0 {
			if s[0] != ' ' {
				return nil, fmt.Errorf("want space at %q", s)
			}
			s = s[1:]
		}
	}
	return out, nil
}

// logfmtMap parses line into a flat map of dotted keys.
func logfmtMap(t testing.TB, line string) map[string]string {
	t.Helper()
	kvs, err := parseLogfmt(line)
	if err != nil {
		t.Fatalf("parse logfmt: %v", err)
	}
	m := make(map[string]string)
	for _, kv := range kvs {
		m[kv[0]] = kv[1]
	}
	return m
}

// nestLogfmt parses line into nested maps, splitting keys on '.', as
// slogtest expects groups.
func nestLogfmt(line string) (map[string]any, error) {
	kvs, err := parseLogfmt(line)
	if err != nil {
		return nil, err
	}
	top := map[string]any{}
	for _, kv := range kvs {
		m := top
		parts := strings.Split(kv[0], ".")
		for _, g := range parts[:len(parts)-1] {
			sub, ok := m[g].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[g] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = kv[1]
	}
	return top, nil
}

func TestParseLogfmt(t *testing.T) {
	got, err := parseLogfmt(`a=1 b="x y" "c d"="q\"\\\n" e=`)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"a", "1"}, {"b", "x y"}, {"c d", "q\"\\\n"}, {"e", ""}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, bad := range []string{`a`, `a="x`, `a=x"y`, `a=1  b=2`} {
		if _, err := parseLogfmt(bad); err == nil {
			t.Errorf("parseLogfmt(%q): no error", bad)
		}
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
