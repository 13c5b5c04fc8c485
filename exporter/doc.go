// Package exporter defines what the pipeline hands to Loki ([Batch],
// [Stream], [Entry]), the [Exporter] contract, and [Client], the Loki push
// client that implements it.
//
// # Wire format
//
// By default a [Client] posts logproto.PushRequest as protobuf, snappy block
// compressed (Content-Type application/x-protobuf), to the push path
// ([PushPath]) under [Config.URL]. With Protocol "json" it posts Loki's JSON
// push body (Content-Type application/json), gzip-compressed unless
// Compression is "none". Gzip and client certificates from files are linked
// in by importing [github.com/lokislog/lokislog/exporter/jsongzip] and
// [github.com/lokislog/lokislog/exporter/clientcert]; without them a Config
// that needs one is an error of [NewClient] naming the import. Stream labels in JSON must parse as a label set; a
// stream whose labels do not is not sent, and its entries are reported as
// rejected with Status 0.
//
// # Status classification
//
//   - 2xx: delivered.
//   - 408, 429, and 5xx other than 501: retryable; retried with backoff.
//     Connection errors and requests without an answer within
//     [Config.Timeout] are retryable too (Loki may have stored such a batch:
//     a retry can then duplicate it).
//   - 413: the batch is split in two with [Split] and the halves are sent in
//     order, recursively. A single entry that still gets 413 is rejected.
//     So is a 500 whose text says ResourceExhausted and "larger than max":
//     Loki's answer to a push over its ingesters' gRPC message limit (4 MiB
//     by default), which no retry of the same batch can pass.
//   - Every other status (400, 401, 403, 404, 422, 501, 3xx not followed,
//     ...): rejected for good, never retried; the error is a
//     [*PermanentError] with the status and the start of Loki's answer
//     (at most 1 KiB). A 400 may mean Loki stored the valid part of the
//     batch; there is no way to tell which part.
//
// Redirects that keep the POST (307, 308) are followed, at most three,
// except from https to plain http (the logs would travel in clear) and to
// a URL without a host; those are rejected like other 3xx. A redirect to
// another host keeps only Content-Type, Content-Encoding, User-Agent and
// X-Scope-OrgID: Authorization and [Config.Headers] may be credentials.
//
// # Retry policy
//
// Waits grow exponentially from MinBackoff to MaxBackoff with ±50% jitter
// (github.com/cenkalti/backoff/v4). On 429 and 503 a Retry-After header,
// in seconds or as an HTTP date, is honoured: the wait is the larger of it
// (capped at MaxRetryAfter) and the backoff. An Export call gives up when the
// next wait would end after MaxRetryTime since the call started or after
// ctx's deadline, and returns a retryable error that wraps the last
// [*StatusError] or connection error. Every request has its own timeout
// ([Config.Timeout]); the request body is kept as bytes, so each retry
// sends the same body without encoding it again.
//
// # What Export returns
//
//   - nil: every entry was accepted.
//   - [*PermanentError]: every entry was either accepted or rejected for good
//     (Entries counts the rejected ones); nothing is to be sent again.
//   - [*PartialError]: after a 413 split, some parts were delivered or
//     rejected and a later part failed retryably; Remaining holds exactly
//     the entries not yet delivered, in order, in memory of its own;
//     Rejected sums up the parts refused for good.
//   - [ErrShutdown] (wrapped when a running Export was interrupted), the
//     context's error (wrapped), or another error: nothing is known to be
//     delivered; the batch may be sent again.
//
// # Other guarantees
//
//   - [NewClient] validates its [Config] and never connects.
//   - Credentials (password, bearer token, header values, user information
//     in the URL) never appear in errors or [ClientStats]: errors name the
//     push URL without user information or query, and known secrets echoed
//     in an answer are masked.
//   - Response bodies are read up to a limit and always closed.
//   - The client's own transport speaks HTTP/1.1 over one kept-alive
//     connection, with TLS and the proxy from the environment (http and
//     https proxies; HTTPS through CONNECT). A kept connection found closed
//     by the server before any answer is replaced at once, without
//     counting a retry. [Config.HTTPClient] takes any [Doer] (an
//     *http.Client for HTTP/2 or SOCKS).
//   - Encode buffers are reused between calls; a buffer the HTTP transport
//     may still read is never overwritten.
//   - [Client.Shutdown] interrupts a running Export, waits for it, closes
//     idle connections and is idempotent; Export then returns [ErrShutdown].
package exporter
