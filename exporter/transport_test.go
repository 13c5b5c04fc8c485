package exporter

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countedServer serves f on 127.0.0.1 and counts the connections it
// accepts.
func countedServer(t *testing.T, f *fakeLoki) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewUnstartedServer(f)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestKeepAlive checks that the client's own transport sends one push
// after another on one connection.
func TestKeepAlive(t *testing.T) {
	f := newFake(t, nil)
	srv, conns := countedServer(t, f)
	c := newTestClient(t, fastConfig(srv.URL))
	for range 5 {
		if err := c.Export(context.Background(), testBatch(3, 3)); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 pushes, want 1", n)
	}
	if st := c.Stats(); st.Requests != 5 || st.Retries != 0 || st.EntriesSent != 15 {
		t.Errorf("Stats = %+v, want 5 requests, no retry, 15 entries", st)
	}
}

// TestStaleConnection checks that a kept connection the server closes
// without answering the next request (it closed it while idle, and the
// client did not see it in time) costs no retry: the push goes out again on
// a new connection.
func TestStaleConnection(t *testing.T) {
	var answered atomic.Int32
	addr, conns := serveRequests(t, func(conn net.Conn, _, i int) bool {
		if i == 1 {
			return false // the second request on a connection: closed unanswered
		}
		answered.Add(1)
		_, err := io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n")
		return err == nil
	})
	c := newTestClient(t, fastConfig("http://"+addr))
	for i := range 3 {
		if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
	st := c.Stats()
	// Each push after the first is written on the kept connection, then
	// once more on a new one.
	if st.Requests != 5 || st.Retries != 0 || st.EntriesSent != 6 {
		t.Errorf("Stats = %+v, want 5 requests, no retry and 6 entries sent", st)
	}
	if n := answered.Load(); n != 3 {
		t.Errorf("%d pushes answered, want 3", n)
	}
}

// TestIdleConnection checks that a kept connection on which something came
// while it was idle (the server closed it, or sent a 408 first, as some
// load balancers do) is not used for the next push: it goes out at once on
// a new connection, written once, with no retry.
func TestIdleConnection(t *testing.T) {
	if !idlePeek {
		t.Skip("this platform cannot peek at an idle socket; a stale connection costs a resend there (TestStaleConnection)")
	}
	for name, late := range map[string]string{
		"closed":        "",
		"408 and close": "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			goAhead, idled := make(chan struct{}), make(chan struct{})
			addr, conns := serveRequests(t, func(conn net.Conn, c, _ int) bool {
				if _, err := io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n"); err != nil {
					return false
				}
				if c == 0 {
					<-goAhead // the client has its answer
					io.WriteString(conn, late)
					conn.Close()
					close(idled)
					return false
				}
				return true
			})
			c := newTestClient(t, fastConfig("http://"+addr))
			if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
				t.Fatal(err)
			}
			close(goAhead)
			<-idled
			if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
				t.Fatal(err)
			}
			if st := c.Stats(); st.Requests != 2 || st.Retries != 0 {
				t.Errorf("Stats = %+v, want 2 requests and no retry", st)
			}
			if n := conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2", n)
			}
		})
	}
}

// rawServer answers every request on 127.0.0.1 with the bytes answer
// returns for it (after reading the request and its body), then closes the
// connection if close says so. It returns the URL and the number of
// connections accepted.
func rawServer(t *testing.T, answer func(n int) (resp string, close bool)) (string, *atomic.Int32) {
	var reqs atomic.Int32
	addr, conns := serveRequests(t, func(conn net.Conn, _, _ int) bool {
		resp, closeConn := answer(int(reqs.Add(1)) - 1)
		_, err := io.WriteString(conn, resp)
		return err == nil && !closeConn
	})
	return "http://" + addr, conns
}

// serveRequests is serveConns for servers that answer request by request:
// on each connection it reads a request and its body, then calls answer
// with the connection, the connection's number and the request's number on
// it (both from 0); answer writes what it wants and returns false to close
// the connection. It returns the address and the number of connections
// accepted.
func serveRequests(t *testing.T, answer func(conn net.Conn, c, i int) bool) (string, *atomic.Int32) {
	var conns atomic.Int32
	addr := serveConns(t, func(conn net.Conn) {
		c := int(conns.Add(1)) - 1
		br := bufio.NewReader(conn)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if !answer(conn, c, i) {
				return
			}
		}
	})
	return addr, &conns
}

// serveConns accepts connections on 127.0.0.1 and runs handle on each in
// its own goroutine, then closes it. It returns the address; the test's
// cleanup stops it and waits for every handler.
func serveConns(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				handle(conn)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// TestResponseForms checks the response bodies and odd answers the
// transport reads itself: chunked, read until close, 1xx before the
// answer, no answer, garbage.
func TestResponseForms(t *testing.T) {
	tests := map[string]struct {
		resp   string
		close  bool
		want   outcome
		reason string // PermanentError or StatusError reason
		err    string // part of the error text
		conns  int32  // connections for two pushes
	}{
		"chunked reason": {
			resp:   "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nbad l\r\n9\r\nine there\r\n0\r\n\r\n",
			want:   rejected,
			reason: "bad line there",
			conns:  1,
		},
		"body until close": {
			resp:   "HTTP/1.1 400 Bad Request\r\n\r\nout of order",
			close:  true,
			want:   rejected,
			reason: "out of order",
			conns:  2,
		},
		"connection close header": {
			resp:  "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
			want:  delivered,
			conns: 2,
		},
		"early hints first": {
			resp:  "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
			want:  delivered,
			conns: 1,
		},
		"http/1.0 answer": {
			resp:  "HTTP/1.0 204 No Content\r\n\r\n",
			want:  delivered,
			conns: 2,
		},
		"no answer": {
			resp:  "",
			close: true,
			want:  retryable,
			err:   "without answering",
		},
		"garbage": {
			resp:  "hello\r\n\r\n",
			close: true,
			want:  retryable,
			err:   "malformed HTTP response",
		},
		"huge head": {
			resp:  "HTTP/1.1 204 No Content\r\nX-Filler: " + strings.Repeat("a", 1<<20) + "\r\n\r\n",
			close: true,
			want:  retryable,
			err:   "response head larger than 64 KiB",
		},
		"endless 1xx": {
			resp:  strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 100),
			close: true,
			want:  retryable,
			err:   "more than 5 informational",
		},
		"truncated body": {
			resp:  "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\nshort",
			close: true,
			want:  retryable,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			u, conns := rawServer(t, func(int) (string, bool) { return tt.resp, tt.close })
			cfg := fastConfig(u)
			cfg.MaxRetryTime = 50 * time.Millisecond
			c := newTestClient(t, cfg)
			for i := range 2 {
				err := c.Export(context.Background(), testBatch(2, 1))
				if got := classify(err); got != tt.want {
					t.Fatalf("push %d: %v (%v), want %v", i, got, err, tt.want)
				}
				var pe *PermanentError
				var se *StatusError
				switch {
				case tt.reason != "" && errors.As(err, &pe):
					if pe.Reason != tt.reason {
						t.Errorf("reason %q, want %q", pe.Reason, tt.reason)
					}
				case tt.reason != "" && errors.As(err, &se):
					if se.Reason != tt.reason {
						t.Errorf("reason %q, want %q", se.Reason, tt.reason)
					}
				case tt.reason != "":
					t.Errorf("error %v has no reason", err)
				}
				if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
					t.Errorf("error %v, want it to contain %q", err, tt.err)
				}
			}
			if tt.conns != 0 && conns.Load() != tt.conns {
				t.Errorf("%d connections for two pushes, want %d", conns.Load(), tt.conns)
			}
		})
	}
}

// TestRedirectAuthorization checks that a 307 to another host does not
// carry the credentials along, and one to the same host does.
func TestRedirectAuthorization(t *testing.T) {
	for _, sameHost := range []bool{true, false} {
		target := newFake(t, nil)
		dst := httptest.NewServer(target)
		defer dst.Close()
		loc := dst.URL + "/loki/api/v1/push"
		if !sameHost {
			loc = strings.Replace(loc, "127.0.0.1", "localhost", 1)
		}
		src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Location", loc)
			w.WriteHeader(http.StatusTemporaryRedirect)
		}))
		defer src.Close()
		cfg := fastConfig(src.URL)
		cfg.BearerToken = "sesame-token"
		c := newTestClient(t, cfg)
		if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
			t.Fatalf("same host %v: %v", sameHost, err)
		}
		reqs := target.requests()
		if len(reqs) != 1 {
			t.Fatalf("same host %v: target got %d pushes, want 1", sameHost, len(reqs))
		}
		if got, want := reqs[0].Header.Get("Authorization") != "", sameHost; got != want {
			t.Errorf("same host %v: Authorization sent %v, want %v", sameHost, got, want)
		}
		if st := c.Stats(); st.Requests != 2 || st.EntriesSent != 2 {
			t.Errorf("same host %v: Stats = %+v, want 2 requests and 2 entries", sameHost, st)
		}
	}
}

// TestRedirectLimit checks that a redirect loop ends after three
// redirects with the last answer, as a rejection.
func TestRedirectLimit(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Location", r.URL.Path)
		w.WriteHeader(http.StatusPermanentRedirect)
	}))
	defer srv.Close()
	c := newTestClient(t, fastConfig(srv.URL))
	err := c.Export(context.Background(), testBatch(1, 1))
	var pe *PermanentError
	if !errors.As(err, &pe) || pe.Status != http.StatusPermanentRedirect {
		t.Fatalf("Export = %v, want a PermanentError with status 308", err)
	}
	if got := n.Load(); got != 1+maxRedirects {
		t.Errorf("%d requests, want %d", got, 1+maxRedirects)
	}
}

// TestHTTPProxy checks a push to an http:// URL through an HTTP proxy:
// the request line carries the absolute URL, and the proxy's credentials
// go in Proxy-Authorization.
func TestHTTPProxy(t *testing.T) {
	f := newFake(t, nil)
	var seen atomic.Value
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.RequestURI + " " + r.Header.Get("Proxy-Authorization"))
		f.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	cfg := fastConfig("http://loki.invalid:3100")
	c := newTestClient(t, cfg)
	pu, _ := url.Parse(proxy.URL)
	pu.User = url.UserPassword("pu", "pw")
	c.transport.proxy = http.ProxyURL(pu)
	if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
		t.Fatal(err)
	}
	want := "http://loki.invalid:3100/loki/api/v1/push Basic " + base64.StdEncoding.EncodeToString([]byte("pu:pw"))
	if got, _ := seen.Load().(string); got != want {
		t.Errorf("proxy saw %q, want %q", got, want)
	}
	if len(f.requests()) != 1 {
		t.Errorf("Loki received %d pushes, want 1", len(f.requests()))
	}
}

// connectProxy is an HTTP proxy that only tunnels (CONNECT) to target,
// whatever address was asked for; it records what it was asked.
func connectProxy(t *testing.T, target string, status int) (string, *atomic.Value) {
	var asked atomic.Value
	addr := serveConns(t, func(conn net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		asked.Store(req.Method + " " + req.RequestURI + " " + req.Header.Get("Proxy-Authorization"))
		if status != http.StatusOK {
			io.WriteString(conn, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
			return
		}
		tunnel(conn, target)
	})
	return "http://" + addr, &asked
}

// tunnel answers a CONNECT on conn and joins it to target until either
// side closes.
func tunnel(conn net.Conn, target string) {
	up, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer up.Close()
	io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{})
	go func() { io.Copy(up, conn); up.Close(); close(done) }()
	io.Copy(conn, up)
	conn.Close()
	<-done
}

// TestHTTPSProxy checks a push to an https:// URL through a CONNECT
// tunnel, and a proxy that refuses the tunnel.
func TestHTTPSProxy(t *testing.T) {
	f := newFake(t, nil)
	srv := httptest.NewTLSServer(f)
	defer srv.Close()
	for _, status := range []int{http.StatusOK, http.StatusProxyAuthRequired} {
		pURL, asked := connectProxy(t, srv.Listener.Addr().String(), status)
		cfg := fastConfig("https://loki.invalid")
		cfg.TLS.InsecureSkipVerify = true
		cfg.MaxRetryTime = 50 * time.Millisecond
		c := newTestClient(t, cfg)
		pu, _ := url.Parse(pURL)
		pu.User = url.User("only-user")
		c.transport.proxy = http.ProxyURL(pu)
		err := c.Export(context.Background(), testBatch(2, 2))
		want := "CONNECT loki.invalid:443 Basic " + base64.StdEncoding.EncodeToString([]byte("only-user:"))
		if got, _ := asked.Load().(string); got != want {
			t.Errorf("proxy was asked %q, want %q", got, want)
		}
		if status == http.StatusOK && err != nil {
			t.Fatalf("through the tunnel: %v", err)
		}
		if status != http.StatusOK && (err == nil || !strings.Contains(err.Error(), "407")) {
			t.Errorf("refused tunnel: Export = %v, want an error naming 407", err)
		}
	}
	if len(f.requests()) != 1 {
		t.Errorf("Loki received %d pushes, want 1", len(f.requests()))
	}
}

// TestUnsupportedProxy checks that a SOCKS proxy from the environment is
// a clear error, not a direct connection.
func TestUnsupportedProxy(t *testing.T) {
	c := newTestClient(t, fastConfig("http://127.0.0.1:1"))
	c.transport.proxy = http.ProxyURL(&url.URL{Scheme: "socks5", Host: "127.0.0.1:1080"})
	cfgCtx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := c.Export(cfgCtx, testBatch(1, 1))
	if err == nil || !strings.Contains(err.Error(), `proxy scheme "socks5" is not supported`) {
		t.Errorf("Export = %v, want the unsupported proxy named", err)
	}
}

// FuzzTransportResponse feeds arbitrary bytes as Loki's answer: the
// transport returns a response or an error, never panics or hangs, and
// never reuses a connection it did not read to the end.
func FuzzTransportResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n\r\n",
		"HTTP/1.1 500 x\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 307 Temporary Redirect\r\nLocation: ://bad\r\nContent-Length: 0\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		tr := newTransport(nil, time.Second)
		tr.proxy = func(*http.Request) (*url.URL, error) { return nil, nil }
		tr.dialTCP = func(ctx context.Context, _, _ string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				server.SetDeadline(time.Now().Add(2 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(server))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				server.Write(answer)
			}()
			return client, nil
		}
		defer tr.closeIdle()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		body := "payload"
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://loki.test/loki/api/v1/push", strings.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
		resp, err := tr.Do(req)
		if err != nil {
			if resp != nil {
				t.Fatal("response and error")
			}
			return
		}
		drain(resp.Body)
		tr.mu.Lock()
		idle := tr.idle
		tr.mu.Unlock()
		if idle != nil && resp.Close {
			t.Errorf("kept a connection the server asked to close")
		}
	})
}

// TestEarlyAnswer checks a server that answers before reading the body and
// closes the connection (as Loki does with 413 when Content-Length is over
// its limit): the client must read that answer, not report the broken
// write, so that the batch is split and delivered.
func TestEarlyAnswer(t *testing.T) {
	const limit = 256 << 10
	f := newFake(t, nil)
	var early atomic.Int32
	addr := serveConns(t, func(conn net.Conn) {
		br := bufio.NewReader(conn)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.ContentLength > limit {
				early.Add(1)
				io.WriteString(conn, "HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 9\r\n\r\ntoo large")
				conn.(*net.TCPConn).CloseWrite()
				return // closes without reading the body
			}
			w := httptest.NewRecorder()
			f.ServeHTTP(w, req)
			resp := w.Result()
			resp.ContentLength = int64(w.Body.Len())
			if err := resp.Write(conn); err != nil {
				return
			}
		}
	})
	c := newTestClient(t, fastConfig("http://"+addr))
	// About 8 MB of lines that snappy cannot shrink: more than the
	// sockets buffer, so the server answers while the body is being written.
	batch := bigBatch(4000)
	if err := c.Export(context.Background(), batch); err != nil {
		t.Fatalf("Export: %v", err)
	}
	st := c.Stats()
	if early.Load() == 0 || st.Splits == 0 {
		t.Errorf("%d early answers, %d splits: the test did not exercise the early 413", early.Load(), st.Splits)
	}
	if got := len(f.lines(func(int) bool { return true })); got != 4000 || st.EntriesSent != 4000 {
		t.Errorf("Loki got %d lines, client counted %d sent, want 4000", got, st.EntriesSent)
	}
}

// TestTLSKeepAlive checks that pushes over TLS share one connection: what
// a TLS 1.3 server sends after its handshake (session tickets) must not
// make the idle connection look used.
func TestTLSKeepAlive(t *testing.T) {
	p := newPKI(t, t.TempDir())
	f := newFake(t, nil)
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(f)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, MinVersion: tls.VersionTLS13}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := fastConfig(srv.URL)
	cfg.TLS = TLSConfig{CAFile: p.caFile}
	c := newTestClient(t, cfg)
	for i := range 5 {
		if err := c.Export(context.Background(), testBatch(3, 3)); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 5 pushes over TLS, want 1", n)
	}
}
