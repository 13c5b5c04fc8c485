package lokitest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// PushPath is the path Loki takes pushes on.
const PushPath = "/loki/api/v1/push"

// Errors returned by [Server] methods.
var (
	// ErrClosed is returned by Start and Restart after Close, and wrapped
	// by WaitEntries and WaitRequests when Close ends their wait.
	ErrClosed = errors.New("lokitest: server closed")
)

// Server is a fake Loki. Its methods are safe for concurrent use.
type Server struct {
	cfg     config
	handler http.Handler

	// lmu guards the listener state. It is never held while mu is wanted by
	// a handler that stop waits for.
	lmu       sync.Mutex
	addr      string        // fixed by the first start
	srv       *http.Server  // nil when not listening
	serveDone chan struct{} // closed when srv.Serve returned
	closed    bool

	mu   sync.Mutex
	cond *sync.Cond // on mu; signalled when inflight drops to 0
	// inflight counts push handlers running, so that Stop and Close can wait
	// for them.
	inflight int
	// stopping is closed by Stop and Close to cut delays short; Start
	// replaces it.
	stopping chan struct{}
	// changed is closed and replaced whenever entries or requests are added
	// or Reset is called; waiters select on it.
	changed chan struct{}

	pushes int
	// gen counts Resets; a push numbered in an earlier generation is
	// renumbered when it records or stores after the Reset.
	gen int
	// done is set by Close, under mu, so that waits end (closed, under
	// lmu, is what Start checks).
	done      bool
	entries   []Entry // Labels maps shared per stream: clone before handing out
	requests  []RequestInfo
	streams   map[streamKey]*streamState
	order     []*streamState
	perTenant map[string]int

	faults     []fault // one-shot faults, first in first out
	persistent *fault
	delay      time.Duration
}

type streamKey struct{ tenant, labels string }

type streamState struct {
	tenant  string
	labels  map[string]string
	str     string
	newest  time.Time
	entries []int // indexes into Server.entries
}

// New creates a server and starts it listening on 127.0.0.1 at a free port
// (see [WithAddr]). It returns an error for an invalid option or when it
// cannot listen.
func New(opts ...Option) (*Server, error) {
	s, err := NewUnstarted(opts...)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// NewServer is [New] for tests and examples: it panics when New fails, as
// net/http/httptest.NewServer does. Call Close when done.
func NewServer(opts ...Option) *Server {
	s, err := New(opts...)
	if err != nil {
		panic(err)
	}
	return s
}

// NewUnstarted creates a server that does not listen until [Server.Start].
// Its [Server.Handler] works at once, for mounting in another server or for
// calling directly (for example with httptest.NewRecorder inside a
// testing/synctest bubble).
func NewUnstarted(opts ...Option) (*Server, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		stopping:  make(chan struct{}),
		changed:   make(chan struct{}),
		streams:   make(map[streamKey]*streamState),
		perTenant: make(map[string]int),
	}
	s.cond = sync.NewCond(&s.mu)
	mux := http.NewServeMux()
	mux.HandleFunc(PushPath, s.servePush)
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ready\n"))
	})
	s.handler = mux
	return s, nil
}

// Handler returns the server's HTTP handler: pushes on [PushPath] and a
// readiness probe on /ready. It records into s like the server's own
// listener does, so it can be mounted in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// URL returns the server's base URL, such as "http://127.0.0.1:41234"; the
// push URL is URL()+[PushPath]. It is "" before the first Start. It stays
// the same across Stop and Restart.
func (s *Server) URL() string {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.addr == "" {
		return ""
	}
	return "http://" + s.addr
}

// Start starts listening. The first Start takes the configured address (a
// free port by default); later ones, after [Server.Stop], listen again on
// the same address. Starting a running server does nothing.
func (s *Server) Start() error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.srv != nil {
		return nil
	}
	addr := s.cfg.addr
	if s.addr != "" {
		addr = s.addr
	}
	ln, err := listen(addr, s.addr != "")
	if err != nil {
		return fmt.Errorf("lokitest: listen on %s: %w", addr, err)
	}
	s.addr = ln.Addr().String()
	s.mu.Lock()
	select {
	case <-s.stopping:
		s.stopping = make(chan struct{})
	default:
	}
	s.mu.Unlock()
	srv := &http.Server{
		Handler:           s.handler,
		ErrorLog:          s.cfg.errorLog,
		ReadHeaderTimeout: 30 * time.Second,
	}
	done := make(chan struct{})
	s.srv, s.serveDone = srv, done
	// The serving goroutine is owned by s; stopLocked stops it and waits.
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return nil
}

// listen listens on addr. When again is true (a restart on a fixed port), it
// retries for a short while, in case the port is briefly unavailable.
func listen(addr string, again bool) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil || !again {
		return ln, err
	}
	deadline := time.Now().Add(2 * time.Second)
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		ln, err = net.Listen("tcp", addr)
	}
	return ln, err
}

// Restart listens again on the same address after [Server.Stop]; it is
// [Server.Start] under the name that reads well in an outage test. It fails
// if the port was taken in the meantime.
func (s *Server) Restart() error { return s.Start() }

// Stop stops listening and closes every connection, so that pushes fail as
// if Loki were not running ("connection refused"). Pushes being handled are
// cut short (a [Server.SetDelay] wait ends at once) and Stop waits for them.
// Recorded data is kept. [Server.Restart] listens again on the same address.
//
// On Windows, connecting to a closed port on the loopback interface takes
// about two seconds before it is refused; on Linux and macOS it is immediate.
func (s *Server) Stop() {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	s.mu.Lock()
	select {
	case <-s.stopping:
	default:
		close(s.stopping)
	}
	s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
		<-s.serveDone
		s.srv, s.serveDone = nil, nil
	}
	s.mu.Lock()
	for s.inflight > 0 {
		s.cond.Wait()
	}
	s.mu.Unlock()
}

// Close stops the server for good and waits for everything it started. The
// recorded data stays readable. Close is idempotent.
func (s *Server) Close() {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	s.closed = true
	s.stopLocked()
	s.mu.Lock()
	if !s.done {
		s.done = true
		s.notifyLocked()
	}
	s.mu.Unlock()
}

// Entry is one accepted log entry.
type Entry struct {
	// Tenant is the X-Scope-OrgID header the entry came with ("" without).
	// Real Loki without auth_enabled stores everything under "fake"; the
	// fake keeps the header so that tests can check it.
	Tenant string
	// Labels is the stream's label set as Loki stores it: empty values
	// dropped (and service_name added with [WithServiceNameDiscovery]).
	// Entries of one stream returned by one call share this map.
	Labels map[string]string
	// LabelString is Labels in Loki's canonical form: {a="b", c="d"}.
	LabelString string
	// Timestamp is the entry's time (UTC), to the nanosecond.
	Timestamp time.Time
	// Line is the log line, byte for byte.
	Line string
	// Metadata is the structured metadata as Loki stores it: names
	// normalised (every run of characters outside [a-zA-Z0-9], underscores
	// included, becomes one "_"; a leading digit gets the prefix "key_"),
	// empty values dropped, invalid UTF-8 in values replaced by spaces. It is
	// nil when the entry has none.
	Metadata map[string]string
	// Push is the number of the push that delivered the entry: 1 for the
	// first push the server saw (since the last Reset), and so on. It equals
	// the Push field of that push's [RequestInfo].
	Push int
}

// Stream is the entries of one tenant and label set, in arrival order.
type Stream struct {
	Tenant      string
	Labels      map[string]string
	LabelString string
	Entries     []Entry
}

// Rejection is one entry (or a whole stream's entries) that a push carried
// and the server refused.
type Rejection struct {
	// LabelString is the stream's label set (canonical when it parsed).
	LabelString string
	// Timestamp and Line identify the entry; both are zero when the whole
	// stream was refused (Entries then says how many entries it had).
	Timestamp time.Time
	Line      string
	Entries   int
	// Status is the status this rejection calls for: 400 or 429. The push's
	// answer may still be another one: Loki reports only the last stream's
	// ingester error (see the package documentation).
	Status int
	// Reason is Loki's message for it.
	Reason string
}

// RequestInfo describes one push request and how the server answered.
type RequestInfo struct {
	// Push is the request's number: 1 for the first push since the last
	// Reset (in order of arrival).
	Push int
	// Time is when the request arrived (by the server's clock).
	Time   time.Time
	Method string
	// Tenant is the X-Scope-OrgID header.
	Tenant          string
	ContentType     string
	ContentEncoding string
	UserAgent       string
	// Authorization reports whether an Authorization header was present.
	Authorization bool
	// Header is a copy of all request headers, Authorization included.
	Header http.Header
	// BodySize is the number of body bytes read (compressed size).
	BodySize int
	// Status is the status answered; 0 when no answer was sent (a dropped
	// connection, or the client gave up during a delay).
	Status int
	// Response is the answer's body text (empty for 204).
	Response string
	// Fault names the scripted fault that decided the answer: "" for none,
	// "fail" ([Server.FailNext]), "down" ([Server.FailFor],
	// [Server.SetDown]), "drop" ([Server.DropNext]), "canceled" (the client
	// went away during a [Server.SetDelay] wait), "stopped" (Stop or Close
	// during that wait).
	Fault string
	// Accepted and Rejected count the request's entries that were stored and
	// refused.
	Accepted, Rejected int
	// Rejections lists what was refused and why.
	Rejections []Rejection
}

// Pushes returns the number of push requests that arrived since the last
// Reset, answered or not (a push that arrived before the Reset and recorded
// or stored something after it counts as one after it).
func (s *Server) Pushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushes
}

// Requests returns the push requests that have finished (been answered or
// dropped), in the order they arrived. A request is recorded just before its
// answer is sent or its connection dropped, so a client that has its answer
// finds its request here.
func (s *Server) Requests() []RequestInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RequestInfo, len(s.requests))
	for i, r := range s.requests {
		out[i] = r
		out[i].Header = r.Header.Clone()
		out[i].Rejections = append([]Rejection(nil), r.Rejections...)
	}
	slices.SortStableFunc(out, func(a, b RequestInfo) int { return a.Push - b.Push })
	return out
}

// Entries returns every accepted entry in arrival order.
func (s *Server) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entriesLocked()
}

func (s *Server) entriesLocked() []Entry {
	out := make([]Entry, len(s.entries))
	labels := make(map[streamKey]map[string]string)
	for i, e := range s.entries {
		out[i] = e
		key := streamKey{e.Tenant, e.LabelString}
		m, ok := labels[key]
		if !ok {
			m = maps.Clone(e.Labels)
			labels[key] = m
		}
		out[i].Labels = m
		out[i].Metadata = maps.Clone(e.Metadata)
	}
	return out
}

// Streams returns the accepted entries grouped by tenant and label set, in
// the order the streams were first seen.
func (s *Server) Streams() []Stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Stream, 0, len(s.order))
	for _, st := range s.order {
		if len(st.entries) == 0 {
			continue
		}
		labels := maps.Clone(st.labels)
		ss := Stream{Tenant: st.tenant, Labels: labels, LabelString: st.str, Entries: make([]Entry, len(st.entries))}
		for i, idx := range st.entries {
			e := s.entries[idx]
			e.Labels = labels
			e.Metadata = maps.Clone(e.Metadata)
			ss.Entries[i] = e
		}
		out = append(out, ss)
	}
	return out
}

// WaitEntries waits until at least n entries are stored and returns all of
// them. When ctx ends first, or the server is closed (nothing can arrive any
// more), it returns the entries stored so far and an error saying how many
// of the n arrived, wrapping ctx's error or [ErrClosed]; give ctx a
// deadline. It keeps waiting across [Server.Stop] and [Server.Restart].
func (s *Server) WaitEntries(ctx context.Context, n int) ([]Entry, error) {
	for {
		s.mu.Lock()
		got := len(s.entries)
		if got >= n || s.done {
			out := s.entriesLocked()
			s.mu.Unlock()
			if got >= n {
				return out, nil
			}
			return out, fmt.Errorf("lokitest: %d of %d entries arrived: %w", got, n, ErrClosed)
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			s.mu.Lock()
			got = len(s.entries)
			out := s.entriesLocked()
			s.mu.Unlock()
			return out, fmt.Errorf("lokitest: %d of %d entries arrived: %w", got, n, ctx.Err())
		}
	}
}

// WaitRequests waits until at least n push requests have been answered (or
// dropped) and returns them. When ctx ends first, or the server is closed,
// it returns those finished so far and an error saying how many of the n
// finished, wrapping ctx's error or [ErrClosed].
func (s *Server) WaitRequests(ctx context.Context, n int) ([]RequestInfo, error) {
	for {
		s.mu.Lock()
		got, done := len(s.requests), s.done
		ch := s.changed
		s.mu.Unlock()
		if got >= n {
			return s.Requests(), nil
		}
		if done {
			out := s.Requests()
			return out, fmt.Errorf("lokitest: %d of %d requests finished: %w", len(out), n, ErrClosed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			out := s.Requests()
			return out, fmt.Errorf("lokitest: %d of %d requests finished: %w", len(out), n, ctx.Err())
		}
	}
}

// Reset forgets every entry, stream and request, and the push count; each
// stream's ordering window starts afresh. A push being handled during the
// Reset is recorded afterwards, with a number after the Reset's. Scripted faults and the delay are
// kept (see [Server.ClearFaults]).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pushes = 0
	s.gen++
	s.entries = nil
	s.requests = nil
	s.streams = make(map[streamKey]*streamState)
	s.order = nil
	s.perTenant = make(map[string]int)
	s.notifyLocked()
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
