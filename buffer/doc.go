// Package buffer is the bounded queue between the handler and the exporter:
// entries are grouped into batches by tenant and stream, one goroutine
// makes every [exporter.Exporter] Export call, and an optional on-disk
// spool (docs/SPOOL.md) takes the batches when Loki is slow or down and
// across restarts. The handler package builds one per handler; most
// programs never use this package directly. docs/DESIGN.md ("Buffer",
// "Spool in the buffer") describes how it works.
//
// # Guarantees
//
//   - [Buffer.Add] never waits on Loki. It copies the line and the
//     metadata; a batch is sent when it reaches BatchSize or is BatchWait
//     old.
//   - Memory is bounded by MaxBufferBytes, counting each entry's line,
//     metadata and structs (exporter.Entry, exporter.LabelPair) and each
//     stream's labels once per batch. When it is full
//     and no spool takes the data, Add drops the new entry, counts it
//     ([ReasonBufferFull]) and returns [ErrFull]; an entry larger than the
//     bound alone returns [ErrTooLarge].
//   - Each stream's entries are exported in the order Add saw them. With
//     an Exporter2 (memory only), two queued batches may be in flight at
//     once and Loki may receive the later one first, which it accepts
//     within an hour; a batch that failed is sent again, alone, before
//     those after it.
//   - A retryable export failure keeps the batch: it is tried again after
//     RetryInterval (1 s), the pause doubling up to 30 s, or, with a
//     spool, written to disk and read back from there. A
//     [*exporter.PermanentError] counts its entries as [ReasonRejected]; a
//     [*exporter.PartialError] resends only its Remaining batch.
//   - Every entry that leaves without being delivered is counted in
//     [Stats].Dropped under one of the Reason constants.
//   - [Buffer.Flush] waits until every entry admitted before it (and those
//     found in the spool at start) was delivered or dropped, or ctx ends.
//   - [Buffer.Shutdown] is idempotent and stops every goroutine New
//     started. Without a spool, what is not delivered when ctx ends is
//     counted as [ReasonShutdown]; with one, it is written to the spool.
package buffer
