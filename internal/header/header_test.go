package header

import "testing"

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Scope-OrgID": true, "x_custom!#$%&'*+-.^`|~": true,
		"": false, "a b": false, "a:b": false, "a\nb": false, "é": false, "a\x7f": false, `a"b`: false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestValidValue(t *testing.T) {
	for v, want := range map[string]bool{
		"": true, "Bearer abc": true, "a\tb": true, "é": true,
		"a\r\nX-Evil: 1": false, "a\nb": false, "a\x00b": false, "a\x7f": false,
	} {
		if got := ValidValue(v); got != want {
			t.Errorf("ValidValue(%q) = %v, want %v", v, got, want)
		}
	}
}
