package spool

import (
	"bytes"
	"errors"
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
	s.muLock()
	defer s.muUnlock()
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

// pieceWriter records the size of every write and fails the one numbered
// failAt (from 1), after taking half of it.
type pieceWriter struct {
	sizes  []int
	got    []byte
	failAt int
}

func (w *pieceWriter) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	if len(w.sizes) == w.failAt {
		w.got = append(w.got, p[:len(p)/2]...)
		return len(p) / 2, errors.New("disk full")
	}
	w.got = append(w.got, p...)
	return len(p), nil
}

// writeYielding writes a large frame in pieces of at most writeStep bytes
// and reports how much was written when a piece fails.
func TestWriteYielding(t *testing.T) {
	b := make([]byte, 3*writeStep+100)
	for i := range b {
		b[i] = byte(i * 13)
	}
	w := &pieceWriter{}
	if n, err := writeYielding(w, b); n != len(b) || err != nil || !bytes.Equal(w.got, b) {
		t.Fatalf("wrote %d, %v; content equal: %v", n, err, bytes.Equal(w.got, b))
	}
	if want := []int{writeStep, writeStep, writeStep, 100}; !equalInts(w.sizes, want) {
		t.Fatalf("pieces %v, want %v", w.sizes, want)
	}
	w = &pieceWriter{failAt: 2}
	n, err := writeYielding(w, b)
	if err == nil || n != writeStep+writeStep/2 || len(w.sizes) != 2 {
		t.Fatalf("failing second piece: wrote %d, %v, pieces %v", n, err, w.sizes)
	}
}
