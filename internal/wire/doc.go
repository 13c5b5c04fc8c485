// Package wire encodes Loki push requests: the protobuf body
// (logproto.PushRequest) with its snappy block compression, and the JSON body
// with optional gzip.
//
// The encoders take the exporter package's Stream, Entry and LabelPair types
// through type parameters (exporter imports this package, so it cannot name
// them): call them as wire.AppendPush(dst, batch.Streams).
//
// # Guarantees
//
//   - [AppendPush] writes exactly the bytes that the generated code of
//     github.com/grafana/loki/pkg/push marshals for the same request (checked
//     by tests against that code), in one pass into dst after one size pass;
//     it allocates only when dst must grow.
//   - [EncodeSnappy] writes a snappy block (not the framed format), reusing
//     dst's memory when it is large enough.
//   - [AppendJSON] writes valid JSON and valid UTF-8 whatever the input bytes:
//     invalid UTF-8 in lines and metadata becomes U+FFFD. It parses each
//     stream's label set strictly ([ParseLabels]) and returns a
//     *[LabelsError] instead of writing a malformed set.
//   - [AppendGzip] reuses pooled gzip writers and is safe for concurrent use.
//     The other functions keep no state.
//
// The label parser and the encoders accept any bytes without panicking
// (bodies up to s2.MaxEncodedLen's 4 GiB limit); fuzz tests check the label
// parser, the JSON output and the protobuf encoder against the reference.
package wire
