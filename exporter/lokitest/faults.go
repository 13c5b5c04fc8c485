package lokitest

import (
	"fmt"
	"net/http"
	"time"
)

// fault is one scripted misbehaviour.
type fault struct {
	kind       string // "fail", "down" or "drop"
	status     int
	retryAfter string
	body       string
	afterStore bool
}

// FaultOption refines a scripted fault.
type FaultOption func(*fault)

// RetryAfter sets the Retry-After header of a scripted failure: a number of
// seconds ("5") or an HTTP date (see [RetryAfterDate]). The value is sent as
// given, so malformed values can be tested too.
func RetryAfter(v string) FaultOption {
	return func(f *fault) { f.retryAfter = v }
}

// RetryAfterDate formats t as an HTTP date for [RetryAfter].
func RetryAfterDate(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// Body sets the body text of a scripted failure. Default: the status text.
func Body(text string) FaultOption {
	return func(f *fault) { f.body = text }
}

// AfterStore makes a scripted fault happen after the push was processed as
// usual: its entries are stored, then the answer is replaced by the fault
// (an error status, or a dropped connection). It simulates a Loki that took
// the data but whose answer was lost, so a client that retries sends
// duplicates.
func AfterStore() FaultOption {
	return func(f *fault) { f.afterStore = true }
}

func checkStatus(status int) {
	if status < 200 || status > 999 {
		// net/http would panic later, on the server's goroutine (or, for a
		// 1xx, send it as an interim response followed by a 200); fail here,
		// on the caller's, with a clearer message.
		panic(fmt.Sprintf("lokitest: invalid HTTP status %d for an answer (want 200-999)", status))
	}
}

// FailNext makes the next n pushes answer status without storing anything.
// One-shot faults (FailNext, DropNext) queue up and are used first in, first
// out, before any [Server.FailFor] fault. A 2xx status is allowed: the
// push is then "accepted" and lost. It panics for a status outside 200-999.
func (s *Server) FailNext(n int, status int, opts ...FaultOption) {
	checkStatus(status)
	f := fault{kind: "fail", status: status}
	for _, o := range opts {
		o(&f)
	}
	s.enqueue(n, f)
}

// DropNext makes the next n pushes end with the connection closed and no
// answer, after the request body was read. The client sees an EOF or a
// reset connection and cannot know whether the push was stored (with
// [AfterStore] it was). When the connection cannot be taken over (HTTP/2,
// or a handler called with an httptest.ResponseRecorder), the handler panics
// with http.ErrAbortHandler, which net/http servers treat as an aborted
// answer.
func (s *Server) DropNext(n int, opts ...FaultOption) {
	f := fault{kind: "drop"}
	for _, o := range opts {
		o(&f)
	}
	s.enqueue(n, f)
}

func (s *Server) enqueue(n int, f fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// FailFor makes every push answer status, storing nothing, until
// [Server.ClearFaults] or SetDown(false): an outage. Queued one-shot faults
// still come first. It panics for a status outside 200-999.
func (s *Server) FailFor(status int, opts ...FaultOption) {
	checkStatus(status)
	f := fault{kind: "down", status: status}
	for _, o := range opts {
		o(&f)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.persistent = &f
}

// SetDown(true) is FailFor(503); SetDown(false) ends a FailFor outage.
func (s *Server) SetDown(down bool) {
	if down {
		s.FailFor(http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.persistent = nil
}

// SetDelay makes every push wait d after its body was read and before it is
// processed and answered. The wait ends early, with nothing stored and no
// answer, when the client gives up (the request's context ends) or the
// server stops. 0 removes the delay.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// ClearFaults removes queued one-shot faults, the FailFor outage and the
// delay.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.persistent = nil
	s.delay = 0
}

// PendingFaults returns how many one-shot faults are still queued.
func (s *Server) PendingFaults() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.faults)
}

// takeFault returns the fault that applies to the next push, if any.
func (s *Server) takeFault() (fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults) > 0 {
		f := s.faults[0]
		s.faults = s.faults[1:]
		return f, true
	}
	if s.persistent != nil {
		return *s.persistent, true
	}
	return fault{}, false
}
