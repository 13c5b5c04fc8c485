package handler

import (
	"bytes"
	"context"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/internal/enc"
	"github.com/lokislog/lokislog/internal/labels"
)

// maxPooledBuffer is the largest buffer returned to the pool; bigger ones
// are left to the garbage collector so one huge record does not pin memory.
const maxPooledBuffer = 16 << 10

// state is the scratch space of one Handle or WithAttrs call. It is pooled.
type state struct {
	h    *Handler
	p    *pipeline
	json bool
	// text: a logfmt line without ReplaceAttr, where appendAttr writes
	// scalar attributes outside groups straight to the line.
	text bool

	buf    []byte   // the line
	sep    string   // written before the next key
	prefix []byte   // dotted path of the open groups, "a.b." (logfmt key prefix)
	path   []byte   // scratch for looking up prefix+key
	groups []string // open groups, for ReplaceAttr; kept only when it is set

	scratch []byte // label and metadata values formatted from non-strings

	labels       []labels.Pair        // attribute labels found, unique names
	meta         []exporter.LabelPair // structured metadata, unique names
	metaSize     int                  // bytes of meta as Loki counts them
	metaOverflow bool                 // some metadata did not fit Loki's limits

	pairs []labels.Pair // label-set merge scratch
	dyn   []labels.Pair // attribute-label merge scratch
	set   []byte        // label-set text scratch

	// persist is set in WithAttrs: strings that go to labels or metadata
	// must be copies, as they outlive the call.
	persist bool
}

var statePool = sync.Pool{New: func() any {
	return &state{buf: make([]byte, 0, 1024)}
}}

func getState(h *Handler) *state {
	s := statePool.Get().(*state)
	s.h, s.p, s.json = h, h.p, h.p.json
	s.text = !s.json && h.p.ReplaceAttr == nil
	if s.buf == nil {
		s.buf = make([]byte, 0, 1024)
	}
	return s
}

func (s *state) free() {
	s.reset()
	statePool.Put(s)
}

// emptied returns x with no elements and its capacity, the elements it
// had cleared (they may refer to the caller's strings).
func emptied[T any](x []T) []T {
	if len(x) > 0 {
		clear(x)
	}
	return x[:0]
}

// reset makes s as a new state, keeping its slices' capacity.
func (s *state) reset() {
	if cap(s.buf) > maxPooledBuffer {
		s.buf = nil
	}
	if cap(s.scratch) > maxPooledBuffer {
		s.scratch = nil
	}
	// Field by field, the slices of strings cleared so that the pool
	// holds no reference to a caller's string. TestStateReset checks every
	// field.
	s.h, s.p, s.json, s.text, s.persist = nil, nil, false, false, false
	s.buf, s.sep, s.prefix, s.path = s.buf[:0], "", s.prefix[:0], s.path[:0]
	s.scratch, s.set = s.scratch[:0], s.set[:0]
	s.metaSize, s.metaOverflow = 0, false
	s.groups = emptied(s.groups)
	s.labels = emptied(s.labels)
	s.meta = emptied(s.meta)
	s.pairs = emptied(s.pairs)
	s.dyn = emptied(s.dyn)
}

func (s *state) attrSep() string {
	if s.json {
		return ","
	}
	return " "
}

// encodeRecord writes r's line: level, source, msg, the pre-formatted
// attributes and r's attributes. The time is the entry's timestamp and is
// not written unless ReplaceAttr turns it into something else.
func (s *state) encodeRecord(r *slog.Record) {
	p, h := s.p, s.h
	rep := p.ReplaceAttr
	if s.json {
		s.buf = append(s.buf, '{')
	}
	// Built-in attributes: not in any group (s.prefix and s.groups empty).
	if rep != nil && !r.Time.IsZero() {
		a := rep(nil, slog.Time(slog.TimeKey, r.Time.Round(0)))
		a.Value = a.Value.Resolve()
		if a.Key != slog.TimeKey || a.Value.Kind() != slog.KindTime {
			s.appendResolved(a)
		}
	}
	if rep == nil && p.levelInfo.class == classLine {
		s.appendKey(slog.LevelKey)
		s.appendString(r.Level.String())
	} else {
		s.appendAttr(slog.Any(slog.LevelKey, r.Level))
	}
	if p.AddSource {
		src := r.Source()
		if src == nil {
			src = &slog.Source{}
		}
		s.appendAttr(slog.Any(slog.SourceKey, src))
	}
	if rep == nil && p.msgInfo.class == classLine {
		s.appendKey(slog.MessageKey)
		s.appendString(r.Message)
	} else {
		s.appendAttr(slog.String(slog.MessageKey, r.Message))
	}

	if len(h.pre) > 0 {
		s.buf = append(s.buf, s.sep...)
		s.buf = append(s.buf, h.pre...)
		s.sep = s.attrSep()
		if s.json && h.pre[len(h.pre)-1] == '{' {
			s.sep = ""
		}
	}
	nOpen := h.nOpenGroups
	if r.NumAttrs() > 0 {
		pos, sep := len(s.buf), s.sep
		s.openGroups()
		nOpen = len(h.groups)
		empty := true
		r.Attrs(func(a slog.Attr) bool {
			if s.appendAttr(a) {
				empty = false
			}
			return true
		})
		if empty {
			s.buf, s.sep = s.buf[:pos], sep
			nOpen = h.nOpenGroups
		}
	}
	if s.json {
		for range nOpen {
			s.buf = append(s.buf, '}')
		}
		s.buf = append(s.buf, '}')
	}
}

// openGroups enters the handler's groups: the key prefix and ReplaceAttr's
// groups get all of them; JSON opens the ones not opened in h.pre.
func (s *state) openGroups() {
	h := s.h
	s.prefix = append(s.prefix[:0], h.prefix...)
	if s.p.ReplaceAttr != nil {
		s.groups = append(s.groups[:0], h.groups...)
	}
	if s.json {
		for _, g := range h.groups[h.nOpenGroups:] {
			s.appendKey(g)
			s.buf = append(s.buf, '{')
			s.sep = ""
		}
	}
}

// appendAttrs appends as and reports whether anything went into the line.
func (s *state) appendAttrs(as []slog.Attr) bool {
	nonEmpty := false
	for _, a := range as {
		if s.appendAttr(a) {
			nonEmpty = true
		}
	}
	return nonEmpty
}

// appendAttr resolves a, applies ReplaceAttr and appends the result. It
// reports whether anything went into the line.
//
// The value's kind is found once and handed down: slog.Value.Kind is a type
// switch, and Resolve and each of the encoders would otherwise ask again.
func (s *state) appendAttr(a slog.Attr) bool {
	kind := a.Value.Kind()
	if s.text && kind != slog.KindAny && kind < slog.KindGroup && a.Key != "" && len(s.prefix) == 0 && !s.p.mayBeKey(len(a.Key)) {
		// The common case, what appendKey and appendValue write, with the
		// line kept in a local: a scalar outside any group, no ReplaceAttr,
		// not a label or metadata key.
		buf := append(s.buf, s.sep...)
		buf = enc.AppendLogfmtString(buf, a.Key)
		buf = append(buf, '=')
		s.buf = appendTextKind(buf, a.Value, kind, true)
		s.sep = " "
		return true
	}
	if kind == slog.KindLogValuer {
		a.Value = a.Value.Resolve()
		kind = a.Value.Kind()
	}
	if rep := s.p.ReplaceAttr; rep != nil && kind != slog.KindGroup {
		groups := s.groups
		if len(groups) == 0 {
			groups = nil // as slog passes for top-level attributes
		}
		a = rep(groups, a)
		a.Value = a.Value.Resolve()
		kind = a.Value.Kind()
	}
	return s.appendKind(a, kind)
}

// appendResolved appends an attribute that went through ReplaceAttr: to
// labels or metadata when its path is in LabelKeys or MetadataKeys,
// otherwise to the line. It reports whether anything went into the line.
func (s *state) appendResolved(a slog.Attr) bool {
	return s.appendKind(a, a.Value.Kind())
}

// appendKind is appendResolved with the kind of a.Value known.
func (s *state) appendKind(a slog.Attr, kind slog.Kind) bool {
	v := a.Value
	if a.Key == "" && kind == slog.KindAny && v.Any() == nil {
		return false // the empty Attr
	}
	if kind == slog.KindGroup {
		attrs := v.Group()
		if len(attrs) == 0 {
			return false
		}
		// The group may still come out empty (labels, ReplaceAttr): be ready
		// to undo its opening.
		pos, sep, plen, glen := len(s.buf), s.sep, len(s.prefix), len(s.groups)
		if a.Key != "" {
			s.openGroup(a.Key)
		}
		if !s.appendAttrs(attrs) {
			s.buf, s.sep, s.prefix = s.buf[:pos], sep, s.prefix[:plen]
			if s.groups != nil {
				s.groups = s.groups[:glen]
			}
			return false
		}
		if a.Key != "" {
			s.closeGroup(a.Key)
		}
		return true
	}
	if ki, ok := s.classify(a.Key); ok && s.divert(ki, v) {
		return false
	}
	if kind == slog.KindAny {
		if src, ok := v.Any().(*slog.Source); ok {
			if src == nil || *src == (slog.Source{}) {
				return false
			}
			if s.json {
				return s.appendResolved(slog.Attr{Key: a.Key, Value: sourceGroup(src)})
			}
			s.appendKey(a.Key)
			start := len(s.scratch)
			s.scratch = appendSourceText(s.scratch, src)
			s.appendString(bytesString(s.scratch[start:]))
			s.scratch = s.scratch[:start]
			return true
		}
	}
	s.appendKey(a.Key)
	s.appendValue(v, kind)
	return true
}

func sourceGroup(src *slog.Source) slog.Value {
	as := make([]slog.Attr, 0, 3)
	if src.Function != "" {
		as = append(as, slog.String("function", src.Function))
	}
	if src.File != "" {
		as = append(as, slog.String("file", src.File))
	}
	if src.Line != 0 {
		as = append(as, slog.Int("line", src.Line))
	}
	return slog.GroupValue(as...)
}

func appendSourceText(dst []byte, src *slog.Source) []byte {
	dst = append(dst, src.File...)
	dst = append(dst, ':')
	return strconv.AppendInt(dst, int64(src.Line), 10)
}

func (s *state) openGroup(name string) {
	if s.json {
		s.appendKey(name)
		s.buf = append(s.buf, '{')
		s.sep = ""
	}
	s.prefix = append(s.prefix, name...)
	s.prefix = append(s.prefix, '.')
	if s.p.ReplaceAttr != nil {
		s.groups = append(s.groups, name)
	}
}

func (s *state) closeGroup(name string) {
	if s.json {
		s.buf = append(s.buf, '}')
	}
	s.prefix = s.prefix[:len(s.prefix)-len(name)-1]
	s.sep = s.attrSep()
	if s.p.ReplaceAttr != nil {
		s.groups = s.groups[:len(s.groups)-1]
	}
}

func (s *state) appendKey(key string) {
	s.buf = append(s.buf, s.sep...)
	if s.json {
		s.buf = enc.AppendJSONString(s.buf, key)
		s.buf = append(s.buf, ':')
	} else {
		s.buf = enc.AppendLogfmtKey(s.buf, s.prefix, key)
		s.buf = append(s.buf, '=')
	}
	s.sep = s.attrSep()
}

func (s *state) appendString(str string) {
	if s.json {
		s.buf = enc.AppendJSONString(s.buf, str)
	} else {
		s.buf = enc.AppendLogfmtString(s.buf, str)
	}
}

func (s *state) appendValue(v slog.Value, kind slog.Kind) {
	if s.json {
		s.buf = appendJSONKind(s.buf, v, kind)
	} else {
		s.buf = appendTextKind(s.buf, v, kind, true)
	}
}

// mayBeKey reports whether a key path of n bytes (the open groups' prefix
// and the key) may be in LabelKeys or MetadataKeys: only then does
// classify look it up.
func (p *pipeline) mayBeKey(n int) bool {
	if len(p.keys) == 0 {
		return false
	}
	if n < 64 {
		return p.keyLens&(1<<n) != 0
	}
	return p.keyLong
}

// classify looks up the dotted path of key (the open groups plus key) in
// LabelKeys and MetadataKeys.
func (s *state) classify(key string) (keyInfo, bool) {
	p := s.p
	if !p.mayBeKey(len(s.prefix) + len(key)) {
		return keyInfo{}, false
	}
	var ki keyInfo
	var ok bool
	if len(s.prefix) == 0 {
		ki, ok = p.keys[key]
	} else {
		s.path = append(append(s.path[:0], s.prefix...), key...)
		ki, ok = p.keys[string(s.path)] // no allocation for a lookup
	}
	return ki, ok && ki.class != classLine
}

// divert sends the value to labels or metadata. It reports false when the
// value must stay in the line: metadata over Loki's limits.
func (s *state) divert(ki keyInfo, v slog.Value) bool {
	val := s.valueString(v)
	switch ki.class {
	case classLabel:
		val = labels.CutValue(val, labels.MaxValueLen)
		if val == "" {
			return true // an empty label is no label
		}
		if s.persist {
			val = strings.Clone(val)
		}
		s.labels = setPair(s.labels, labels.Pair{Name: ki.name, Value: val})
		return true
	default:
		val = labels.CutValue(val, labels.MaxMetadataBytes)
		if val == "" {
			return true // Loki drops empty metadata values
		}
		if s.persist {
			val = strings.Clone(val)
		}
		return s.addMeta(ki.name, val)
	}
}

// valueString returns v as text, as logfmt shows it but unquoted. For
// non-string kinds the result points into s.scratch and is valid until the
// state is freed.
func (s *state) valueString(v slog.Value) string {
	if v.Kind() == slog.KindString {
		return v.String()
	}
	start := len(s.scratch)
	s.scratch = appendTextValue(s.scratch, v, false)
	return bytesString(s.scratch[start:])
}

// bytesString views b as a string without copying. Used only for values
// that are copied (by the sink, by interning, or by strings.Clone) before
// the state is freed.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// addMeta adds one metadata pair within Loki's limits; a name already
// present takes the new value. It reports false (and notes the overflow)
// when the pair does not fit.
func (s *state) addMeta(name, value string) bool {
	size := len(name) + len(value)
	for i := range s.meta {
		if m := &s.meta[i]; m.Name == name {
			n := s.metaSize - len(m.Value) + len(value)
			if n > labels.MaxMetadataBytes {
				s.metaOverflow = true
				return false
			}
			m.Value, s.metaSize = value, n
			return true
		}
	}
	if len(s.meta) >= labels.MaxMetadataEntries || s.metaSize+size > labels.MaxMetadataBytes {
		s.metaOverflow = true
		return false
	}
	s.meta = append(s.meta, exporter.LabelPair{Name: name, Value: value})
	s.metaSize += size
	return true
}

func (s *state) addMetaList(ms []exporter.LabelPair) {
	for _, m := range ms {
		s.addMeta(m.Name, m.Value)
	}
}

func (s *state) addLabelsAsMeta(ls []labels.Pair) {
	for _, l := range ls {
		s.addMeta(l.Name, l.Value)
	}
}

// addTrace adds trace_id and span_id when ctx carries a valid span context.
func (s *state) addTrace(ctx context.Context) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	start := len(s.scratch)
	s.scratch = hex.AppendEncode(s.scratch, tid[:])
	s.scratch = hex.AppendEncode(s.scratch, sid[:])
	ids := bytesString(s.scratch[start:])
	s.addMeta("trace_id", ids[:2*len(tid)])
	s.addMeta("span_id", ids[2*len(tid):])
}

func (s *state) addPreMeta() {
	if s.h.preMetaSz > 0 && len(s.meta) == 0 {
		s.meta = append(s.meta, s.h.preMeta...)
		s.metaSize = s.h.preMetaSz
		return
	}
	s.addMetaList(s.h.preMeta)
}

// recordStream resolves the stream of a record that brought labels.
func (s *state) recordStream() string {
	set, extra, overflow, tooMany := s.resolveLabels(s.h.dynLabels, s.labels)
	s.addLabelsAsMeta(extra)
	if overflow {
		s.p.streamOverflow.Add(1)
	}
	if tooMany {
		s.p.labelOverflow.Add(1)
	}
	return set
}

// resolveLabels merges the static labels with the attribute labels a and b
// (later names win), keeps at most 15 (static ones first) and interns the
// set. Labels that do not fit go to extra: those beyond 15, or every
// attribute label when MaxStreams is reached (then set is the static set).
func (s *state) resolveLabels(a, b []labels.Pair) (set string, extra []labels.Pair, overflow, tooMany bool) {
	p := s.p
	pairs := append(s.pairs[:0], p.static...)
	for _, l := range a {
		pairs = setPair(pairs, l)
	}
	for _, l := range b {
		pairs = setPair(pairs, l)
	}
	s.pairs = pairs
	kept := pairs
	if len(pairs) > labels.MaxLabels {
		tooMany = true
		kept, extra = pairs[:labels.MaxLabels], pairs[labels.MaxLabels:]
	}
	labels.SortPairs(kept)
	s.set = labels.AppendSet(s.set[:0], kept)
	set, ok := p.streams.intern(s.set)
	if ok {
		return set, extra, false, tooMany
	}
	dyn := s.dyn[:0]
	for _, l := range a {
		dyn = setPair(dyn, l)
	}
	for _, l := range b {
		dyn = setPair(dyn, l)
	}
	s.dyn = dyn
	return p.staticSet, dyn, true, tooMany
}

// truncateLine cuts b to at most max bytes (max >= MinMaxLineSize),
// keeping valid UTF-8, and appends the marker "…[truncated N bytes]" where
// N is the number of bytes removed.
func truncateLine(b []byte, max int) []byte {
	const head, tail = "…[truncated ", " bytes]"
	for d := 1; d <= 20; d++ {
		cut := enc.TruncateUTF8(b, max-len(head)-d-len(tail))
		n := len(b) - len(cut)
		if len(strconv.Itoa(n)) <= d {
			out := append(cut, head...)
			out = strconv.AppendInt(out, int64(n), 10)
			return append(out, tail...)
		}
	}
	return enc.TruncateUTF8(b, max)
}

// appendTextValue appends v as slog's TextHandler shows it. With quote,
// strings are quoted when logfmt needs it; without, the raw text is
// appended (for label and metadata values).
func appendTextValue(dst []byte, v slog.Value, quote bool) []byte {
	return appendTextKind(dst, v, v.Kind(), quote)
}

// appendTextKind is appendTextValue with v's kind known.
func appendTextKind(dst []byte, v slog.Value, kind slog.Kind, quote bool) []byte {
	switch kind {
	case slog.KindString:
		if quote {
			return enc.AppendLogfmtString(dst, v.String())
		}
		return append(dst, v.String()...)
	case slog.KindInt64:
		return strconv.AppendInt(dst, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(dst, v.Uint64(), 10)
	case slog.KindFloat64:
		return strconv.AppendFloat(dst, v.Float64(), 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(dst, v.Bool())
	case slog.KindDuration:
		return enc.AppendDuration(dst, v.Duration())
	case slog.KindTime:
		return enc.AppendRFC3339Millis(dst, v.Time())
	case slog.KindAny, slog.KindLogValuer:
		return appendTextAny(dst, v.Any(), quote)
	default: // KindGroup: only reached for label/metadata values
		return appendStr(dst, v.String(), quote)
	}
}

func appendStr(dst []byte, s string, quote bool) []byte {
	if quote {
		return enc.AppendLogfmtString(dst, s)
	}
	return append(dst, s...)
}

// appendTextAny appends an arbitrary value as text. A panic in one of its
// methods is written as "!PANIC: ..." (or "<nil>" for a nil pointer), as
// slog does.
func appendTextAny(dst []byte, x any, quote bool) (out []byte) {
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			out = appendStr(dst[:n], panicText(x, r), quote)
		}
	}()
	switch x := x.(type) {
	case slog.Level:
		return appendStr(dst, x.String(), quote)
	case *slog.Source:
		if quote {
			return enc.AppendLogfmtString(dst, string(appendSourceText(nil, x)))
		}
		return appendSourceText(dst, x)
	case encoding.TextMarshaler:
		data, err := x.MarshalText()
		if err != nil {
			return appendStr(dst, "!ERROR:"+err.Error(), quote)
		}
		return appendStr(dst, bytesString(data), quote)
	case []byte:
		if quote {
			return enc.AppendJSONString(dst, bytesString(x))
		}
		return append(dst, x...)
	case fmt.Formatter:
		return appendStr(dst, fmt.Sprintf("%+v", x), quote)
	case error:
		return appendStr(dst, x.Error(), quote)
	case fmt.Stringer:
		return appendStr(dst, x.String(), quote)
	}
	if rv := reflect.ValueOf(x); rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
		bs := rv.Bytes()
		if quote {
			return enc.AppendJSONString(dst, bytesString(bs))
		}
		return append(dst, bs...)
	}
	return appendStr(dst, fmt.Sprintf("%+v", x), quote)
}

// panicText is what slog writes for a value whose method panicked.
func panicText(x any, r any) string {
	if v := reflect.ValueOf(x); v.Kind() == reflect.Pointer && v.IsNil() {
		return "<nil>"
	}
	return fmt.Sprintf("!PANIC: %v", r)
}

// appendJSONKind appends v, of the given kind, as slog's JSONHandler
// writes it.
func appendJSONKind(dst []byte, v slog.Value, kind slog.Kind) []byte {
	switch kind {
	case slog.KindString:
		return enc.AppendJSONString(dst, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(dst, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(dst, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return enc.AppendJSONString(dst, "!ERROR:json: unsupported value: "+strconv.FormatFloat(f, 'g', -1, 64))
		}
		return enc.AppendJSONFloat(dst, f)
	case slog.KindBool:
		return strconv.AppendBool(dst, v.Bool())
	case slog.KindDuration:
		return strconv.AppendInt(dst, int64(v.Duration()), 10) // as encoding/json
	case slog.KindTime:
		t := v.Time()
		if y := t.Year(); y < 0 || y >= 10000 {
			return enc.AppendJSONString(dst, "!ERROR:time.Time year outside of range [0,9999]")
		}
		dst = append(dst, '"')
		dst = t.AppendFormat(dst, "2006-01-02T15:04:05.999999999Z07:00")
		return append(dst, '"')
	default:
		return appendJSONAny(dst, v.Any())
	}
}

func appendJSONAny(dst []byte, x any) (out []byte) {
	n := len(dst)
	defer func() {
		if r := recover(); r != nil {
			out = enc.AppendJSONString(dst[:n], panicText(x, r))
		}
	}()
	switch x := x.(type) {
	case slog.Level:
		return enc.AppendJSONString(dst, x.String())
	case json.Marshaler:
	case error:
		return enc.AppendJSONString(dst, x.Error())
	}
	return appendJSONMarshal(dst, x)
}

type jsonEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var jsonEncoderPool = sync.Pool{New: func() any {
	j := &jsonEncoder{}
	j.enc = json.NewEncoder(&j.buf)
	j.enc.SetEscapeHTML(false)
	return j
}}

// appendJSONMarshal appends x as encoding/json marshals it (without HTML
// escaping); a marshalling error is written as a "!ERROR:..." string.
func appendJSONMarshal(dst []byte, x any) []byte {
	j := jsonEncoderPool.Get().(*jsonEncoder)
	defer func() {
		if j.buf.Cap() <= maxPooledBuffer {
			j.buf.Reset()
			jsonEncoderPool.Put(j)
		}
	}()
	if err := j.enc.Encode(x); err != nil {
		j.buf.Reset()
		return enc.AppendJSONString(dst, "!ERROR:"+err.Error())
	}
	return append(dst, bytes.TrimSuffix(j.buf.Bytes(), []byte{'\n'})...)
}
