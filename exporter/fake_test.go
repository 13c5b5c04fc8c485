package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/grafana/loki/pkg/push"
	"github.com/klauspost/compress/s2"
)

// pushed is one request as the fake Loki received it.
type pushed struct {
	Header http.Header
	Path   string
	Query  string
	Size   int // body bytes as received
	Batch  *Batch
	At     time.Time
}

// reply is what the fake Loki answers to one request.
type reply struct {
	status int               // 0 means 204
	header map[string]string // response headers
	body   string
	hangup bool // close the connection without answering
	hang   bool // answer nothing until the client gives up
}

// fakeLoki is a minimal push receiver for these tests: it decodes every
// request (protobuf+snappy or JSON, plain or gzip), records it and answers
// as its script says. (exporter/lokitest is the full fake; these tests do
// not depend on it.)
type fakeLoki struct {
	t      testing.TB
	script func(n int, p *pushed) reply // n counts requests from 0

	mu   sync.Mutex
	reqs []*pushed
}

func newFake(t testing.TB, script func(n int, p *pushed) reply) *fakeLoki {
	if script == nil {
		script = func(int, *pushed) reply { return reply{} }
	}
	return &fakeLoki{t: t, script: script}
}

// replies returns a script answering the i-th request with rs[i] and every
// later one with 204.
func replies(rs ...reply) func(int, *pushed) reply {
	return func(n int, _ *pushed) reply {
		if n < len(rs) {
			return rs[n]
		}
		return reply{}
	}
}

// always returns a script that answers every request with r.
func always(r reply) func(int, *pushed) reply {
	return func(int, *pushed) reply { return r }
}

// serve starts the fake on 127.0.0.1 and returns its URL.
func (f *fakeLoki) serve() string {
	srv := httptest.NewServer(f)
	f.t.Cleanup(srv.Close)
	return srv.URL
}

func (f *fakeLoki) requests() []*pushed {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*pushed(nil), f.reqs...)
}

// accepted returns the lines of every request answered with 2xx, in order.
func (f *fakeLoki) lines(which func(n int) bool) []string {
	var out []string
	for n, p := range f.requests() {
		if which(n) {
			out = append(out, batchLines(p.Batch)...)
		}
	}
	return out
}

func (f *fakeLoki) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away
	}
	p := &pushed{Header: r.Header.Clone(), Path: r.URL.Path, Query: r.URL.RawQuery, Size: len(body), At: time.Now()}
	p.Batch, err = decodePush(r.Header, body)
	if err != nil {
		f.t.Errorf("fake loki: %v", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, p)
	f.mu.Unlock()

	rep := f.script(n, p)
	switch {
	case rep.hangup:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			f.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
		return
	case rep.hang:
		<-r.Context().Done()
		return
	}
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	if rep.status == 0 {
		rep.status = http.StatusNoContent
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

// decodePush decodes a push body as Loki would.
func decodePush(h http.Header, body []byte) (*Batch, error) {
	b := &Batch{Tenant: h.Get("X-Scope-OrgID")}
	switch ct := h.Get("Content-Type"); ct {
	case "application/x-protobuf":
		if h.Get("Content-Encoding") != "" {
			return nil, fmt.Errorf("protobuf with Content-Encoding %q", h.Get("Content-Encoding"))
		}
		raw, err := s2.Decode(nil, body)
		if err != nil {
			return nil, fmt.Errorf("snappy: %w", err)
		}
		var req push.PushRequest
		if err := req.Unmarshal(raw); err != nil {
			return nil, fmt.Errorf("protobuf: %w", err)
		}
		for _, ps := range req.Streams {
			s := Stream{Labels: ps.Labels}
			for _, pe := range ps.Entries {
				e := Entry{Timestamp: pe.Timestamp.UnixNano(), Line: pe.Line}
				for _, m := range pe.StructuredMetadata {
					e.Metadata = append(e.Metadata, LabelPair{Name: m.Name, Value: m.Value})
				}
				s.Entries = append(s.Entries, e)
			}
			b.Streams = append(b.Streams, s)
		}
	case "application/json":
		if h.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				return nil, fmt.Errorf("gzip: %w", err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				return nil, fmt.Errorf("gzip: %w", err)
			}
		}
		var req struct {
			Streams []struct {
				Stream map[string]string `json:"stream"`
				Values [][]json.RawMessage
			} `json:"streams"`
		}
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("json: %w", err)
		}
		for _, js := range req.Streams {
			s := Stream{Labels: fmt.Sprint(js.Stream)} // map[k:v ...], sorted
			for _, v := range js.Values {
				var ts, line string
				if len(v) < 2 || json.Unmarshal(v[0], &ts) != nil || json.Unmarshal(v[1], &line) != nil {
					return nil, fmt.Errorf("json: bad value %s", v)
				}
				n, err := strconv.ParseInt(ts, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("json: timestamp: %w", err)
				}
				e := Entry{Timestamp: n, Line: line}
				if len(v) > 2 {
					var meta map[string]string
					if err := json.Unmarshal(v[2], &meta); err != nil {
						return nil, fmt.Errorf("json: metadata: %w", err)
					}
					for k, v := range meta {
						e.Metadata = append(e.Metadata, LabelPair{Name: k, Value: v})
					}
				}
				s.Entries = append(s.Entries, e)
			}
			b.Streams = append(b.Streams, s)
		}
	default:
		return nil, fmt.Errorf("unexpected Content-Type %q", ct)
	}
	return b, nil
}

// batchLines returns b's lines in order.
func batchLines(b *Batch) []string {
	var out []string
	for _, s := range b.Streams {
		for _, e := range s.Entries {
			out = append(out, e.Line)
		}
	}
	return out
}

// testBatch returns a batch of n entries spread over streams of up to per
// entries each, with lines "line 0", "line 1", ...
func testBatch(n, per int) *Batch {
	b := &Batch{}
	for i := range n {
		if i%per == 0 {
			b.Streams = append(b.Streams, Stream{Labels: `{app="test", part="` + strconv.Itoa(i/per) + `"}`})
		}
		s := &b.Streams[len(b.Streams)-1]
		s.Entries = append(s.Entries, Entry{
			Timestamp: 1751284800000000000 + int64(i),
			Line:      "line " + strconv.Itoa(i),
			Metadata:  []LabelPair{{Name: "i", Value: strconv.Itoa(i)}},
		})
	}
	return b
}

// pipeNet is an in-memory network for tests in a synctest bubble: its
// DialContext hands one end of a net.Pipe to the server's Accept. Dials fail
// with a connection error while refuse is above zero.
type pipeNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once

	mu     sync.Mutex
	refuse int
	dials  int
}

func newPipeNet() *pipeNet {
	return &pipeNet{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (p *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pipeNet) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *pipeNet) Addr() net.Addr { return pipeAddr{} }

func (p *pipeNet) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	p.mu.Lock()
	p.dials++
	refuse := p.refuse > 0
	if refuse {
		p.refuse--
	}
	p.mu.Unlock()
	if refuse {
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: fmt.Errorf("connection refused")}
	}
	client, server := net.Pipe()
	select {
	case p.conns <- server:
		return client, nil
	case <-p.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// servePipe serves f on an in-memory network and returns an HTTP client
// that reaches it. Both stop when the test ends.
func (f *fakeLoki) servePipe(t *testing.T) (*http.Client, *pipeNet) {
	pn := newPipeNet()
	srv := &http.Server{Handler: f}
	go srv.Serve(pn)
	tr := &http.Transport{DialContext: pn.DialContext}
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	return &http.Client{Transport: tr}, pn
}

// discardLog returns a logger for servers whose errors a test expects.
func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
