// Package jsongzip lets lokislog gzip its JSON pushes (Protocol "json" with
// Compression "gzip", the default compression of JSON). Import it for its
// effect:
//
//	import _ "github.com/lokislog/lokislog/exporter/jsongzip"
//
// Without it, a JSON configuration that does not set Compression "none" is
// an error of New that names this package. Protobuf pushes, the default, are
// always snappy-compressed and need nothing. It is a package of its own
// because compress/flate's compressor costs every other program about
// 0.05 MB.
package jsongzip

import (
	"github.com/lokislog/lokislog/internal/linked"
	"github.com/lokislog/lokislog/internal/wire"
)

func init() {
	linked.AppendGzip = wire.AppendGzip
}
