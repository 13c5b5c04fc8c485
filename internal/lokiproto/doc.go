// Package lokiproto decodes what clients push to Loki: the protobuf
// logproto.PushRequest (after snappy decompression), the JSON push body, and
// the label-set strings that name streams.
//
// It exists for the fake Loki in exporter/lokitest and mirrors Loki's own
// decoders (gogo-generated protobuf code from github.com/grafana/loki/pkg/push,
// Loki's JSON push decoder and Prometheus' ParseMetric for label sets) closely
// enough that a request decodes here exactly when it decodes in Loki, with the
// same result. Its tests check that against the official types.
//
// # Guarantees
//
//   - Decoding never panics on any input and never allocates more than a small
//     constant factor of the input length: every length field is checked
//     against the bytes that remain before anything is allocated.
//   - Unknown protobuf fields are skipped as gogo-protobuf skips them; known
//     fields with the wrong wire type are errors, as in Loki.
//   - Where this package is stricter than Loki, it is only on encodings no
//     encoder produces: 10-byte varints whose value overflows 64 bits
//     ([ErrVarintOverflow]) and unknown groups nested deeper than [MaxDepth].
//   - Strings are copied out of the input: the result does not alias it.
package lokiproto
