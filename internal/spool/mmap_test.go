package spool

import (
	"bytes"
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

// copyYielding copies what copy copies, whatever the sizes.
func TestCopyYielding(t *testing.T) {
	for _, n := range []int{0, 1, copyStep - 1, copyStep, copyStep + 1, 5*copyStep + 77} {
		for _, room := range []int{n, n + 100, n / 2} {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(i*31 + 7)
			}
			want := make([]byte, room)
			got := make([]byte, room)
			copy(want, src)
			copyYielding(got, src)
			if !bytes.Equal(got, want) {
				t.Fatalf("n=%d room=%d: copies differ", n, room)
			}
		}
	}
}
