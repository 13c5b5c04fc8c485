package exporter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"

	"github.com/lokislog/lokislog/internal/header"
	"github.com/lokislog/lokislog/internal/linked"
	"github.com/lokislog/lokislog/internal/wire"
)

// Limits on what the client reads from a response.
const (
	// maxReason is how much of an error response's body becomes the
	// reason of a PermanentError or StatusError.
	maxReason = 1 << 10
	// maxDrain is how much of a response body is read and discarded so
	// the connection can be reused; a longer body closes the connection.
	maxDrain = 64 << 10
	// maxKeep is the largest encode buffer kept between Export calls.
	maxKeep = 16 << 20
)

// errRetryTime is the cause of an Export context whose MaxRetryTime ran out.
var errRetryTime = errors.New("max retry time reached")

// StatusError is a retryable answer from Loki: 408, 429 or a 5xx other than
// 501. When retries run out, Export returns an error that wraps the last
// StatusError (or the last connection error).
type StatusError struct {
	// Status is the HTTP status code.
	Status int
	// Reason is the start of the response body, trimmed.
	Reason string
	// RetryAfter is the wait the Retry-After header asked for (on 429 and
	// 503), before any cap; 0 when there was none.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	if e.Reason == "" {
		return "status " + strconv.Itoa(e.Status)
	}
	return "status " + strconv.Itoa(e.Status) + ": " + e.Reason
}

// ClientStats are a [Client]'s counters since it was created.
type ClientStats struct {
	// Requests is the number of HTTP requests sent, retries and followed
	// redirects included.
	Requests uint64
	// Retries is the number of requests that repeated a failed one.
	Retries uint64
	// Splits is the number of times a batch was cut in two after a 413
	// (or the 500 of a push over Loki's internal gRPC message limit).
	Splits uint64
	// BytesSent is the number of request body bytes (compressed, as on the
	// wire) of all requests, retries included.
	BytesSent uint64
	// EntriesSent is the number of entries Loki accepted.
	EntriesSent uint64
	// EntriesRejected is the number of entries rejected for good (see
	// [PermanentError]).
	EntriesRejected uint64
	// LastStatus is the status of the last response; 0 before the first
	// one and after a request that got no response.
	LastStatus int
}

// Client pushes batches to Loki. It implements [Exporter]: Export is called
// by one goroutine at a time; Stats and Shutdown may be called from any
// goroutine at any time.
type Client struct {
	set       *settings
	hc        Doer
	transport *transport // the client's own; nil with Config.HTTPClient

	// stop is cancelled, with cause ErrShutdown, by Shutdown; running Export
	// calls derive their contexts from it.
	stop       context.Context
	cancelStop context.CancelCauseFunc

	mu     sync.Mutex
	closed bool          // set by Shutdown
	active int           // Export calls running
	idle   chan struct{} // made by Shutdown while active > 0, closed when it drops to 0

	// Owned by the goroutine calling Export.
	raw, out *sendBuf
	bo       *backoff.ExponentialBackOff

	requests, retries, splits, bytesSent, entriesSent, entriesRejected atomic.Uint64
	lastStatus                                                         atomic.Int64
}

var _ Exporter = (*Client)(nil)

// NewClient validates cfg and returns a client. It does not connect to
// Loki: a Loki that is down is found out by the first Export.
func NewClient(cfg Config) (*Client, error) {
	set, err := cfg.settings()
	if err != nil {
		return nil, fmt.Errorf("exporter: %w", err)
	}
	c := &Client{set: set, raw: &sendBuf{}, out: &sendBuf{}}
	if cfg.HTTPClient != nil {
		c.hc = cfg.HTTPClient
	} else {
		tc, err := cfg.TLS.tlsConfig()
		if err != nil {
			return nil, fmt.Errorf("exporter: %w", err)
		}
		c.transport = newTransport(tc, set.cfg.Timeout)
		c.hc = c.transport
	}
	c.stop, c.cancelStop = context.WithCancelCause(context.Background())
	c.bo = backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(set.cfg.MinBackoff),
		backoff.WithMaxInterval(set.cfg.MaxBackoff),
		backoff.WithMultiplier(2),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMaxElapsedTime(0), // Export's own budget applies
	)
	return c, nil
}

// Stats returns the client's counters. It never includes credentials.
func (c *Client) Stats() ClientStats {
	return ClientStats{
		Requests:        c.requests.Load(),
		Retries:         c.retries.Load(),
		Splits:          c.splits.Load(),
		BytesSent:       c.bytesSent.Load(),
		EntriesSent:     c.entriesSent.Load(),
		EntriesRejected: c.entriesRejected.Load(),
		LastStatus:      int(c.lastStatus.Load()),
	}
}

// Shutdown stops the client: Export calls after it return [ErrShutdown], a
// running Export is interrupted (its batch is reported as not delivered)
// and Shutdown waits for it to return, until ctx ends. It then closes the
// idle connections of the client's own transport. It may be called more than
// once and concurrently with Export.
func (c *Client) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	var idle chan struct{}
	if c.active > 0 {
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		idle = c.idle
	}
	c.mu.Unlock()
	c.cancelStop(ErrShutdown)
	var err error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			err = fmt.Errorf("exporter: shutdown: %w", ctx.Err())
		}
	}
	c.closeIdle()
	return err
}

func (c *Client) closeIdle() {
	if c.transport != nil {
		c.transport.closeIdle()
	}
}

// begin registers a running Export; it returns false after Shutdown.
func (c *Client) begin() bool {
	c.mu.Lock()
	ok := !c.closed
	if ok {
		c.active++
	}
	c.mu.Unlock()
	return ok
}

func (c *Client) end() {
	c.mu.Lock()
	c.active--
	closed := c.closed
	if c.active == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
	if closed {
		c.closeIdle() // the connection this call used went idle after Shutdown
	}
}

// Export pushes b to Loki, as the [Exporter] contract says. Retries, 413
// splits and status classification are described in the package
// documentation. An empty batch is not sent (Loki would answer 422).
func (c *Client) Export(ctx context.Context, b *Batch) error {
	if !c.begin() {
		return ErrShutdown
	}
	defer c.end()
	if b == nil || b.Len() == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("exporter: push not started: %w", err)
	}
	if !header.ValidValue(b.Tenant) {
		c.entriesRejected.Add(uint64(b.Len()))
		return &PermanentError{Reason: "tenant contains a control character (not sent)", Entries: b.Len()}
	}
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(c.stop, func() { cancel(ErrShutdown) })()
	// The budget decides whether to start (or wait for) another attempt;
	// an attempt already sent runs to its own Timeout, so that a push Loki
	// stored is not cut off unanswered (and then sent again).
	run := ctx
	ctx, cancelBudget := context.WithTimeoutCause(ctx, c.set.cfg.MaxRetryTime, errRetryTime)
	defer cancelBudget()
	return c.export(ctx, run, parent, b)
}

// export sends b, splitting it on 413, and sums up the outcome of its parts.
func (c *Client) export(ctx, run, parent context.Context, b *Batch) error {
	var (
		stack    = []*Batch{b} // parts still to send, the next on top
		done     bool          // some part was delivered or rejected for good
		rejected *PermanentError
	)
	reject := func(p *PermanentError, n int) {
		c.entriesRejected.Add(uint64(n))
		done = true
		if rejected == nil {
			r := *p
			rejected = &r
			rejected.Entries = 0
		}
		rejected.Entries += n
	}
	for len(stack) > 0 {
		part := stack[len(stack)-1]
		stack = stack[:len(stack)-1]

		body, err := c.encode(part)
		if le := (*wire.LabelsError)(nil); errors.As(err, &le) {
			good, bad, reason := dropBadLabels(part)
			reject(&PermanentError{Reason: reason}, bad)
			if good.Len() == 0 {
				continue
			}
			part = good
			body, err = c.encode(part)
		}
		if err != nil { // not reached: only labels fail to encode
			return fmt.Errorf("exporter: encode: %w", err)
		}

		err = c.send(ctx, run, parent, part.Tenant, body)
		var perm *PermanentError
		switch {
		case err == nil:
			c.entriesSent.Add(uint64(part.Len()))
			done = true
		case errors.As(err, &perm) && (perm.Status == http.StatusRequestEntityTooLarge || grpcTooLarge(perm.Status, perm.Reason)):
			first, second, ok := Split(part)
			if !ok {
				reject(perm, part.Len())
				break
			}
			c.splits.Add(1)
			stack = append(stack, second, first)
		case perm != nil:
			reject(perm, part.Len())
		default:
			if !done {
				return err
			}
			rest := []*Batch{part}
			for i := len(stack) - 1; i >= 0; i-- {
				rest = append(rest, stack[i])
			}
			return &PartialError{Remaining: concat(b.Tenant, rest), Rejected: rejected, Err: err}
		}
	}
	if rejected != nil {
		return rejected
	}
	return nil
}

// encode writes part's request body into one of the client's buffers.
func (c *Client) encode(part *Batch) (*sendBuf, error) {
	raw := c.raw.reuse()
	c.raw = raw
	if !c.set.json {
		raw.b = wire.AppendPush(raw.b[:0], part.Streams)
		// Encoding and compressing a 1 MiB batch are each a few hundred
		// microseconds of CPU: let a goroutine waiting for this P (with
		// GOMAXPROCS=1, the application's logging calls) run between.
		runtime.Gosched()
		out := c.out.reuse()
		c.out = out
		out.b = wire.EncodeSnappy(out.b, raw.b)
		return out, nil
	}
	var err error
	raw.b, err = wire.AppendJSON(raw.b[:0], part.Streams)
	if err != nil || !c.set.gzip {
		return raw, err
	}
	out := c.out.reuse()
	c.out = out
	out.b = linked.AppendGzip(out.b[:0], raw.b)
	return out, nil
}

// send posts body, retrying as the package documentation says. It returns
// nil when Loki accepted it, a *PermanentError when Loki refused it for good
// (413 included), and otherwise a retryable error.
func (c *Client) send(ctx, run, parent context.Context, tenant string, body *sendBuf) error {
	c.bo.Reset()
	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.retries.Add(1)
		}
		err := c.attempt(run, tenant, body)
		var serr *StatusError
		switch {
		case err == nil:
			return nil
		case errors.As(err, new(*PermanentError)):
			return err
		case ctx.Err() != nil:
			if last == nil {
				last = err
			} // else last says more than the cut attempt's "context canceled"
			return c.interrupted(ctx, parent, last, attempt+1)
		}
		last = err

		wait := min(c.bo.NextBackOff(), c.set.cfg.MaxBackoff)
		if errors.As(err, &serr) && serr.RetryAfter > 0 {
			wait = max(wait, min(serr.RetryAfter, c.set.cfg.MaxRetryAfter))
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return c.exhausted(ctx, parent, last, attempt+1)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return c.interrupted(ctx, parent, last, attempt+1)
		}
	}
}

// interrupted returns the error of a send whose context ended.
func (c *Client) interrupted(ctx, parent context.Context, last error, attempts int) error {
	if err := parent.Err(); err != nil {
		return fmt.Errorf("exporter: push interrupted after %d attempts (last: %v): %w", attempts, last, err)
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrShutdown) {
		return fmt.Errorf("exporter: push interrupted after %d attempts (last: %v): %w", attempts, last, ErrShutdown)
	}
	return c.exhausted(ctx, parent, last, attempts)
}

// exhausted returns the retryable error of a send that ran out of time.
func (c *Client) exhausted(ctx, parent context.Context, last error, attempts int) error {
	why := "max retry time " + c.set.cfg.MaxRetryTime.String()
	if dl, ok := parent.Deadline(); ok {
		if bdl, _ := ctx.Deadline(); !dl.After(bdl) {
			why = "context deadline"
		}
	}
	return fmt.Errorf("exporter: push failed after %d attempts, giving up before %s: %w", attempts, why, last)
}

// attempt makes one request. It returns nil on 2xx, a *PermanentError, a
// *StatusError or a connection error.
func (c *Client) attempt(ctx context.Context, tenant string, body *sendBuf) error {
	actx, cancel := context.WithTimeout(ctx, c.set.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, c.set.url, nil)
	if err != nil { // not reached: the URL was checked by NewClient
		return &PermanentError{Reason: "build request: " + err.Error()}
	}
	req.Header = c.set.header.Clone()
	if tenant == "" {
		tenant = c.set.cfg.TenantID
	}
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	req.ContentLength = int64(len(body.b))
	// Every reader of the body is one request on the wire: the first, and
	// those the transport makes for redirects and its own retries.
	newBody := func() (io.ReadCloser, error) {
		c.requests.Add(1)
		c.bytesSent.Add(uint64(len(body.b)))
		return body.reader(), nil
	}
	req.Body, _ = newBody()
	req.GetBody = newBody

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.lastStatus.Store(0)
		c.observe(0, time.Since(start))
		if ctx.Err() == nil && actx.Err() != nil {
			return fmt.Errorf("post %s: no response within %v", c.set.redacted, c.set.cfg.Timeout)
		}
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // its URL is ours, but say it once, redacted
		}
		return fmt.Errorf("post %s: %w", c.set.redacted, err)
	}
	defer drain(resp.Body)
	status := resp.StatusCode
	c.lastStatus.Store(int64(status))
	c.observe(status, time.Since(start))
	if status >= 200 && status < 300 {
		return nil
	}
	reason := c.reason(resp)
	switch {
	case grpcTooLarge(status, reason):
		// Split like a 413: retrying the same batch can only fail again.
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests,
		status >= 500 && status != http.StatusNotImplemented, status < 200:
		serr := &StatusError{Status: status, Reason: reason}
		if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
			serr.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		return serr
	case status >= 300 && status < 400 && reason == "":
		reason = "redirect to " + redactURL(resp.Header.Get("Location")) + " not followed"
	}
	return &PermanentError{Status: status, Reason: reason}
}

// grpcTooLarge reports whether a 5xx answer is Loki's for a push over its
// ingesters' gRPC message limit (4 MiB by default): "rpc error: code =
// ResourceExhausted desc = grpc: received message larger than max (N vs.
// M)". Such a batch is split as if Loki had answered 413.
func grpcTooLarge(status int, reason string) bool {
	return status >= 500 && strings.Contains(reason, "ResourceExhausted") && strings.Contains(reason, "larger than max")
}

func (c *Client) observe(status int, d time.Duration) {
	if c.set.cfg.OnRequest != nil {
		c.set.cfg.OnRequest(status, d)
	}
}

// reason reads the start of an error response's body as text: trimmed,
// valid UTF-8, credentials masked.
func (c *Client) reason(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
	if len(b) == maxReason { // the limit may have cut a rune
		for i := 1; i <= utf8.UTFMax && i <= len(b); i++ {
			if utf8.RuneStart(b[len(b)-i]) {
				if !utf8.FullRune(b[len(b)-i:]) {
					b = b[:len(b)-i]
				}
				break
			}
		}
	}
	s := strings.ToValidUTF8(strings.TrimSpace(string(b)), "\uFFFD")
	for _, secret := range c.set.secrets {
		s = strings.ReplaceAll(s, secret, "<redacted>")
	}
	return s
}

// redactURL returns s without user information and query.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid URL)"
	}
	u.User, u.RawQuery, u.ForceQuery = nil, "", false
	return u.String()
}

// parseRetryAfter returns the wait a Retry-After header asks for: delay
// seconds or an HTTP date. It returns 0 for an absent or invalid header or a
// date in the past.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// dropBadLabels returns the streams of b whose labels parse, the number of
// entries of those that do not, and a reason naming the first bad one.
func dropBadLabels(b *Batch) (good *Batch, bad int, reason string) {
	good = &Batch{Tenant: b.Tenant}
	for i, s := range b.Streams {
		if err := wire.ParseLabels(s.Labels, func(string, string) {}); err != nil {
			bad += len(s.Entries)
			if reason == "" {
				reason = fmt.Sprintf("invalid stream labels (not sent): stream %d: %v", i, err)
			}
			continue
		}
		good.Streams = append(good.Streams, s)
	}
	return good, bad, reason
}

// concat joins parts, in order, into one batch that shares no memory with
// them (the caller may reuse the exported batch's memory once Export
// returns), merging a stream that was cut by Split back into one.
func concat(tenant string, parts []*Batch) *Batch {
	// Every string is copied on its own: this is the path of a push that
	// failed after Loki took part of it, rare enough that its allocations
	// do not matter, and the code stays small.
	b := &Batch{Tenant: strings.Clone(tenant)}
	for _, p := range parts {
		for _, s := range p.Streams {
			n := len(b.Streams)
			if n == 0 || b.Streams[n-1].Labels != s.Labels {
				b.Streams = append(b.Streams, Stream{Labels: strings.Clone(s.Labels), Entries: make([]Entry, 0, len(s.Entries))})
				n++
			}
			last := &b.Streams[n-1]
			for _, e := range s.Entries {
				c := Entry{Timestamp: e.Timestamp, Line: strings.Clone(e.Line)}
				if len(e.Metadata) > 0 {
					c.Metadata = make([]LabelPair, len(e.Metadata))
					for k, m := range e.Metadata {
						c.Metadata[k] = LabelPair{Name: strings.Clone(m.Name), Value: strings.Clone(m.Value)}
					}
				}
				last.Entries = append(last.Entries, c)
			}
		}
	}
	return b
}

// sendBuf is a request body buffer. The transport may read a request body
// after Do returns (and closes it when done), so a buffer is written again
// only once every reader handed out is closed.
type sendBuf struct {
	b    []byte
	open atomic.Int32 // readers not yet closed
}

// reuse returns sb, or a new buffer when the transport may still read sb or
// sb grew too large to keep.
func (sb *sendBuf) reuse() *sendBuf {
	if sb.open.Load() != 0 || cap(sb.b) > maxKeep {
		return &sendBuf{}
	}
	return sb
}

func (sb *sendBuf) reader() io.ReadCloser {
	sb.open.Add(1)
	return &bufReader{Reader: bytes.NewReader(sb.b), sb: sb}
}

type bufReader struct {
	*bytes.Reader
	sb     *sendBuf
	closed atomic.Bool
}

func (r *bufReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.sb.open.Add(-1)
	}
	return nil
}
