package wire_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"

	"github.com/lokislog/lokislog/internal/wire"
)

// TestEncodeSnappyPieces checks that input compressed in pieces is one
// valid snappy block: decoded by two decoders to the input, within
// SnappyBound, about as small as the block compressed whole, in a buffer
// grown with the output (not to SnappyBound at once), and written into dst
// without allocating when dst is large enough.
func TestEncodeSnappyPieces(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	logs := func(n int) []byte {
		var b bytes.Buffer
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "level=INFO msg=\"request handled\" method=GET path=/api/v1/users/%d status=200 request_id=%08x\n", i%97, r.Uint32())
		}
		return b.Bytes()[:n]
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	for _, n := range []int{0, 1, 100, 256 << 10, 256<<10 + 1, 512 << 10, 1<<20 + 12345, 5 << 20} {
		for name, src := range map[string][]byte{"logs": logs(n), "random": random(n)} {
			t.Run(fmt.Sprintf("%s-%d", name, n), func(t *testing.T) {
				got := wire.EncodeSnappy(nil, src)
				if len(got) > wire.SnappyBound(n) {
					t.Fatalf("%d bytes, over SnappyBound %d", len(got), wire.SnappyBound(n))
				}
				if dec, err := s2.Decode(nil, got); err != nil || !bytes.Equal(dec, src) {
					t.Fatalf("s2.Decode: %v (equal: %v)", err, bytes.Equal(dec, src))
				}
				if dec, err := snappy.Decode(nil, got); err != nil || !bytes.Equal(dec, src) {
					t.Fatalf("snappy.Decode: %v (equal: %v)", err, bytes.Equal(dec, src))
				}
				if whole := len(s2.EncodeSnappy(nil, src)); float64(len(got)) > float64(whole)*1.03+64 {
					t.Errorf("%d bytes in pieces, %d whole: more than 3%% larger", len(got), whole)
				}
				if name == "logs" && n >= 1<<20 && cap(got) > len(got)+2*s2.MaxEncodedLen(256<<10) {
					// Log lines compress well: the buffer grows with the
					// output, not to the worst case (SnappyBound) at once.
					t.Errorf("compressed %d bytes to %d in a buffer of %d (SnappyBound %d)", n, len(got), cap(got), wire.SnappyBound(n))
				}
				if raceEnabled {
					return // allocations are not counted under -race (race_test.go)
				}
				dst := make([]byte, 0, wire.SnappyBound(n))
				if a := testing.AllocsPerRun(3, func() { dst = wire.EncodeSnappy(dst, src) }); a != 0 {
					t.Errorf("%.0f allocations with a large enough dst, want 0", a)
				}
			})
		}
	}
}
