package handler

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lokislog/lokislog/buffer"
	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/labels"
)

// Drop reasons the handler itself adds to [Stats].Dropped, next to the
// buffer's reasons (buffer.ReasonBufferFull, ...).
const (
	// ReasonEncodePanic: encoding the record panicked outside a value's
	// own methods (for example in ReplaceAttr); the record is not sent.
	ReasonEncodePanic = "encode_panic"
)

// sink is what the handler hands encoded entries to: the buffer.
// Add must not block and must copy line and the metadata strings; it keeps
// tenant and labels as given.
type sink interface {
	Add(tenant, labels string, ts int64, line []byte, meta []exporter.LabelPair) error
	Flush(ctx context.Context) error
	Shutdown(ctx context.Context) error
	Stats() buffer.Stats
	// Drop counts entries dropped before Add, and reports them (see
	// buffer.Buffer.Drop).
	Drop(reason string, n int, cause error)
}

// pipeline is shared by a Handler and all its clones.
type pipeline struct {
	*settings
	sink        sink
	clientStats func() clientCounters // the push client's; nil in unit tests
	staticSet   string                // interned label set of the static labels
	streams     streamTable

	closed       atomic.Bool
	shutdownOnce sync.Once
	shutdownErr  error

	truncated      atomic.Uint64
	streamOverflow atomic.Uint64
	labelOverflow  atomic.Uint64
	metaOverflow   atomic.Uint64
}

// Handler is an slog.Handler that sends records to Loki. Create it with
// [New]. It is safe for concurrent use; the handlers returned by WithAttrs
// and WithGroup share its pipeline, counters and stream limit.
type Handler struct {
	p *pipeline

	groups      []string // all groups from WithGroup
	prefix      string   // groups joined by '.', with a trailing '.' (or "")
	nOpenGroups int      // JSON: groups already opened in pre
	pre         []byte   // line attributes pre-formatted by WithAttrs

	dynLabels []labels.Pair        // attribute labels from WithAttrs, unique names
	preMeta   []exporter.LabelPair // metadata from WithAttrs, unique names
	preMetaSz int                  // bytes of preMeta as Loki counts them

	// base is the stream of records that bring no labels of their own:
	// static labels plus dynLabels, resolved once per clone.
	base baseStream
}

// baseStream is a resolved label set.
type baseStream struct {
	set       string               // interned label set
	extraMeta []exporter.LabelPair // labels that went to metadata
	overflow  bool                 // MaxStreams was reached: dynLabels are in extraMeta
	tooMany   bool                 // more than 15 labels: some are in extraMeta
}

func newPipeline(s *settings, sk sink) *pipeline {
	p := &pipeline{settings: s, sink: sk}
	p.streams.init(s.MaxStreams)
	set := labels.AppendSet(nil, s.static)
	p.staticSet, _ = p.streams.intern(set) // the first stream always fits
	return p
}

// newHandler builds a Handler on sk; New passes the buffer, tests a fake.
func newHandler(cfg Config, sk sink) (*Handler, error) {
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	p := newPipeline(s, sk)
	return &Handler{p: p, base: baseStream{set: p.staticSet}}, nil
}

// Enabled reports whether level is at least Config.Level.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	min := slog.LevelInfo
	if h.p.Level != nil {
		min = h.p.Level.Level()
	}
	return level >= min
}

func (h *Handler) clone() *Handler {
	h2 := *h
	// Clip so appends by one clone never write into another's arrays.
	h2.groups = h.groups[:len(h.groups):len(h.groups)]
	h2.pre = h.pre[:len(h.pre):len(h.pre)]
	h2.dynLabels = h.dynLabels[:len(h.dynLabels):len(h.dynLabels)]
	h2.preMeta = h.preMeta[:len(h.preMeta):len(h.preMeta)]
	return &h2
}

// WithGroup returns a Handler whose later attributes are inside group name.
// In logfmt the keys get the prefix "name."; in JSON they are nested in an
// object. LabelKeys and MetadataKeys name such attributes by dotted path.
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := h.clone()
	h2.groups = append(h2.groups, name)
	h2.prefix = h.prefix + name + "."
	return h2
}

// WithAttrs returns a Handler that adds attrs to every record. The
// attributes are encoded once, here: line attributes are pre-formatted and
// labels and metadata resolved, so Handle only appends.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	empty := 0
	for _, a := range attrs {
		if isEmptyGroup(a.Value) {
			empty++
		}
	}
	if empty == len(attrs) {
		return h
	}
	h2 := h.clone()
	s := getState(h2)
	defer s.free()
	s.persist = true
	s.addPreMeta()
	s.buf = append(s.buf, h.pre...)
	if len(s.buf) > 0 {
		s.sep = s.attrSep()
		if s.json && s.buf[len(s.buf)-1] == '{' {
			s.sep = ""
		}
	}
	pos := len(s.buf)
	s.openGroups()
	if !s.appendAttrs(attrs) {
		s.buf = s.buf[:pos]
	} else {
		h2.nOpenGroups = len(h2.groups)
	}
	if len(s.buf) != len(h.pre) {
		h2.pre = bytes.Clone(s.buf)
	}
	if len(s.labels) > 0 {
		h2.dynLabels = slices.Clone(h2.dynLabels)
		for _, l := range s.labels {
			h2.dynLabels = setPair(h2.dynLabels, l)
		}
		h2.base = h2.resolveBase(s)
	}
	if len(s.meta) != len(h.preMeta) || s.metaSize != h.preMetaSz {
		// s.meta is h.preMeta followed by what attrs added, within Loki's
		// limits, all strings owned.
		h2.preMeta = slices.Clone(s.meta)
		h2.preMetaSz = s.metaSize
	}
	if s.metaOverflow {
		h2.p.metaOverflow.Add(1)
	}
	return h2
}

// resolveBase resolves the stream for static labels plus h.dynLabels.
func (h *Handler) resolveBase(s *state) baseStream {
	set, extra, overflow, tooMany := s.resolveLabels(h.dynLabels, nil)
	b := baseStream{set: set, overflow: overflow, tooMany: tooMany}
	for _, m := range extra {
		b.extraMeta = append(b.extraMeta, exporter.LabelPair{Name: m.Name, Value: m.Value})
	}
	return b
}

// setPair sets p in ps, replacing a pair of the same name (later wins).
func setPair(ps []labels.Pair, p labels.Pair) []labels.Pair {
	for i := range ps {
		if ps[i].Name == p.Name {
			ps[i].Value = p.Value
			return ps
		}
	}
	return append(ps, p)
}

// Handle encodes r and queues it. It never blocks on Loki and never panics;
// it returns an error only when the entry was not queued: after Shutdown
// (buffer.ErrClosed), when memory is full and no spool takes the entry
// (buffer.ErrFull, buffer.ErrTooLarge), or when encoding panicked (in
// ReplaceAttr, say), each counted in Stats.Dropped. slog.Logger discards
// this error.
func (h *Handler) Handle(ctx context.Context, r slog.Record) (err error) {
	p := h.p
	if p.closed.Load() {
		p.sink.Drop(buffer.ReasonClosed, 1, nil)
		return buffer.ErrClosed
	}
	s := getState(h)
	defer func() {
		if v := recover(); v != nil {
			// A panic outside value methods (those are caught where they
			// are called), for example in ReplaceAttr. The state may be
			// inconsistent: drop it instead of pooling it.
			err = fmt.Errorf("handler: encoding record panicked: %v", v)
			p.sink.Drop(ReasonEncodePanic, 1, err)
			return
		}
		s.free()
	}()
	if ctx != nil {
		s.addTrace(ctx)
	}
	s.addPreMeta()
	s.encodeRecord(&r)

	set := h.base.set
	if len(s.labels) > 0 {
		set = s.recordStream()
	} else if len(h.base.extraMeta) > 0 {
		s.addMetaList(h.base.extraMeta)
		if h.base.overflow {
			p.streamOverflow.Add(1)
		}
		if h.base.tooMany {
			p.labelOverflow.Add(1)
		}
	}
	if s.metaOverflow {
		p.metaOverflow.Add(1)
	}
	if len(s.buf) > p.MaxLineSize {
		s.buf = truncateLine(s.buf, p.MaxLineSize)
		p.truncated.Add(1)
	}
	ts := r.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	var meta []exporter.LabelPair
	if len(s.meta) > 0 {
		meta = s.meta
	}
	return p.sink.Add(p.TenantID, set, ts.UnixNano(), s.buf, meta)
}

// Flush sends everything queued so far and waits until it was delivered
// (or dropped) or ctx ends.
func (h *Handler) Flush(ctx context.Context) error {
	return h.p.sink.Flush(ctx)
}

// Shutdown stops accepting records, sends what is queued until ctx ends and
// stops the pipeline's goroutines. With a spool it stops sending a little
// before ctx's deadline (a fifth of the time left, at most 500 ms) and
// writes what is left to the spool, for the next start; without one, what
// is left is counted as dropped (buffer.ReasonShutdown) and the error wraps
// context.DeadlineExceeded. It is idempotent and shared by all clones:
// later calls wait for the first and return its result. Handle returns
// buffer.ErrClosed afterwards, and Flush too.
func (h *Handler) Shutdown(ctx context.Context) error {
	p := h.p
	p.shutdownOnce.Do(func() {
		p.closed.Store(true)
		if err := p.sink.Shutdown(ctx); err != nil {
			p.shutdownErr = fmt.Errorf("handler: shutdown: %w", err)
		}
	})
	return p.shutdownErr
}

// Stats are counters of a handler tree (a Handler and its clones). Counts
// are in entries (records) unless said otherwise.
type Stats struct {
	// Enqueued is the number of records queued for sending.
	Enqueued uint64
	// Exported is the number of records Loki accepted.
	Exported uint64
	// Dropped counts records lost, by reason: the buffer's reasons
	// (buffer.ReasonBufferFull, buffer.ReasonClosed, buffer.ReasonRejected,
	// ...) and [ReasonEncodePanic].
	Dropped map[string]uint64
	// ExportErrors counts batch pushes that returned an error: the push
	// client's retries ran out (the batch is kept and tried again), or
	// Loki rejected some or all of its entries.
	ExportErrors uint64
	// Requests, Retries and BytesSent are the push client's counters:
	// HTTP requests made, of which retries, and compressed bytes sent.
	Requests  uint64
	Retries   uint64
	BytesSent uint64
	// BufferedBytes and BufferedEntries are what memory holds now.
	BufferedBytes   int64
	BufferedEntries int64
	// Lag is the age of the oldest entry not yet delivered.
	Lag time.Duration

	// Truncated counts lines cut to MaxLineSize.
	Truncated uint64
	// StreamOverflow counts records whose attribute labels were sent as
	// structured metadata because MaxStreams was reached.
	StreamOverflow uint64
	// LabelOverflow counts records with more than 15 labels; the labels
	// beyond (attribute labels, never static ones) went to metadata.
	LabelOverflow uint64
	// MetadataOverflow counts records whose structured metadata went over
	// Loki's limits (128 pairs, 64 KiB): the attributes that did not fit
	// stayed in the line; labels moved to metadata that did not fit were
	// not sent.
	MetadataOverflow uint64
	// Streams is the number of distinct label sets opened so far.
	Streams int

	// Spilled counts entries written to the on-disk spool; Replayed the
	// entries read back from it and delivered.
	Spilled  uint64
	Replayed uint64
	// SpoolBytes, SpoolSegments and SpoolEntries describe the spool on
	// disk now: its size, files, and entries not yet acknowledged.
	SpoolBytes    int64
	SpoolSegments int
	SpoolEntries  int64
	// CorruptSegments counts spool segments set aside as corrupt;
	// DiskErrors failed spool writes.
	CorruptSegments int
	DiskErrors      uint64
}

// Stats returns a snapshot of the counters of the handler tree.
func (h *Handler) Stats() Stats {
	p := h.p
	bs := p.sink.Stats()
	st := Stats{
		Enqueued:         bs.Enqueued,
		Exported:         bs.Exported,
		Dropped:          maps.Clone(bs.Dropped),
		ExportErrors:     bs.ExportErrors,
		BufferedBytes:    bs.BufferedBytes,
		BufferedEntries:  bs.BufferedEntries,
		Lag:              bs.Lag,
		Truncated:        p.truncated.Load(),
		StreamOverflow:   p.streamOverflow.Load(),
		LabelOverflow:    p.labelOverflow.Load(),
		MetadataOverflow: p.metaOverflow.Load(),
		Streams:          p.streams.len(),
		Spilled:          bs.Spilled,
		Replayed:         bs.Replayed,
		SpoolBytes:       bs.SpoolBytes,
		SpoolSegments:    bs.SpoolSegments,
		SpoolEntries:     bs.SpoolEntries,
		CorruptSegments:  bs.CorruptSegments,
		DiskErrors:       bs.DiskErrors,
	}
	if st.Dropped == nil {
		st.Dropped = make(map[string]uint64)
	}
	if p.clientStats != nil {
		cs := p.clientStats()
		st.Requests = cs.Requests
		st.Retries = cs.Retries
		st.BytesSent = cs.BytesSent
	}
	return st
}

// clientCounters are the push client's counters that Stats reports.
type clientCounters struct {
	Requests, Retries, BytesSent uint64
}

func isEmptyGroup(v slog.Value) bool {
	return v.Kind() == slog.KindGroup && len(v.Group()) == 0
}
