package lokiproto

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/snappy"
)

// ErrTooLarge is returned by [DecodeSnappy] when the decoded size announced
// by the block header exceeds the limit.
var ErrTooLarge = errors.New("decompressed size over limit")

// DecodeSnappy decodes a snappy block (not the framed stream format), as
// Loki does with protobuf pushes. The size the header announces is checked
// against max before anything is allocated. Decoding is strict: the S2
// extensions the s2 decoder would accept are refused, as golang/snappy (which
// Loki uses) refuses them.
func DecodeSnappy(b []byte, max int) ([]byte, error) {
	n, err := snappy.DecodedLen(b)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > max {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, max)
	}
	out, err := snappy.DecodeStrict(nil, b)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	return out, nil
}
