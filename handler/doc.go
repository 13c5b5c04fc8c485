// Package handler is an [log/slog] handler that sends records straight to
// Grafana Loki.
//
//	h, err := handler.New(handler.Config{
//		URL:       "http://loki:3100",
//		Labels:    map[string]string{"service_name": "api", "env": "prod"},
//		LabelKeys: []string{"http.method"},
//	})
//	if err != nil { ... }
//	logger := slog.New(h)
//	defer h.Shutdown(context.Background())
//
// Handle encodes the record on the caller's goroutine into a line, a label
// set and structured metadata, and queues it in a bounded buffer; one
// background goroutine batches entries by stream and pushes them to Loki.
//
// # What becomes a label, metadata or the line
//
// Stream labels are only Config.Labels (static) and the attributes named by
// Config.LabelKeys. service_name defaults to the executable's base name. An
// attribute inside groups is named by its dotted path ("http.method"), and
// the label is that path sanitised to Loki's rules ("http_method"): every
// character outside [a-zA-Z0-9_] becomes '_', a leading digit gets a '_'
// in front, and a leading "__" is cut to "_". The record level is a label
// only when "level" is in LabelKeys. When two labels end up with the same
// name, the later one wins: static labels, then WithAttrs attributes in
// order, then the record's attributes in order. Values are cut to 2048
// bytes (valid UTF-8) and empty values are not sent. A stream has at most
// 15 labels: static labels first; attribute labels beyond go to structured
// metadata and the record is counted in [Stats].LabelOverflow.
//
// Config.MaxStreams (default 1000) caps the distinct label sets a handler
// and all its clones send. A record that would open one more stream is
// sent on the static labels' stream with its attribute labels as
// structured metadata, and counted in [Stats].StreamOverflow.
//
// Structured metadata is the attributes named by Config.MetadataKeys
// (names sanitised like labels, so "x-request-id" becomes "x_request_id")
// plus trace_id and span_id (hex) when the record's context carries a valid
// OpenTelemetry span context. Empty values are not sent; a name given twice
// keeps the later value. Loki's limits (128 pairs, 64 KiB of names and
// values per entry) are kept: trace_id and span_id come first, then
// WithAttrs metadata, then the record's; a record attribute that does not
// fit stays in the line. What cannot go back into the line (WithAttrs
// metadata crowded out by the trace ids, labels moved to metadata by the
// limits above) is not sent. Either way the record is counted in
// [Stats].MetadataOverflow.
//
// The line is everything else, in logfmt (default) or JSON, following
// slog's TextHandler and JSONHandler: level, source (with AddSource), msg,
// then the attributes, with groups as dotted keys in logfmt and nested
// objects in JSON, empty groups and empty attributes omitted, LogValuer
// values resolved, ReplaceAttr applied exactly as slog.HandlerOptions
// describes. Strings are escaped with JSON's rules in both formats, which
// Loki's `| logfmt` and `| json` read back unchanged.
//
// The record time is the entry's timestamp, which Loki stores and shows,
// so it is not repeated in the line; a zero time becomes the time of the
// Handle call. ReplaceAttr is still called for the time: returning it
// unchanged, or an empty Attr, keeps it out of the line; returning anything
// else (another key or a non-time value) writes that into the line.
//
// A line longer than Config.MaxLineSize (default 256 KiB, Loki's limit) is
// cut at a UTF-8 boundary and ends with "…[truncated N bytes]", within the
// limit, and counted in [Stats].Truncated. A cut JSON line is no longer
// valid JSON.
//
// # Guarantees
//
//   - Handle never blocks on Loki and never does I/O: it encodes, then
//     hands the entry to the buffer in a short critical section.
//   - Handle never panics. A LogValuer, String, Error, MarshalText or
//     MarshalJSON method that panics is written inline as slog does
//     ("!PANIC: ..." or "<nil>"); a panic elsewhere (in ReplaceAttr) drops
//     the record, counts it under [ReasonEncodePanic] and returns an error.
//   - Handle returns an error only when the record was not queued: after
//     Shutdown, or when memory is full and no spool takes it. Every such
//     record is counted in [Stats].Dropped by reason; nothing is lost
//     silently.
//   - Memory is bounded by Config.MaxBufferBytes; the handler's own
//     per-record buffers are pooled, and buffers over 16 KiB are not kept.
//   - New never contacts Loki: a Loki that is down at start is normal.
//   - The library reports its own errors to Config.ErrorHandler, never
//     through slog.Default (which may be this handler).
//
// # Clones and shutdown
//
// WithAttrs and WithGroup return handlers that share the pipeline, the
// counters and the stream cap. WithAttrs encodes its attributes once, so
// Handle only appends them. Shutdown on any clone stops the shared pipeline:
// it sends what is queued until its context ends, is idempotent, and
// afterwards Handle returns buffer.ErrClosed.
package handler
