package exporter

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Doer sends one HTTP request and returns its response, as [http.Client]
// does. [Config.HTTPClient] takes one.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// transport is the client's own HTTP/1.1 client: one connection at a time
// (Export is called by one goroutine at a time), kept alive between
// requests, proxies from the environment (HTTP_PROXY, HTTPS_PROXY,
// NO_PROXY; http and https proxies), TLS, and 307/308 redirects followed
// with the POST kept (others answer the request). It exists because
// net/http's client (its Transport with HTTP/2, cookies, SOCKS and
// transparent gzip) costs a service that logs through lokislog about
// 0.45 MB of binary; see docs/DESIGN.md.
//
// It speaks just what a push needs: a POST with a body of known length,
// and a response with a Content-Length, chunked or read-until-close body.
type transport struct {
	tls     *tls.Config // base TLS settings; ServerName is filled per host
	timeout time.Duration
	proxy   func(*http.Request) (*url.URL, error)
	dialTCP func(ctx context.Context, network, addr string) (net.Conn, error)

	mu     sync.Mutex
	idle   *persistConn // at most one idle connection
	closed bool         // closeIdle was called: keep nothing idle
}

// maxIdleAge is how long an idle connection is kept. Servers and load
// balancers close idle connections after 60 s or more; a connection older
// than this is not reused.
const maxIdleAge = 30 * time.Second

// maxRedirects is how many 307/308 redirects one request follows.
const maxRedirects = 3

// persistConn is a connection to one host (or through one proxy).
type persistConn struct {
	key    string // scheme://host|proxy
	conn   net.Conn
	lim    *limitReader // bounds br's reads while a response head is read
	br     *bufio.Reader
	bw     *bufio.Writer
	usedAt time.Time
	reused bool
}

func newTransport(tc *tls.Config, timeout time.Duration) *transport {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	return &transport{tls: tc, timeout: timeout, proxy: http.ProxyFromEnvironment, dialTCP: d.DialContext}
}

// Do sends req, following up to maxRedirects 307 and 308 redirects (the
// method and body are kept) and returning any other redirect as it is. A
// redirect from https to plain http, or to a URL without a host, is not
// followed either. To another host, only the headers in redirectHeaders go
// along: the others (Authorization, Config.Headers) may hold credentials.
// It closes req's body (and those it makes), as an http.RoundTripper does,
// error or not.
func (t *transport) Do(req *http.Request) (*http.Response, error) {
	for redirects := 0; ; redirects++ {
		resp, err := t.roundTrip(req)
		if err != nil {
			if req.Body != nil {
				req.Body.Close() // not written: the dial or the proxy failed
			}
			return nil, &url.Error{Op: "Post", URL: req.URL.Redacted(), Err: err}
		}
		if (resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusPermanentRedirect) ||
			redirects == maxRedirects || req.GetBody == nil {
			return resp, nil
		}
		loc := resp.Header.Get("Location")
		next, err := req.URL.Parse(loc)
		if loc == "" || err != nil || (next.Scheme != "http" && next.Scheme != "https") ||
			(req.URL.Scheme == "https" && next.Scheme != "https") || next.Hostname() == "" {
			return resp, nil // answered as a rejection by the caller
		}
		drain(resp.Body)
		body, err := req.GetBody()
		if err != nil {
			return nil, &url.Error{Op: "Post", URL: req.URL.Redacted(), Err: err}
		}
		r := req.Clone(req.Context())
		r.URL, r.Host, r.Body = next, "", body
		if next.Hostname() != req.URL.Hostname() {
			for name := range r.Header {
				if !redirectHeader(name) {
					delete(r.Header, name)
				}
			}
		}
		req = r
	}
}

// redirectHeader reports whether a redirect to another host keeps the
// request header name (canonical): those that describe the push, none of
// them a credential. (A switch, not a map: a package-level map is built at
// init.)
func redirectHeader(name string) bool {
	switch name {
	case "Content-Type", "Content-Encoding", "User-Agent", "X-Scope-Orgid":
		return true
	}
	return false
}

// drain reads what is left of a body, up to maxDrain, and closes it, so
// that its connection can be reused.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, maxDrain)
	_ = body.Close()
}

// roundTrip makes one request. A reused connection that the server closed
// while it was idle fails before any answer: the request is then sent
// once more on a new connection.
func (t *transport) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	proxy, err := t.proxy(req)
	if err != nil {
		return nil, fmt.Errorf("proxy from environment: %w", err)
	}
	key := req.URL.Scheme + "://" + canonicalAddr(req.URL)
	if proxy != nil {
		key += "|" + proxy.String()
	}
	pc := t.getIdle(key)
	for {
		if pc == nil {
			if pc, err = t.dial(ctx, req.URL, proxy, key); err != nil {
				return nil, err
			}
		}
		resp, err := t.send(ctx, pc, req, proxy)
		if err == nil {
			return resp, nil
		}
		pc.conn.Close()
		if !pc.reused || !errors.Is(err, errNoAnswer) || req.GetBody == nil || ctx.Err() != nil {
			return nil, err
		}
		if req.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
		pc = nil
	}
}

// errNoAnswer marks a connection that ended before any byte of a response.
var errNoAnswer = errors.New("connection closed before a response")

func (t *transport) getIdle(key string) *persistConn {
	t.mu.Lock()
	pc := t.idle
	t.idle = nil
	t.mu.Unlock()
	if pc == nil {
		return nil
	}
	if pc.key != key || time.Since(pc.usedAt) > maxIdleAge || !idleQuiet(pc.conn) {
		pc.conn.Close()
		return nil
	}
	pc.reused = true
	return pc
}

func (t *transport) putIdle(pc *persistConn) {
	pc.usedAt = time.Now()
	t.mu.Lock()
	old := t.idle
	if t.closed {
		old = pc
	} else {
		t.idle = pc
	}
	t.mu.Unlock()
	if old != nil {
		old.conn.Close()
	}
}

// closeIdle closes the idle connection, and makes every connection in use
// close when its request ends (the client is shutting down).
func (t *transport) closeIdle() {
	t.mu.Lock()
	pc := t.idle
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	if pc != nil {
		pc.conn.Close()
	}
}

// canonicalAddr returns u's host:port, with the scheme's default port.
func canonicalAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// dial connects to target, through proxy when it is not nil (an HTTPS
// target through a CONNECT tunnel), and makes the TLS handshake.
func (t *transport) dial(ctx context.Context, target, proxy *url.URL, key string) (*persistConn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	addr := canonicalAddr(target)
	if proxy != nil {
		if proxy.Scheme != "http" && proxy.Scheme != "https" {
			return nil, fmt.Errorf("proxy scheme %q is not supported (want http or https)", proxy.Scheme)
		}
		if proxy.Hostname() == "" { // ":80" would be this machine
			return nil, errors.New("proxy URL has no host")
		}
		addr = canonicalAddr(proxy)
	}
	conn, err := t.dialTCP(ctx, "tcp", addr)
	if err != nil {
		if proxy != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		return nil, err
	}
	if proxy != nil && proxy.Scheme == "https" {
		if conn, err = t.handshake(ctx, conn, proxy.Hostname(), true); err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
	}
	if proxy != nil && target.Scheme == "https" {
		if err := connect(ctx, conn, proxy, canonicalAddr(target)); err != nil {
			conn.Close()
			return nil, err
		}
	}
	if target.Scheme == "https" {
		if conn, err = t.handshake(ctx, conn, target.Hostname(), false); err != nil {
			return nil, err
		}
	}
	lim := &limitReader{r: conn, n: -1}
	return &persistConn{key: key, conn: conn, lim: lim, br: bufio.NewReaderSize(lim, 4<<10), bw: bufio.NewWriterSize(conn, 4<<10)}, nil
}

// handshake makes the TLS handshake on conn with host. The configured
// ServerName is Loki's: a handshake with a proxy always names the proxy.
func (t *transport) handshake(ctx context.Context, conn net.Conn, host string, proxy bool) (net.Conn, error) {
	cfg := t.tls.Clone()
	if cfg == nil {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.ServerName == "" || proxy {
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// connect opens a tunnel to addr through the proxy conn is connected to.
func connect(ctx context.Context, conn net.Conn, proxy *url.URL, addr string) error {
	defer watch(ctx, conn)()
	w := bufio.NewWriter(conn)
	w.WriteString("CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n")
	writeProxyAuth(w, proxy)
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		return fmt.Errorf("proxy: %w", ctxErr(ctx, err))
	}
	br := bufio.NewReader(&limitReader{r: conn, n: maxResponseHead})
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("proxy: %w", ctxErr(ctx, err))
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("proxy: CONNECT %s: %s", addr, resp.Status)
	}
	if br.Buffered() > 0 {
		return errors.New("proxy: data after the CONNECT answer")
	}
	return nil
}

func writeProxyAuth(w *bufio.Writer, proxy *url.URL) {
	if proxy.User == nil {
		return
	}
	pw, _ := proxy.User.Password()
	w.WriteString("Proxy-Authorization: Basic " +
		base64.StdEncoding.EncodeToString([]byte(proxy.User.Username()+":"+pw)) + "\r\n")
}

// aLongTimeAgo is a deadline in the past: setting it makes blocked reads
// and writes return at once.
var aLongTimeAgo = time.Unix(1, 0)

// watch makes conn's reads and writes follow ctx: its deadline, and its
// cancellation. The returned function stops that.
func watch(ctx context.Context, conn net.Conn) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		conn.SetDeadline(d)
	}
	stopCancel := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	return func() {
		stopCancel()
		conn.SetDeadline(time.Time{})
	}
}

// ctxErr returns ctx's error when ctx has ended (the deadline or
// cancellation is what made the connection fail), and err otherwise.
func ctxErr(ctx context.Context, err error) error {
	// A connection's deadline is ctx's: its timeout can come a moment
	// before ctx's own timer has ended ctx. Wait for it, so that a request
	// that ran out of time always says so the same way.
	if dl, ok := ctx.Deadline(); ok && isTimeout(err) && !time.Now().Before(dl) {
		timer := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		timer.Stop()
	}
	if cerr := context.Cause(ctx); cerr != nil {
		return cerr
	}
	return err
}

func isTimeout(err error) bool {
	ne := net.Error(nil)
	return errors.As(err, &ne) && ne.Timeout()
}

// send writes req on pc and reads the response head at the same time: a
// server may answer before it has read the body (Loki answers 413 at once
// when Content-Length is over its limit, then closes the connection), and
// that answer must be read, not lost behind a broken write. The returned
// body gives the connection back (or closes it) when it is closed.
func (t *transport) send(ctx context.Context, pc *persistConn, req *http.Request, proxy *url.URL) (*http.Response, error) {
	stop := watch(ctx, pc.conn)
	wrote := make(chan error, 1)
	go func() { wrote <- writeRequest(pc.bw, req, proxy) }()
	fail := func(err error) (*http.Response, error) {
		endWrite(pc, wrote, 0)
		stop()
		return nil, err
	}
	var resp *http.Response
	pc.lim.n = maxResponseHead
	for informational := 0; ; informational++ {
		_, err := pc.br.Peek(1)
		if err != nil {
			// No answer. A failed write (a reused connection the server
			// had closed) says more than the read's EOF.
			werr := endWrite(pc, wrote, 0)
			stop()
			if werr != nil && werr != errWriteCut {
				return nil, t.connErr(ctx, pc, werr, false)
			}
			return nil, t.connErr(ctx, pc, err, true)
		}
		resp, err = http.ReadResponse(pc.br, req)
		if err != nil {
			return fail(ctxErr(ctx, err))
		}
		// 1xx answers (103 Early Hints) precede the real one. A 101 was
		// not asked for (no Upgrade header is sent): what follows it is
		// not HTTP.
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return fail(errors.New("server switched protocols (101) unasked"))
		}
		if resp.StatusCode >= 200 {
			break
		}
		if informational == max1xx {
			return fail(fmt.Errorf("more than %d informational (1xx) answers", max1xx))
		}
	}
	pc.lim.n = -1 // the body's reads are bounded by their callers
	resp.Body = &connBody{rc: resp.Body, t: t, pc: pc, stop: stop, wrote: wrote, keep: !resp.Close, ctx: ctx}
	return resp, nil
}

// writeGrace is how long a response's end waits for the request's body to
// be written before it gives up on the connection: an answer given before
// the server read the body leaves the rest unwritten (net/http waits 50 ms
// too).
const writeGrace = 50 * time.Millisecond

// endWrite waits up to grace for the request writer to finish, then stops
// it (a past write deadline) and waits for it to return. It returns the
// write's error, or errWriteCut when it had to stop it.
func endWrite(pc *persistConn, wrote chan error, grace time.Duration) error {
	// Usually the body was written before the answer came: no timer.
	select {
	case err := <-wrote:
		return err
	default:
	}
	if grace > 0 {
		timer := time.NewTimer(grace)
		select {
		case err := <-wrote:
			timer.Stop() // not deferred: a deferred call is a wrapper function of its own
			return err
		case <-timer.C:
		}
	}
	pc.conn.SetWriteDeadline(aLongTimeAgo)
	<-wrote
	return errWriteCut
}

// errWriteCut: the server answered before it read the whole body.
var errWriteCut = errors.New("answered before the request body was written")

// Limits on a response head: its bytes (status line and headers, 1xx
// answers included), and the 1xx answers before the real one.
const (
	maxResponseHead = 64 << 10
	max1xx          = 5
)

// errHeadTooLarge is the error for a response head over maxResponseHead (a
// constant text: fmt.Errorf would allocate at init).
var errHeadTooLarge = errors.New("response head larger than 64 KiB")

// limitReader reads at most n bytes from r, then fails with
// errHeadTooLarge; n < 0 means no limit.
type limitReader struct {
	r io.Reader
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		return l.r.Read(p)
	}
	if l.n == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// connErr describes a failed write or a response that did not start. On a
// reused connection that is the server having closed it while it was idle
// (EOF, reset, broken pipe): it is marked errNoAnswer so that roundTrip
// tries a new one.
func (t *transport) connErr(ctx context.Context, pc *persistConn, err error, reading bool) error {
	if err = ctxErr(ctx, err); context.Cause(ctx) != nil || isTimeout(err) {
		return err
	}
	if pc.reused {
		return fmt.Errorf("%w: %w", errNoAnswer, err)
	}
	if reading && errors.Is(err, io.EOF) {
		return errors.New("server closed the connection without answering")
	}
	return err
}

// writeRequest writes req as HTTP/1.1 with its body, which must have a
// known length. Through an HTTP proxy (to an http:// URL) the request
// line has the absolute URL.
func writeRequest(w *bufio.Writer, req *http.Request, proxy *url.URL) error {
	target := req.URL.RequestURI()
	if proxy != nil && req.URL.Scheme == "http" {
		target = "http://" + req.URL.Host + target // absolute-form, no fragment
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	w.WriteString(req.Method + " " + target + " HTTP/1.1\r\nHost: " + host + "\r\n")
	for name, values := range req.Header {
		if framingHeader(name) {
			continue // the transport writes these itself
		}
		for _, v := range values {
			w.WriteString(name + ": " + v + "\r\n")
		}
	}
	if proxy != nil && req.URL.Scheme == "http" {
		writeProxyAuth(w, proxy)
	}
	w.WriteString("Content-Length: " + strconv.FormatInt(req.ContentLength, 10) + "\r\n\r\n")
	if req.Body != nil {
		n, err := io.Copy(w, req.Body)
		req.Body.Close()
		if err != nil {
			return err
		}
		if n != req.ContentLength {
			return fmt.Errorf("body is %d bytes, not the %d announced", n, req.ContentLength)
		}
	}
	return w.Flush()
}

// framingHeader reports whether writeRequest writes the request header
// name itself, or never: one from Config.Headers would contradict the
// request's framing.
func framingHeader(name string) bool {
	switch name {
	case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

// connBody is a response body. Read to its end and closed, it gives its
// connection back for the next request; closed early, it closes it.
type connBody struct {
	rc    io.ReadCloser
	t     *transport
	pc    *persistConn
	stop  func()
	wrote chan error // the request writer's result
	keep  bool
	eof   bool
	done  bool
	ctx   context.Context
}

func (b *connBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, errors.New("read on a closed body")
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.keep = false
		err = ctxErr(b.ctx, err)
	}
	return n, err
}

func (b *connBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	werr := endWrite(b.pc, b.wrote, writeGrace)
	b.stop()
	// Bytes after the answer's end (a 204 with a body, a second answer)
	// would be read as the answer to the next request: such a connection
	// is not kept.
	if werr == nil && b.eof && b.keep && b.pc.br.Buffered() == 0 && b.ctx.Err() == nil {
		b.t.putIdle(b.pc)
	} else {
		b.pc.conn.Close()
	}
	return nil
}
