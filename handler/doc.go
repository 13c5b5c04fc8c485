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
//   - Handle never blocks on Loki and never does network I/O: it encodes,
//     then hands the entry to the buffer in a short critical section. It
//     touches the disk only with a spool: in SpoolMode "always" it copies
//     the record into the spool (the OS page cache; with SpoolSync "batch"
//     also an fsync), and in "spill" mode, when memory is full and the
//     spilling goroutine is behind, it writes the oldest batch itself.
//   - Handle never panics. A String, Error, MarshalText or MarshalJSON
//     method that panics is written inline as slog does ("!PANIC: ..." or
//     "<nil>"), a panicking LogValuer as slog's Resolve reports it
//     ("LogValue panicked" and the call stack); a panic elsewhere (in
//     ReplaceAttr) drops the record, counts it under [ReasonEncodePanic]
//     and returns an error.
//   - Handle returns an error only when the record was not queued: after
//     Shutdown, when memory is full and no spool takes it, or when encoding
//     panicked. Every such record is counted in [Stats].Dropped by reason;
//     nothing is lost silently. slog.Logger discards Handle's error: with
//     a Logger, watch Stats().Dropped or lokislog.records.dropped.
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
//
// # Configuration from files and the environment
//
// Package github.com/lokislog/lokislog/config reads a Config from a YAML
// or JSON file (config.LoadFile, config.Load; before 1.0 they were this
// package's LoadConfigFile, LoadConfig and MaxConfigSize), with the fields'
// snake_case names (Promtail's where it has one), durations as strings
// ("1s", "7d") and byte sizes as numbers or strings ("1MiB").
// [Config.UnmarshalYAML] (called by yaml.v2 and yaml.v3) and
// [Config.UnmarshalJSON] do the same when a Config is a section of an
// application's own configuration. An unknown key is an error; an error
// about a key is a [*ConfigError]. This package imports no YAML library:
// YAML's package initialisation alone keeps regexp and the unicode tables
// in a binary (0.21 MB stripped), so only programs that read files pay for
// it. [ConfigFromEnv] reads the LOKI_* environment variables (LOKI_URL,
// LOKI_LABELS="k=v,k=v", LOKI_PASSWORD_FILE, ...), and [Config.ApplyEnv]
// lays them over a Config loaded from a file. Neither validates: [New]
// does, and reports every problem at once (a TLS file that cannot be read
// is found when the push client is built, once the rest is right).
//
// # Metrics
//
// The handler reports its own metrics through the OpenTelemetry metric
// API, to Config.MeterProvider or else the global provider (which records
// nothing until the application installs an SDK; the handler never
// installs one). The instruments, in the Meter named [MeterName]:
//
//	lokislog.records.enqueued     counter   {record}   records queued
//	lokislog.records.exported     counter   {record}   records Loki accepted
//	lokislog.records.dropped      counter   {record}   records lost; attribute reason
//	lokislog.records.spilled      counter   {record}   records written to the spool
//	lokislog.records.replayed     counter   {record}   records read back from the spool and delivered
//	lokislog.records.truncated    counter   {record}   lines cut to MaxLineSize
//	lokislog.records.overflow     counter   {record}   attribute limit: streams, labels, metadata
//	lokislog.export.requests      counter   {request}  push requests, retries included
//	lokislog.export.retries       counter   {request}  push requests that repeated a failed one
//	lokislog.export.failures      counter   {batch}    batch pushes that failed: retries ran out, or Loki rejected entries
//	lokislog.export.bytes         counter   By         request bytes sent (compressed)
//	lokislog.export.duration      histogram s          each push request; http.response.status_code or error.type=no_response
//	lokislog.buffer.size          updown    By         bytes in memory, not yet delivered
//	lokislog.buffer.records       updown    {record}   records in memory, not yet delivered
//	lokislog.spool.size           updown    By         size of the spool on disk
//	lokislog.spool.records        updown    {record}   records in the spool, not yet delivered
//	lokislog.spool.segments       updown    {segment}  spool files
//	lokislog.spool.write_errors   counter   {error}    failed spool writes
//	lokislog.streams              updown    {stream}   distinct label sets opened
//	lokislog.lag                  gauge     s          age of the oldest record not yet delivered
//
// All but lokislog.export.duration are observed by one callback that reads
// [Handler.Stats] when the application's reader collects, so logging costs
// nothing more. Shutdown unregisters it. Handlers sharing a provider
// report the sum of their counters (lokislog.lag: one of their values); to
// tell them apart, give each its own MeterProvider.
package handler
