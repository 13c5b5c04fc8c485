// Package lokitest is a fake Grafana Loki for unit tests and demos: an HTTP
// server on 127.0.0.1 that takes pushes exactly as Loki does, applies
// Loki's validation with Loki's status codes, records what it accepted, and
// misbehaves on request.
//
//	s := lokitest.NewTestServer(t) // closed when the test ends
//	// point the code under test at s.URL() ...
//	entries, err := s.WaitEntries(ctx, 3)
//
// [NewServer] and [New] work outside tests (the quickstart uses them);
// [Server.Handler] mounts the fake in another server or serves it without a
// listener.
//
// # What it accepts, as Loki
//
// POST /loki/api/v1/push with:
//
//   - protobuf logproto.PushRequest, snappy block-compressed, for any
//     Content-Type other than application/json (as Loki); decoded by an own
//     decoder that accepts exactly what Loki's gogo-generated one does (this
//     is checked against github.com/grafana/loki/pkg/push by differential
//     fuzzing), except 10-byte varints that overflow 64 bits and unknown
//     groups nested over 64 deep, which no encoder produces;
//   - JSON {"streams":[{"stream":{...},"values":[["<ns>","line",{...}]]}]}
//     with Content-Type application/json;
//   - either one with Content-Encoding gzip or deflate (raw DEFLATE, as
//     Loki reads it; zlib-wrapped data is refused as by Loki) or snappy
//     (ignored, as by Loki). A missing Content-Type is a 400, as in Loki.
//
// Stream label sets are parsed strictly, as Loki's Prometheus-based parser
// does: {name="value", ...}, names [a-zA-Z_][a-zA-Z0-9_]*, values quoted
// with Go escapes; pairs with empty values are dropped and the set is stored
// sorted, in Loki's canonical form ({a="b", c="d"}).
//
// # Validation and status codes
//
// With Loki's default limits (all adjustable with [WithLimits]):
//
//   - a body over 100 MiB, or decompressing to more: 413;
//   - a push that encodes (as Loki's distributor forwards it to an
//     ingester) to more than 4 MiB, the ingesters' default gRPC message
//     limit: 500 "rpc error: code = ResourceExhausted desc = grpc: received
//     message larger than max (N vs. 4194304)", nothing stored;
//   - a malformed body, an unparsable label set, an invalid label name in
//     JSON, an unsupported Content-Encoding: 400 for the whole push, nothing
//     stored;
//   - no streams at all: 422;
//   - with [WithMultiTenant]: no X-Scope-OrgID: 401; an invalid one: 400;
//   - with [WithBasicAuth] or [WithBearerToken]: wrong credentials: 401;
//   - per stream, 400: no labels, more than 15 labels (service_name not
//     counted), a name over 1024 or a value over 2048 bytes, a duplicate
//     name, a name starting with "__" (reserved);
//   - per entry, 400: older than 7 days, more than 10 minutes in the
//     future, a line over 256 KiB ("Max entry size"), structured metadata
//     over 64 KiB or 128 pairs, more than 1 hour behind the newest accepted
//     entry of its stream ("entry too far behind"; out of order within the
//     hour is accepted);
//   - a stream that would exceed the tenant's 5000 streams: 429;
//   - a structured metadata name that normalises to nothing (empty, or only
//     punctuation): 500 for the whole push, nothing stored, as Loki does.
//
// A 400 or 429 is a partial success, as in Loki: the valid entries of the
// push are stored, the others are not, and the answer's body lists the
// reasons (Loki's wording, up to 20 lines). [RequestInfo] lists every
// rejection. 429 wins over 400 when both apply. Accepted pushes get 204.
//
// Stored entries are what Loki would store: structured metadata names
// normalised as Loki's distributor does ("http-method" and "http.method"
// become "http_method"), empty metadata values dropped, invalid UTF-8 in
// metadata values replaced by spaces.
//
// # What it does not do
//
//   - Rate limits (ingestion and per-stream bytes per second) are not
//     applied; script a 429 with [Server.FailNext] instead.
//   - Loki's ingester drops an entry identical (timestamp and line) to the
//     last one of its stream; the fake stores it, so tests see duplicates.
//   - service_name is added only with [WithServiceNameDiscovery], and
//     detected_level metadata never, so that recorded labels and metadata
//     are exactly what was sent.
//   - Tenants are recorded as sent; Loki without auth_enabled would store
//     everything under the tenant "fake".
//   - The ~4 MB gRPC limit between Loki's distributor and ingesters (a 500
//     for very large pushes) is not simulated; check request sizes with
//     [Server.Requests].
//   - Pushes are handled one after another in the order they reach the
//     validation stage; there is no replication, no query API, no
//     retention.
//
// # Faults
//
// [Server.FailNext] and [Server.DropNext] queue one-shot faults (an error
// status with an optional Retry-After; a connection closed without an
// answer), used first in, first out. [Server.FailFor] and [Server.SetDown]
// make every push fail until cleared; [Server.SetDelay] slows every push
// down; [AfterStore] makes a fault happen after the push was stored (the
// answer is lost, so a retry duplicates). [Server.Stop] and
// [Server.Restart] close and reopen the listener on the same address, so
// that clients see "connection refused" in between. All of them are safe to
// call while pushes are in flight.
//
// # Guarantees
//
//   - Every method is safe for concurrent use.
//   - No input makes the server panic or hang. Every length field is
//     checked against the bytes present before anything is allocated, so
//     memory use is a constant factor of the decompressed body, which is
//     bounded by [Limits.MaxBodySize] (lower it to bound a test's memory
//     further).
//   - A push's entries are stored atomically with respect to readers: a
//     reader sees all of a push's accepted entries or none.
//   - A client that has received its answer finds its request in
//     [Server.Requests] and its accepted entries in [Server.Entries].
//   - [Server.Close] stops every goroutine the server started and waits for
//     pushes being handled; recorded data stays readable.
package lokitest
