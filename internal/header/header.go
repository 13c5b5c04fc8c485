// Package header holds the rules for HTTP header names and values that
// both the exporter (what it sends) and the handler (what its
// configuration may hold) apply.
package header

import "strings"

// ValidName reports whether name is an HTTP token (RFC 9110): what a
// header name must be.
func ValidName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// ValidValue reports whether v may be sent as a header value: no control
// characters other than tab (a line break would start another header).
func ValidValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
