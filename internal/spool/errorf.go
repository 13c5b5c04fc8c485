package spool

import "fmt"

// errorf is fmt.Errorf, called rather than inlined. Go 1.26 inlines
// fmt.Errorf at each call site (with its errors.New path for a format
// without arguments); with the hundred error sites of this package, none hot,
// that was 4 KB of code and 5 KB of tables in every binary that links the
// spool (issue 4's footprint target; docs/DESIGN.md).
//
//go:noinline
func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
