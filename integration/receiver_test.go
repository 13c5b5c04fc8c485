package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// receiver is a reverse proxy on 127.0.0.1 in front of VictoriaLogs whose
// faults a test switches: forward (up), answer 503 (unavailable), or not
// listen at all (stopped: connection refused). Its 503s alternate between
// carrying Retry-After: 1 and carrying none.
//
// For JSON pushes it also checks order: every stream's seq numbers must
// increase across all pushes VictoriaLogs accepted, or, with byConn,
// across those of each client connection (memory mode sends two pushes at
// once over two connections, and only each one's order is promised).
type receiver struct {
	t    *testing.T
	addr string // 127.0.0.1:port, kept across stop and start
	rp   *httputil.ReverseProxy
	tr   *http.Transport

	byConn      atomic.Bool // check order per connection
	unavailable atomic.Bool
	forwarded   atomic.Int64 // pushes VictoriaLogs accepted (2xx)
	withRA      atomic.Int64 // 503s with Retry-After
	plain       atomic.Int64 // 503s without

	mu  sync.Mutex
	srv *http.Server  // nil while stopped; guarded by mu
	run chan struct{} // closed when srv's Serve returned; guarded by mu

	orderMu    sync.Mutex
	lastSeq    map[string]int // by stream labels; guarded by orderMu
	orderErrs  []string       // guarded by orderMu
	undecoded  int            // JSON pushes that could not be read; guarded by orderMu
	jsonPushes int            // guarded by orderMu
}

// newReceiver starts a receiver forwarding to target and stops it at the
// end of the test.
func newReceiver(t *testing.T, target string) *receiver {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, rp: httputil.NewSingleHostReverseProxy(u), tr: &http.Transport{}, lastSeq: map[string]int{}}
	r.rp.Transport = r.tr
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(func() {
		r.stop()
		r.tr.CloseIdleConnections()
	})
	return r
}

// url is the base URL to give lokislog: VictoriaLogs serves the Loki push
// path under /insert.
func (r *receiver) url() string { return "http://" + r.addr + "/insert" }

func (r *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	run := make(chan struct{})
	r.mu.Lock()
	r.srv, r.run = srv, run
	r.mu.Unlock()
	go func() { // stopped by stop
		defer close(run)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.t.Errorf("receiver: serve: %v", err)
		}
	}()
}

// stop closes the listener, lets requests in progress finish and closes
// every connection: clients get "connection refused" until start. A
// request is never cut after VictoriaLogs accepted it, which would make
// the client send it again (a duplicate that Loki removes and
// VictoriaLogs keeps), as Loki's own graceful shutdown does not.
func (r *receiver) stop() {
	r.mu.Lock()
	srv, run := r.srv, r.run
	r.srv = nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		r.t.Errorf("receiver: shutdown: %v", err)
		_ = srv.Close()
	}
	<-run
}

// start listens again on the same address.
func (r *receiver) start() {
	r.t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may linger for a moment after Close
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("receiver: listen on %s again: %v", r.addr, err)
	}
	r.serve(ln)
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.unavailable.Load() {
		if (r.withRA.Load()+r.plain.Load())%2 == 0 {
			r.withRA.Add(1)
			w.Header().Set("Retry-After", "1")
		} else {
			r.plain.Add(1)
		}
		http.Error(w, "service unavailable (test outage)", http.StatusServiceUnavailable)
		return
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := &statusWriter{ResponseWriter: w}
	r.rp.ServeHTTP(rec, req)
	if rec.status/100 == 2 {
		r.forwarded.Add(1)
		if req.Header.Get("Content-Type") == "application/json" {
			conn := ""
			if r.byConn.Load() {
				conn = req.RemoteAddr + " "
			}
			r.checkOrder(body, req.Header.Get("Content-Encoding"), conn)
		}
	}
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// checkOrder reads an accepted JSON push and records any stream whose seq
// numbers went backwards or repeated; conn prefixes the streams' keys.
func (r *receiver) checkOrder(body []byte, encoding, conn string) {
	r.orderMu.Lock()
	defer r.orderMu.Unlock()
	r.jsonPushes++
	if encoding == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			r.undecoded++
			return
		}
		if body, err = io.ReadAll(io.LimitReader(zr, 256<<20)); err != nil {
			r.undecoded++
			return
		}
	}
	var push struct {
		Streams []struct {
			Stream map[string]string   `json:"stream"`
			Values [][]json.RawMessage `json:"values"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(body, &push); err != nil {
		r.undecoded++
		return
	}
	for _, s := range push.Streams {
		key := conn + fmt.Sprint(s.Stream) // fmt sorts map keys
		for _, v := range s.Values {
			if len(v) < 2 {
				r.undecoded++
				continue
			}
			var line string
			if err := json.Unmarshal(v[1], &line); err != nil {
				r.undecoded++
				continue
			}
			seq, err := strconv.Atoi(parseLogfmt(line)["seq"])
			if err != nil {
				continue // not a record of these tests
			}
			if last, ok := r.lastSeq[key]; ok && seq <= last && len(r.orderErrs) < 20 {
				r.orderErrs = append(r.orderErrs, fmt.Sprintf("stream %s: seq %d after %d", key, seq, last))
			}
			r.lastSeq[key] = seq
		}
	}
}

// checkOrderOK fails the test when an accepted stream went out of order.
func (r *receiver) checkOrderOK(t *testing.T) {
	t.Helper()
	r.orderMu.Lock()
	defer r.orderMu.Unlock()
	if r.jsonPushes == 0 {
		t.Errorf("receiver: no JSON pushes to check order on")
	}
	if r.undecoded > 0 {
		t.Errorf("receiver: %d JSON pushes or values could not be read", r.undecoded)
	}
	for _, e := range r.orderErrs {
		t.Errorf("receiver: out of order: %s", e)
	}
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// deadURL returns a base URL on 127.0.0.1 where nothing listens, so every
// push fails with "connection refused".
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/insert"
}
