package workload

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestRequestIDRoundTrip(t *testing.T) {
	for _, seq := range []uint64{0, 1, 42, 999999, 1<<48 - 1} {
		id := RequestID(seq)
		if len(id) != IDLen || !strings.HasPrefix(id, IDPrefix) {
			t.Fatalf("RequestID(%d) = %q", seq, id)
		}
		for _, in := range []string{id, "request_id=" + id + " user_id=42", `{"a":"` + IDPrefix + `zz","request_id":"` + id + `"}`} {
			if got, ok := ParseIDString(in); !ok || got != seq {
				t.Errorf("ParseIDString(%q) = %d, %v; want %d", in, got, ok, seq)
			}
			if got, ok := ParseID([]byte(in)); !ok || got != seq {
				t.Errorf("ParseID(%q) = %d, %v; want %d", in, got, ok, seq)
			}
		}
	}
	for _, in := range []string{"", "request handled", IDPrefix, IDPrefix + "00000000000", IDPrefix + "0000000000G0", IDPrefix + "00000000000A"} {
		if got, ok := ParseIDString(in); ok {
			t.Errorf("ParseIDString(%q) = %d, want no id", in, got)
		}
	}
}

// TestWorkload checks the logger and the record carry the workload's
// attributes, through slog's JSON handler.
func TestWorkload(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(slog.NewJSONHandler(&buf, nil))
	Log(l, RequestID(7))
	r := Record(RequestID(7))
	if err := l.Handler().Handle(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2", len(lines))
	}
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"service", "env", "method", "path", "status", "duration", "request_id", "user_id"} {
			if _, ok := m[k]; !ok {
				t.Errorf("%s: no %q", line, k)
			}
		}
		if m["msg"] != Message || m["request_id"] != RequestID(7) {
			t.Errorf("unexpected line %s", line)
		}
	}
}
