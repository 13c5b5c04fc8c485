// Package receiver is the benchmark suite's log receiver: an HTTP server on
// 127.0.0.1, run in its own process, that fully decodes every push it gets
// and counts what arrived.
//
// # Protocols
//
//   - Loki push, POST /loki/api/v1/push: protobuf (snappy block compressed,
//     decoded field by field with protowire after Loki's push.proto) or
//     JSON (optionally gzip or deflate encoded).
//   - OTLP/HTTP logs, POST /v1/logs: protobuf or JSON, optionally gzip
//     encoded, decoded with go.opentelemetry.io/proto/otlp.
//
// A push that does not decode is answered 400 and counted in
// [Stats].Failed; its entries are not counted.
//
// # Counting
//
// Every entry of an accepted push is counted. The workload gives each
// record a unique request_id ([workload.RequestID]); the receiver finds it
// in the line, the structured metadata, the stream labels or the OTLP body
// and attributes, and keeps a bitmap of the ids seen, so [Stats].Unique is
// the number of distinct records delivered and [Stats].Duplicates the
// entries that arrived more than once.
//
// # Control
//
//   - POST /control/reset?n=N: zero the counters and size the bitmap for
//     ids 0..N-1.
//   - POST /control/outage?for=10s: answer every push with 503 for that long
//     (the body is still read and its bytes counted as wire bytes).
//   - GET /control/stats: the counters as JSON ([Stats]).
package receiver

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/snappy"
	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/lokislog/lokislog/bench/internal/receiver/ctl"
	"github.com/lokislog/lokislog/bench/internal/workload"
)

// Paths the receiver serves.
const (
	LokiPushPath = "/loki/api/v1/push"
	OTLPLogsPath = "/v1/logs"
)

// MaxBodyBytes bounds the size of one push body, compressed and decoded.
const MaxBodyBytes = 64 << 20

// DefaultMaxID sizes the id bitmap before the first reset.
const DefaultMaxID = 1 << 20

// Stats are the receiver's counters since the last reset ([ctl.Stats]).
type Stats = ctl.Stats

// Server is the receiver. Its zero value is not usable; call [New].
type Server struct {
	mux *http.ServeMux

	mu   sync.RWMutex // guards seen; held for reading while counting
	seen []atomic.Uint64
	n    uint64

	requests, rejected, failed              atomic.Uint64
	entries, unique, dups, unidentified     atomic.Uint64
	bodyBytes, wireBytes, rejectedWireBytes atomic.Uint64
	lokiProtobuf, lokiJSON, otlp            atomic.Uint64
	lastNew, outageUntil                    atomic.Int64
}

// New returns a receiver with its bitmap sized for DefaultMaxID ids.
func New() *Server {
	s := &Server{mux: http.NewServeMux()}
	s.reset(DefaultMaxID)
	s.mux.HandleFunc("POST "+LokiPushPath, s.lokiPush)
	s.mux.HandleFunc("POST "+OTLPLogsPath, s.otlpPush)
	s.mux.HandleFunc("POST /control/reset", s.controlReset)
	s.mux.HandleFunc("POST /control/outage", s.controlOutage)
	s.mux.HandleFunc("GET /control/stats", s.controlStats)
	return s
}

// ServeHTTP serves the push and control endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:            s.requests.Load(),
		Rejected:            s.rejected.Load(),
		Failed:              s.failed.Load(),
		Entries:             s.entries.Load(),
		Unique:              s.unique.Load(),
		Duplicates:          s.dups.Load(),
		Unidentified:        s.unidentified.Load(),
		BodyBytes:           s.bodyBytes.Load(),
		WireBytes:           s.wireBytes.Load(),
		RejectedWireBytes:   s.rejectedWireBytes.Load(),
		LokiProtobuf:        s.lokiProtobuf.Load(),
		LokiJSON:            s.lokiJSON.Load(),
		OTLP:                s.otlp.Load(),
		LastNewUnixNano:     s.lastNew.Load(),
		OutageUntilUnixNano: s.outageUntil.Load(),
	}
}

// Reset zeroes the counters and sizes the id bitmap for ids 0..n-1.
func (s *Server) Reset(n uint64) { s.reset(n) }

// Outage makes the receiver answer pushes with 503 for d from now.
func (s *Server) Outage(d time.Duration) {
	s.outageUntil.Store(time.Now().Add(d).UnixNano())
}

func (s *Server) reset(n uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = make([]atomic.Uint64, (n+63)/64)
	s.n = n
	for _, c := range []*atomic.Uint64{&s.requests, &s.rejected, &s.failed, &s.entries, &s.unique, &s.dups,
		&s.unidentified, &s.bodyBytes, &s.wireBytes, &s.rejectedWireBytes, &s.lokiProtobuf, &s.lokiJSON, &s.otlp} {
		c.Store(0)
	}
	s.lastNew.Store(0)
	s.outageUntil.Store(0)
}

// counter counts the entries of one push; it is applied only when the
// whole push decoded.
type counter struct {
	ids          []uint64
	unidentified uint64
}

var counterPool = sync.Pool{New: func() any { return new(counter) }}

func getCounter() *counter { return counterPool.Get().(*counter) }

func putCounter(c *counter) {
	if cap(c.ids) > 1<<20 {
		return
	}
	c.ids, c.unidentified = c.ids[:0], 0
	counterPool.Put(c)
}

func (c *counter) add(id uint64, ok bool) {
	if ok {
		c.ids = append(c.ids, id)
	} else {
		c.unidentified++
	}
}

func (s *Server) apply(c *counter) {
	s.mu.RLock()
	var fresh, dups, unid uint64 = 0, 0, c.unidentified
	for _, id := range c.ids {
		if id >= s.n {
			unid++
			continue
		}
		bit := uint64(1) << (id % 64)
		if s.seen[id/64].Or(bit)&bit != 0 {
			dups++
		} else {
			fresh++
		}
	}
	s.mu.RUnlock()
	s.entries.Add(uint64(len(c.ids)) + c.unidentified)
	s.dups.Add(dups)
	s.unidentified.Add(unid)
	if fresh > 0 {
		s.unique.Add(fresh)
		s.lastNew.Store(time.Now().UnixNano())
	}
}

// wireSize estimates the bytes of the request on the wire: request line,
// headers and body.
func wireSize(r *http.Request, body int) uint64 {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4 // "GET / HTTP/1.1\r\n"
	n += len("Host: \r\n") + len(r.Host)
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	n += 2 // blank line
	// Chunked bodies carry a size line per chunk; ignored (small).
	return uint64(n + body)
}

// readBody reads the request body, bounded, and reports whether the
// receiver is in an outage (then it has already answered 503).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), ok bool) {
	var bp *[]byte
	var err error
	if n := r.ContentLength; n > 0 && n <= MaxBodyBytes {
		bp = getBuf(int(n))
		body = (*bp)[:n]
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	}
	release = func() {
		if bp != nil {
			putBuf(bp)
		}
	}
	if err == nil && len(body) > MaxBodyBytes {
		err = errors.New("body too large")
	}
	if err != nil {
		release()
		s.failed.Add(1)
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return nil, nil, false
	}
	if time.Now().UnixNano() < s.outageUntil.Load() {
		release()
		s.rejected.Add(1)
		s.rejectedWireBytes.Add(wireSize(r, len(body)))
		http.Error(w, "outage", http.StatusServiceUnavailable)
		return nil, nil, false
	}
	return body, release, true
}

func (s *Server) accept(r *http.Request, body []byte, c *counter) {
	s.requests.Add(1)
	s.bodyBytes.Add(uint64(len(body)))
	s.wireBytes.Add(wireSize(r, len(body)))
	s.apply(c)
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	s.failed.Add(1)
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// decompress undoes a Content-Encoding of gzip or deflate, bounded.
func decompress(r *http.Request, body []byte) ([]byte, error) {
	var rd io.Reader
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
		return body, nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		rd = zr
	case "deflate":
		rd = flate.NewReader(bytes.NewReader(body))
	default:
		return nil, fmt.Errorf("unsupported content encoding %q", enc)
	}
	out, err := io.ReadAll(io.LimitReader(rd, MaxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if len(out) > MaxBodyBytes {
		return nil, errors.New("decompressed body too large")
	}
	return out, nil
}

func isJSON(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return len(ct) >= 16 && ct[:16] == "application/json"
}

func (s *Server) lokiPush(w http.ResponseWriter, r *http.Request) {
	body, release, ok := s.readBody(w, r)
	if !ok {
		return
	}
	defer release()
	c := getCounter()
	defer putCounter(c)
	var err error
	if isJSON(r) {
		err = decodeLokiJSON(r, body, c)
	} else {
		err = decodeLokiProtobuf(body, c)
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	n := uint64(len(c.ids)) + c.unidentified
	if isJSON(r) {
		s.lokiJSON.Add(n)
	} else {
		s.lokiProtobuf.Add(n)
	}
	s.accept(r, body, c)
	w.WriteHeader(http.StatusNoContent)
}

// decodeLokiProtobuf decodes a snappy-compressed Loki PushRequest and
// counts its entries in c.
func decodeLokiProtobuf(body []byte, c *counter) error {
	n, err := snappy.DecodedLen(body)
	if err != nil {
		return fmt.Errorf("snappy: %w", err)
	}
	if n > MaxBodyBytes {
		return errors.New("decoded body too large")
	}
	bp := getBuf(n)
	defer putBuf(bp)
	raw, err := snappy.Decode((*bp)[:cap(*bp)], body)
	if err != nil {
		return fmt.Errorf("snappy: %w", err)
	}
	var (
		streams          int
		labelID          uint64
		labelOK          bool
		stream, entryNum int
	)
	err = walkLokiPush(raw, func(i int, labels []byte) error {
		if len(labels) == 0 {
			return errors.New("no labels")
		}
		streams++
		stream, entryNum = i, 0
		labelID, labelOK = workload.ParseID(labels)
		return nil
	}, func(e *lokiEntry) error {
		if e.Seconds == 0 && e.Nanos == 0 {
			return fmt.Errorf("stream %d entry %d: no timestamp", stream, entryNum)
		}
		entryNum++
		id, ok := workload.ParseID(e.Line)
		for k := 0; !ok && k < len(e.Meta); k++ {
			id, ok = workload.ParseID(e.Meta[k].Value)
		}
		if !ok {
			id, ok = labelID, labelOK
		}
		c.add(id, ok)
		return nil
	})
	if err != nil {
		return fmt.Errorf("protobuf: %w", err)
	}
	if streams == 0 {
		return errors.New("no streams")
	}
	return nil
}

// bufPool holds decode and body buffers.
var bufPool sync.Pool

func getBuf(n int) *[]byte {
	if bp, ok := bufPool.Get().(*[]byte); ok && cap(*bp) >= n {
		return bp
	}
	b := make([]byte, n)
	return &b
}

func putBuf(bp *[]byte) {
	if cap(*bp) <= MaxBodyBytes/4 {
		bufPool.Put(bp)
	}
}

// lokiJSONPush is Loki's JSON push body.
type lokiJSONPush struct {
	Streams []struct {
		Stream map[string]string   `json:"stream"`
		Values [][]json.RawMessage `json:"values"`
	} `json:"streams"`
}

func decodeLokiJSON(r *http.Request, body []byte, c *counter) error {
	raw, err := decompress(r, body)
	if err != nil {
		return err
	}
	var req lokiJSONPush
	if err := json.Unmarshal(raw, &req); err != nil {
		return fmt.Errorf("json: %w", err)
	}
	if len(req.Streams) == 0 {
		return errors.New("no streams")
	}
	for i, st := range req.Streams {
		if len(st.Stream) == 0 {
			return fmt.Errorf("stream %d: no labels", i)
		}
		var labelID uint64
		var labelOK bool
		for _, v := range st.Stream {
			if labelID, labelOK = workload.ParseIDString(v); labelOK {
				break
			}
		}
		for j, v := range st.Values {
			if len(v) < 2 || len(v) > 3 {
				return fmt.Errorf("stream %d value %d: want [ts, line] or [ts, line, metadata]", i, j)
			}
			var ts, line string
			if err := json.Unmarshal(v[0], &ts); err != nil {
				return fmt.Errorf("stream %d value %d: timestamp: %w", i, j, err)
			}
			if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
				return fmt.Errorf("stream %d value %d: timestamp: %w", i, j, err)
			}
			if err := json.Unmarshal(v[1], &line); err != nil {
				return fmt.Errorf("stream %d value %d: line: %w", i, j, err)
			}
			id, ok := workload.ParseIDString(line)
			if len(v) == 3 {
				var meta map[string]string
				if err := json.Unmarshal(v[2], &meta); err != nil {
					return fmt.Errorf("stream %d value %d: metadata: %w", i, j, err)
				}
				for _, mv := range meta {
					if ok {
						break
					}
					id, ok = workload.ParseIDString(mv)
				}
			}
			if !ok {
				id, ok = labelID, labelOK
			}
			c.add(id, ok)
		}
	}
	return nil
}

func (s *Server) otlpPush(w http.ResponseWriter, r *http.Request) {
	body, release, ok := s.readBody(w, r)
	if !ok {
		return
	}
	defer release()
	raw, err := decompress(r, body)
	if err != nil {
		s.fail(w, err)
		return
	}
	var req collogs.ExportLogsServiceRequest
	if isJSON(r) {
		err = protojson.Unmarshal(raw, &req)
	} else {
		err = proto.Unmarshal(raw, &req)
	}
	if err != nil {
		s.fail(w, fmt.Errorf("otlp: %w", err))
		return
	}
	var c counter
	for _, rl := range req.GetResourceLogs() {
		for _, sl := range rl.GetScopeLogs() {
			for _, lr := range sl.GetLogRecords() {
				id, ok := otlpID(lr.GetBody())
				for _, kv := range lr.GetAttributes() {
					if ok {
						break
					}
					id, ok = otlpID(kv.GetValue())
				}
				c.add(id, ok)
			}
		}
	}
	s.otlp.Add(uint64(len(c.ids)) + c.unidentified)
	s.accept(r, body, &c)
	if isJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("{}"))
		return
	}
	resp, _ := proto.Marshal(&collogs.ExportLogsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(resp)
}

func otlpID(v *commonpb.AnyValue) (uint64, bool) {
	if v == nil {
		return 0, false
	}
	switch x := v.Value.(type) {
	case *commonpb.AnyValue_StringValue:
		return workload.ParseIDString(x.StringValue)
	case *commonpb.AnyValue_KvlistValue:
		for _, kv := range x.KvlistValue.GetValues() {
			if id, ok := otlpID(kv.GetValue()); ok {
				return id, true
			}
		}
	case *commonpb.AnyValue_ArrayValue:
		for _, e := range x.ArrayValue.GetValues() {
			if id, ok := otlpID(e); ok {
				return id, true
			}
		}
	}
	return 0, false
}

func (s *Server) controlReset(w http.ResponseWriter, r *http.Request) {
	n := uint64(DefaultMaxID)
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		n, err = strconv.ParseUint(v, 10, 64)
		if err != nil || n > 1<<32 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
	}
	s.reset(n)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) controlOutage(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("for"))
	if err != nil || d < 0 {
		http.Error(w, "bad duration in ?for=", http.StatusBadRequest)
		return
	}
	s.Outage(d)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) controlStats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.Stats())
}

// popcount is used by tests to check the bitmap against Unique.
func (s *Server) popcount() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int
	for i := range s.seen {
		n += bits.OnesCount64(s.seen[i].Load())
	}
	return uint64(n)
}
