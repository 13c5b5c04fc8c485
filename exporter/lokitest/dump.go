package lokitest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Dump returns the accepted streams as text, one stream header and then one
// line per entry (timestamp, line, metadata), for test failure messages and
// demos:
//
//	tenant "team-a" {app="api", env="prod"}: 2 entries
//	  2025-06-01T12:00:00.123456789Z level=INFO msg="started" {trace_id="4bf9..."}
//
// Lines with control characters or invalid UTF-8 are quoted.
func (s *Server) Dump() string {
	var b strings.Builder
	for _, st := range s.Streams() {
		fmt.Fprintf(&b, "tenant %q %s: %d entries\n", st.Tenant, st.LabelString, len(st.Entries))
		for _, e := range st.Entries {
			b.WriteString("  ")
			b.WriteString(e.Timestamp.Format(time.RFC3339Nano))
			b.WriteByte(' ')
			b.WriteString(printable(e.Line))
			if len(e.Metadata) > 0 {
				names := slices.Sorted(func(yield func(string) bool) {
					for k := range e.Metadata {
						if !yield(k) {
							return
						}
					}
				})
				b.WriteString(" {")
				for i, k := range names {
					if i > 0 {
						b.WriteString(", ")
					}
					b.WriteString(k)
					b.WriteByte('=')
					b.WriteString(strconv.Quote(e.Metadata[k]))
				}
				b.WriteByte('}')
			}
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r == unicode.ReplacementChar || !unicode.IsPrint(r) }) {
		return s
	}
	return strconv.Quote(s)
}
