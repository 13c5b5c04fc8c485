package spool

import (
	"runtime"
	"testing"
)

// writers are the two append paths. The tests of appending, recovery and
// crashes run on both.
var writers = []struct {
	name   string
	noMmap bool
}{{"mmap", false}, {"write", true}}

// eachWriter runs f once per append path, with the Options.NoMmap to use.
func eachWriter(t *testing.T, f func(t *testing.T, noMmap bool)) {
	t.Helper()
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			if !w.noMmap && !mmapSupported {
				t.Skipf("no mmap writer on %s: the write path is tested", runtime.GOOS)
			}
			f(t, w.noMmap)
		})
	}
}

// mapped reports whether s writes through a mapping now.
func mapped(s *Spool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wmap != nil
}
