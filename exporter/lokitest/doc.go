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
//     with Content-Type application/json; as in Loki, a missing or null
//     line is empty and a fourth element is a 400. Unlike Loki, invalid
//     UTF-8 inside a JSON string becomes U+FFFD (Go's JSON decoder);
//     protobuf pushes keep every byte;
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
// Authentication and tenant checks come first, as Loki's middleware runs
// before its push handler: a push without credentials is a 401 even when
// its body is too large.
//
// A 400 or 429 is a partial success, as in Loki: the valid entries of the
// push are stored, the others are not. The answer is composed as Loki
// composes it:
//
//   - Loki's ingester (stream limit, ordering window) answers for the last
//     stream of the push only: a 429 when that stream would exceed the
//     stream limit; a 400 listing up to 10 of its entries too far behind
//     ("entry with timestamp ... ignored, reason: '...',") and then "user
//     'T', total ignored: N out of M for stream: {...}", T being the tenant
//     ("fake" without X-Scope-OrgID). An earlier stream's refusal is not
//     reported, so a push whose last stream was stored is answered 204 even
//     when an earlier stream hit the stream limit.
//   - Otherwise the distributor's validation errors make a 400, grouped as
//     Loki groups them: each distinct message once, joined by "; ", with "N
//     errors like: " in front unless there is a single message that
//     occurred once (Loki's order of the messages varies; the fake keeps
//     first-seen order).
//   - Otherwise: 204.
//
// Whatever the answer says, [RequestInfo] lists every rejection, with its
// count of accepted and rejected entries.
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
//   - The gRPC limit between Loki's distributor and ingesters (the 500
//     above) is applied to the whole decoded push, before validation; Loki
//     applies it to the validated streams each ingester receives, so a push
//     just over the limit that loses entries to validation may pass there.
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
//   - Push numbers are unique since the last [Server.Reset]: a push that
//     arrived before a Reset and finishes after it is numbered (and counted
//     by [Server.Pushes]) as a push after it.
//   - [Server.WaitEntries] and [Server.WaitRequests] end when their context
//     ends or the server is closed ([ErrClosed]); they keep waiting across
//     Stop and Restart.
//   - A snappy body is refused as corrupt when its header announces more
//     than a valid block of its size can hold, before anything is
//     allocated for it.
//   - [Server.Close] stops every goroutine the server started and waits for
//     pushes being handled; recorded data stays readable.
package lokitest
