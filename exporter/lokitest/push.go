package lokitest

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/snappy"

	"github.com/lokislog/lokislog/internal/lokiproto"
)

// outcome is how a push is to be answered.
type outcome struct {
	status     int
	msg        string
	header     http.Header
	accepted   int
	rejected   int
	rejections []Rejection
}

// pushRecord is the RequestInfo of a push being handled. It is recorded
// before the answer is sent (or the connection dropped), so that a client
// that got its answer finds its request in Requests.
type pushRecord struct {
	RequestInfo
	recorded bool
	gen      int // Server.gen when Push was numbered
}

// adoptLocked renumbers a push that arrived before a Reset and touches the
// server's state after it, so that push numbers stay unique since the Reset
// (and Pushes counts it). s.mu must be held.
func (s *Server) adoptLocked(p *pushRecord) {
	if p.gen != s.gen {
		s.pushes++
		p.Push, p.gen = s.pushes, s.gen
	}
}

func (s *Server) record(p *pushRecord) {
	if p.recorded {
		return
	}
	p.recorded = true
	s.mu.Lock()
	s.adoptLocked(p)
	s.requests = append(s.requests, p.RequestInfo)
	s.notifyLocked()
	s.mu.Unlock()
}

func (s *Server) servePush(w http.ResponseWriter, r *http.Request) {
	arrived := s.cfg.now()
	s.mu.Lock()
	s.inflight++
	s.pushes++
	info := &pushRecord{gen: s.gen, RequestInfo: RequestInfo{
		Push:            s.pushes,
		Time:            arrived,
		Method:          r.Method,
		Tenant:          r.Header.Get("X-Scope-OrgID"),
		ContentType:     r.Header.Get("Content-Type"),
		ContentEncoding: r.Header.Get("Content-Encoding"),
		UserAgent:       r.Header.Get("User-Agent"),
		Authorization:   r.Header.Get("Authorization") != "",
		Header:          r.Header.Clone(),
	}}
	delay, stopping := s.delay, s.stopping
	s.mu.Unlock()
	defer func() {
		s.record(info) // if a panic came first
		s.mu.Lock()
		s.inflight--
		if s.inflight == 0 {
			s.cond.Broadcast()
		}
		s.mu.Unlock()
	}()

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.answer(w, info, outcome{status: http.StatusMethodNotAllowed, msg: "method not allowed"})
		return
	}
	limit := s.cfg.limits.MaxBodySize
	body, readErr := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	info.BodySize = len(body)

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			info.Fault = "canceled"
			s.drop(w, info)
			return
		case <-stopping:
			t.Stop()
			info.Fault = "stopped"
			s.drop(w, info)
			return
		}
	}

	f, faulted := s.takeFault()
	if faulted && !f.afterStore {
		s.applyFault(w, info, f, outcome{})
		return
	}
	// Loki's authentication middleware answers before the push handler
	// looks at the body.
	out, ok := s.authenticate(r)
	if ok {
		switch {
		case readErr != nil:
			out = outcome{status: http.StatusBadRequest, msg: "read request body: " + readErr.Error()}
		case len(body) > limit:
			out = outcome{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body too large: over %d bytes", limit)}
		default:
			out = s.process(r, body, info)
		}
	}
	if faulted {
		s.applyFault(w, info, f, out)
		return
	}
	s.answer(w, info, out)
}

// applyFault answers (or drops) per f; done is the processing already done
// (for AfterStore faults), whose counts are kept.
func (s *Server) applyFault(w http.ResponseWriter, info *pushRecord, f fault, done outcome) {
	info.Fault = f.kind
	info.Accepted, info.Rejected, info.Rejections = done.accepted, done.rejected, done.rejections
	if f.kind == "drop" {
		s.drop(w, info)
		return
	}
	h := http.Header{}
	if f.retryAfter != "" {
		h.Set("Retry-After", f.retryAfter)
	}
	msg := f.body
	if msg == "" {
		msg = http.StatusText(f.status)
	}
	s.write(w, info, f.status, msg, h)
}

// drop records the request and closes the client's connection without an
// answer.
func (s *Server) drop(w http.ResponseWriter, info *pushRecord) {
	s.record(info)
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// Not hijackable (HTTP/2, or a recorder): net/http aborts the response
	// without logging when a handler panics with ErrAbortHandler.
	panic(http.ErrAbortHandler)
}

func (s *Server) answer(w http.ResponseWriter, info *pushRecord, out outcome) {
	info.Accepted, info.Rejected, info.Rejections = out.accepted, out.rejected, out.rejections
	s.write(w, info, out.status, out.msg, out.header)
}

func (s *Server) write(w http.ResponseWriter, info *pushRecord, status int, msg string, h http.Header) {
	for k, v := range h {
		w.Header()[k] = v
	}
	info.Status = status
	if status == http.StatusNoContent || (status >= 200 && status < 300 && msg == "") {
		s.record(info)
		w.WriteHeader(status)
		return
	}
	info.Response = msg
	s.record(info)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg+"\n")
}

// process decodes, validates and stores one authenticated push.
func (s *Server) process(r *http.Request, body []byte, info *pushRecord) outcome {
	req, out, ok := s.decode(r, body)
	if !ok {
		return out
	}
	return s.ingest(r.Header.Get("X-Scope-OrgID"), req, info)
}

// authenticate applies what sits in front of Loki's push handler: a
// gateway's credentials, then (with WithMultiTenant) the tenant header.
func (s *Server) authenticate(r *http.Request) (outcome, bool) {
	if out, ok := s.checkCredentials(r); !ok {
		return out, false
	}
	if s.cfg.multiTenant {
		tenant := r.Header.Get("X-Scope-OrgID")
		if tenant == "" {
			return outcome{status: http.StatusUnauthorized, msg: "no org id"}, false
		}
		if err := validTenantID(tenant); err != nil {
			return outcome{status: http.StatusBadRequest, msg: err.Error()}, false
		}
	}
	return outcome{}, true
}

func (s *Server) checkCredentials(r *http.Request) (outcome, bool) {
	unauthorized := outcome{status: http.StatusUnauthorized, msg: "unauthorized"}
	if s.cfg.basicAuth {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(s.cfg.basicUser)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(s.cfg.basicPass)) != 1 {
			unauthorized.header = http.Header{"Www-Authenticate": {`Basic realm="loki"`}}
			return unauthorized, false
		}
	}
	if s.cfg.bearer != "" {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+s.cfg.bearer)) != 1 {
			return unauthorized, false
		}
	}
	return outcome{}, true
}

// validTenantID applies dskit's tenant ID rules.
func validTenantID(t string) error {
	if strings.Contains(t, "|") {
		return errors.New("multiple org IDs present")
	}
	if len(t) > 150 {
		return fmt.Errorf("tenant ID is too long: max 150 characters")
	}
	if t == "." || t == ".." {
		return fmt.Errorf("tenant ID is '.' or '..'")
	}
	for _, c := range t {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!-_.*'()", c)
		if !ok {
			return fmt.Errorf("tenant ID %q contains unsupported character %q", t, c)
		}
	}
	return nil
}

// decode undoes the content encoding and decodes the push as Loki does.
func (s *Server) decode(r *http.Request, body []byte) (*lokiproto.PushRequest, outcome, bool) {
	limit := s.cfg.limits.MaxBodySize
	bad := func(format string, args ...any) (*lokiproto.PushRequest, outcome, bool) {
		return nil, outcome{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}, false
	}
	tooLarge := func(what string) (*lokiproto.PushRequest, outcome, bool) {
		return nil, outcome{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body too large: %s over %d bytes", what, limit)}, false
	}
	enc := r.Header.Get("Content-Encoding")
	var zr io.ReadCloser
	switch enc {
	case "", "snappy":
	case "gzip":
		gz, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return bad("gzip: %v", err)
		}
		zr = gz
	case "deflate":
		// Loki reads raw DEFLATE (RFC 1951), not zlib.
		zr = flate.NewReader(bytes.NewReader(body))
	default:
		return bad("Content-Encoding %q not supported", enc)
	}
	if zr != nil {
		plain, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
		_ = zr.Close()
		if err != nil {
			return bad("%s: %v", enc, err)
		}
		if len(plain) > limit {
			return tooLarge("decompressed")
		}
		body = plain
	}
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return bad("%v", err)
	}
	if ct == "application/json" {
		req, err := lokiproto.DecodeJSON(body)
		if err != nil {
			return bad("%v", err)
		}
		if out, over := s.overGRPC(req.Size()); over {
			return nil, out, false
		}
		return req, outcome{}, true
	}
	// Anything else is protobuf, always snappy-compressed, as in Loki. A
	// valid block decodes to at most maxSnappyRatio times its size: a header
	// announcing more is corrupt, refused before the decoder allocates it.
	if n, err := snappy.DecodedLen(body); err == nil && n <= limit && n > maxSnappyRatio*len(body) {
		return bad("snappy: corrupt input: %d bytes announced by a %d-byte block", n, len(body))
	}
	raw, err := lokiproto.DecodeSnappy(body, limit)
	if errors.Is(err, lokiproto.ErrTooLarge) {
		return tooLarge("decompressed")
	}
	if err != nil {
		return bad("%v", err)
	}
	req, err := lokiproto.DecodePushRequest(raw)
	if err != nil {
		return bad("decode protobuf push: %v", err)
	}
	if out, over := s.overGRPC(len(raw)); over {
		return nil, out, false
	}
	return req, outcome{}, true
}

// maxSnappyRatio bounds a snappy block's expansion: its densest element, a
// 3-byte copy, yields 64 bytes.
const maxSnappyRatio = 22

// overGRPC returns Loki's answer to a push of size bytes (encoded as the
// distributor forwards it) over the ingesters' gRPC message limit.
func (s *Server) overGRPC(size int) (outcome, bool) {
	max := s.cfg.limits.MaxGRPCMessageSize
	if max <= 0 || size <= max {
		return outcome{}, false
	}
	return outcome{status: http.StatusInternalServerError, msg: fmt.Sprintf(
		"rpc error: code = ResourceExhausted desc = grpc: received message larger than max (%d vs. %d)", size, max)}, true
}

// validEntry is an entry that passed the distributor's checks.
type validEntry struct {
	ts   time.Time
	line string
	meta map[string]string
}

type validStream struct {
	labels  map[string]string
	str     string
	entries []validEntry
}

// ingest applies Loki's validation to a decoded push and stores what passes.
// It works in Loki's two stages: the distributor's checks (labels, line and
// metadata limits, timestamps), which can fail the whole push before
// anything is stored, then the ingester's (stream limit, ordering window)
// while storing. The answer is composed as Loki composes it: the ingester's
// error for the last stream it handled if there is one, else the
// distributor's validation errors (grouped), else 204.
func (s *Server) ingest(tenant string, req *lokiproto.PushRequest, info *pushRecord) outcome {
	lim := s.cfg.limits
	// Stage 0, Loki's request parser: every label set must parse.
	parsed := make([][]lokiproto.LabelPair, len(req.Streams))
	for i, st := range req.Streams {
		ls, err := lokiproto.ParseLabels(st.Labels)
		if err != nil {
			return outcome{status: http.StatusBadRequest, msg: "couldn't parse labels: " + err.Error()}
		}
		parsed[i] = s.discoverServiceName(ls)
	}
	if len(req.Streams) == 0 {
		return outcome{status: http.StatusUnprocessableEntity, msg: "error at least one valid stream is required for ingestion"}
	}

	var out outcome
	reject := func(rj Rejection) {
		out.rejections = append(out.rejections, rj)
		if rj.Entries > 0 {
			out.rejected += rj.Entries
		} else {
			out.rejected++
		}
	}
	// Stage 1, the distributor.
	now := s.cfg.now()
	var valid []validStream
	var grouped groupedErrors
	for i, st := range req.Streams {
		if len(st.Entries) == 0 {
			continue
		}
		ls := parsed[i]
		str := lokiproto.FormatLabels(ls)
		if reason := validateLabels(ls, str, lim); reason != "" {
			grouped.add(reason)
			reject(Rejection{LabelString: str, Entries: len(st.Entries), Status: http.StatusBadRequest, Reason: reason})
			continue
		}
		vs := validStream{labels: make(map[string]string, len(ls)), str: str}
		for _, l := range ls {
			vs.labels[l.Name] = l.Value
		}
		for _, e := range st.Entries {
			if reason := validateEntry(&e, str, now, lim); reason != "" {
				grouped.add(reason)
				reject(Rejection{LabelString: str, Timestamp: e.Timestamp, Line: e.Line, Status: http.StatusBadRequest, Reason: reason})
				continue
			}
			meta, err := sanitizeMetadata(e.Metadata)
			if err != nil {
				// Loki fails the whole push, with a 500, storing nothing.
				return outcome{status: http.StatusInternalServerError, msg: err.Error()}
			}
			vs.entries = append(vs.entries, validEntry{ts: e.Timestamp, line: e.Line, meta: meta})
		}
		if len(vs.entries) > 0 {
			valid = append(valid, vs)
		}
	}

	// Stage 2, the ingester. Like Loki's, it answers for the last stream it
	// handled only: an earlier stream's error is overwritten, even by a
	// success.
	owner := tenant
	if owner == "" {
		owner = "fake" // Loki's tenant without auth_enabled
	}
	var last *outcome
	s.mu.Lock()
	s.adoptLocked(info)
	for _, vs := range valid {
		last = nil
		key := streamKey{tenant, vs.str}
		st := s.streams[key]
		if st == nil {
			if lim.MaxStreams > 0 && s.perTenant[tenant] >= lim.MaxStreams {
				msg := fmt.Sprintf("Maximum active stream limit exceeded when trying to create stream %s, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '%s'", vs.str, owner)
				reject(Rejection{LabelString: vs.str, Entries: len(vs.entries), Status: http.StatusTooManyRequests, Reason: msg})
				last = &outcome{status: http.StatusTooManyRequests, msg: msg}
				continue
			}
			st = &streamState{tenant: tenant, labels: vs.labels, str: vs.str}
			s.streams[key] = st
			s.order = append(s.order, st)
			s.perTenant[tenant]++
		}
		var behind strings.Builder
		ignored := 0
		for _, e := range vs.entries {
			if w := lim.OrderingWindow; w > 0 && !st.newest.IsZero() {
				if cutoff := st.newest.Add(-w); e.ts.Before(cutoff) {
					reason := fmt.Sprintf("entry too far behind, entry timestamp is: %s, oldest acceptable timestamp is: %s",
						e.ts.Format(time.RFC3339), cutoff.Format(time.RFC3339))
					reject(Rejection{LabelString: vs.str, Timestamp: e.ts, Line: e.line, Status: http.StatusBadRequest, Reason: reason})
					if ignored < maxReturnedStreamErrors {
						fmt.Fprintf(&behind, "entry with timestamp %s ignored, reason: '%s',\n", e.ts.String(), reason)
					}
					ignored++
					continue
				}
			}
			if e.ts.After(st.newest) || st.newest.IsZero() {
				st.newest = e.ts
			}
			st.entries = append(st.entries, len(s.entries))
			s.entries = append(s.entries, Entry{
				Tenant: tenant, Labels: st.labels, LabelString: st.str,
				Timestamp: e.ts, Line: e.line, Metadata: e.meta, Push: info.Push,
			})
			out.accepted++
		}
		if ignored > 0 {
			fmt.Fprintf(&behind, "user '%s', total ignored: %d out of %d for stream: %s", owner, ignored, len(vs.entries), vs.str)
			last = &outcome{status: http.StatusBadRequest, msg: behind.String()}
		}
	}
	if out.accepted > 0 {
		s.notifyLocked()
	}
	s.mu.Unlock()

	switch {
	case last != nil:
		out.status, out.msg = last.status, last.msg
	case len(grouped.msgs) > 0:
		out.status, out.msg = http.StatusBadRequest, grouped.String()
	default:
		out.status = http.StatusNoContent
	}
	return out
}

// maxReturnedStreamErrors is Loki's ingester max_returned_stream_errors: how
// many refused entries of a stream its answer lists.
const maxReturnedStreamErrors = 10

// groupedErrors collects validation messages as Loki's distributor does
// (util.GroupedErrors): its text is each distinct message once, joined by
// "; ", prefixed with "N errors like: " unless there is exactly one message
// that occurred once. Loki lists them in map order; this keeps first-seen
// order.
type groupedErrors struct {
	msgs  []string
	count map[string]int
}

func (g *groupedErrors) add(msg string) {
	if g.count == nil {
		g.count = make(map[string]int)
	}
	if g.count[msg] == 0 {
		g.msgs = append(g.msgs, msg)
	}
	g.count[msg]++
}

func (g *groupedErrors) String() string {
	var b strings.Builder
	for i, m := range g.msgs {
		if i > 0 {
			b.WriteString("; ")
		}
		if n := g.count[m]; len(g.msgs) > 1 || n > 1 {
			fmt.Fprintf(&b, "%d errors like: ", n)
		}
		b.WriteString(m)
	}
	return b.String()
}

// discoverServiceName adds service_name as Loki does, when configured.
func (s *Server) discoverServiceName(ls []lokiproto.LabelPair) []lokiproto.LabelPair {
	if len(s.cfg.discover) == 0 {
		return ls
	}
	for _, l := range ls {
		if l.Name == "service_name" {
			return ls
		}
	}
	value := "unknown_service"
search:
	for _, name := range s.cfg.discover {
		for _, l := range ls {
			if l.Name == name {
				value = l.Value
				break search
			}
		}
	}
	out := make([]lokiproto.LabelPair, 0, len(ls)+1)
	i := 0
	for i < len(ls) && ls[i].Name < "service_name" {
		out = append(out, ls[i])
		i++
	}
	out = append(out, lokiproto.LabelPair{Name: "service_name", Value: value})
	return append(out, ls[i:]...)
}

// validateLabels applies the distributor's label checks to a parsed, sorted
// label set and returns the reason it fails, or "".
func validateLabels(ls []lokiproto.LabelPair, str string, lim Limits) string {
	if len(ls) == 0 {
		return "error at least one label pair is required per stream"
	}
	n := len(ls)
	for _, l := range ls {
		if l.Name == "service_name" {
			n--
			break
		}
	}
	if lim.MaxLabelNames > 0 && n > lim.MaxLabelNames {
		return fmt.Sprintf("entry for stream '%s' has %d label names; limit %d", str, n, lim.MaxLabelNames)
	}
	last := ""
	for _, l := range ls {
		switch {
		case lim.MaxLabelNameLength > 0 && len(l.Name) > lim.MaxLabelNameLength:
			return fmt.Sprintf("stream '%s' has label name too long: '%s'", str, l.Name)
		case lim.MaxLabelValueLength > 0 && len(l.Value) > lim.MaxLabelValueLength:
			return fmt.Sprintf("stream '%s' has label value too long: '%s'", str, l.Value)
		case l.Name == last:
			return fmt.Sprintf("stream '%s' has duplicate label name: '%s'", str, l.Name)
		case strings.HasPrefix(l.Name, "__"):
			return fmt.Sprintf("stream '%s' has invalid label name: '%s' (names starting with __ are reserved)", str, l.Name)
		}
		last = l.Name
	}
	return ""
}

// validateEntry applies the distributor's entry checks, in Loki's order, and
// returns the reason e fails, or "".
func validateEntry(e *lokiproto.Entry, str string, now time.Time, lim Limits) string {
	if lim.MaxAge > 0 {
		if oldest := now.Add(-lim.MaxAge); e.Timestamp.Before(oldest) {
			return fmt.Sprintf("entry for stream '%s' has timestamp too old: %s, oldest acceptable timestamp is: %s",
				str, e.Timestamp.Format(time.RFC3339), oldest.Format(time.RFC3339))
		}
	}
	if lim.CreationGracePeriod > 0 && e.Timestamp.After(now.Add(lim.CreationGracePeriod)) {
		return fmt.Sprintf("entry for stream '%s' has timestamp too new: %s", str, e.Timestamp.Format(time.RFC3339))
	}
	if lim.MaxLineSize > 0 && len(e.Line) > lim.MaxLineSize {
		return fmt.Sprintf("Max entry size '%d' bytes exceeded for stream '%s' while adding an entry with length '%d' bytes",
			lim.MaxLineSize, str, len(e.Line))
	}
	if len(e.Metadata) > 0 {
		size := 0
		for _, m := range e.Metadata {
			size += len(m.Name) + len(m.Value)
		}
		if lim.MaxMetadataSize > 0 && size > lim.MaxMetadataSize {
			return fmt.Sprintf("stream '%s' has structured metadata too large: '%d' bytes, limit: '%d' bytes. Please see `limits_config.max_structured_metadata_size` or contact your Loki administrator to increase it.",
				str, size, lim.MaxMetadataSize)
		}
		if lim.MaxMetadataEntries > 0 && len(e.Metadata) > lim.MaxMetadataEntries {
			return fmt.Sprintf("stream '%s' has too many structured metadata labels: '%d', limit: '%d'. Please see `limits_config.max_structured_metadata_entries_count` or contact your Loki administrator to increase it.",
				str, len(e.Metadata), lim.MaxMetadataEntries)
		}
	}
	return ""
}

// sanitizeMetadata normalises metadata as Loki's distributor does: names
// through the OpenTelemetry label namer, invalid UTF-8 (and U+FFFD) in values
// replaced by spaces, empty values dropped; a later pair wins over an earlier
// one with the same (normalised) name.
func sanitizeMetadata(md []lokiproto.LabelPair) (map[string]string, error) {
	if len(md) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(md))
	for _, m := range md {
		name, err := lokiproto.NormalizeMetadataName(m.Name)
		if err != nil {
			return nil, err
		}
		v := m.Value
		if strings.ContainsRune(v, utf8.RuneError) {
			v = strings.Map(func(r rune) rune {
				if r == utf8.RuneError {
					return ' '
				}
				return r
			}, v)
		}
		if v == "" {
			delete(out, name)
			continue
		}
		out[name] = v
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
