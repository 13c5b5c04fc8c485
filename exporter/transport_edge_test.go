package exporter

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These tests script servers and proxies that misbehave, to check that the
// client's own transport never hangs, leaks its body writer, reuses a
// connection it should not, or sends what it should not where it should not.

// bigBatch returns one stream of n lines of 2000 random hex characters: a
// body snappy cannot shrink much, larger than the sockets' buffers for a
// large n, so that a server that does not read it blocks the writer.
func bigBatch(n int) *Batch {
	b := testBatch(n, n)
	rng := mrand.New(mrand.NewPCG(3, 4))
	raw := make([]byte, 1000)
	for i := range b.Streams[0].Entries {
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		b.Streams[0].Entries[i].Line = hex.EncodeToString(raw)
	}
	return b
}

// exportGuarded runs Export and fails the test if it has not returned
// after a long time (a hang, not a slow machine: every scripted fault is
// bounded by a Timeout of a few hundred milliseconds).
func exportGuarded(t *testing.T, c *Client, b *Batch) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Export(context.Background(), b) }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("Export hung")
		return nil
	}
}

// TestBadServersEnd checks that every way a server or proxy can stall
// ends within the request timeout with a retryable error, and that a
// connection whose request body was cut short is never used again.
func TestBadServersEnd(t *testing.T) {
	const headAnd500 = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
	tests := map[string]struct {
		https  bool // the URL is https (handle sees the raw TCP conn)
		proxy  bool // through a proxy that runs handle
		big    bool // an 8 MB body
		handle func(conn net.Conn, stop <-chan struct{})
		err    string // part of the error
	}{
		"never reads": {
			big:    true,
			handle: func(_ net.Conn, stop <-chan struct{}) { <-stop },
			err:    "no response within",
		},
		"head then stalled body": {
			handle: func(conn net.Conn, stop <-chan struct{}) {
				readHead(conn)
				io.WriteString(conn, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\nsome")
				<-stop
			},
			err: "status 500: some", // the reason read until the timeout
		},
		"trickled head": {
			handle: func(conn net.Conn, stop <-chan struct{}) {
				readHead(conn)
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nX-Slow: ")
				tick := time.NewTicker(5 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := io.WriteString(conn, "a"); err != nil {
						return
					}
				}
			},
			err: "no response within",
		},
		"endless chunked body": {
			handle: func(conn net.Conn, _ <-chan struct{}) {
				readHead(conn)
				io.WriteString(conn, "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n")
				chunk := "400\r\n" + strings.Repeat("x", 0x400) + "\r\n"
				for {
					if _, err := io.WriteString(conn, chunk); err != nil {
						return // the client gave up reading
					}
				}
			},
			err: "status 500: xxxx",
		},
		"early answer, body never read": {
			big: true,
			handle: func(conn net.Conn, stop <-chan struct{}) {
				readHead(conn)
				io.WriteString(conn, headAnd500) // keeps the connection open
				<-stop
			},
			err: "status 500",
		},
		"tls handshake stalls": {
			https:  true,
			handle: func(_ net.Conn, stop <-chan struct{}) { <-stop },
			err:    "no response within",
		},
		"proxy never answers connect": {
			https:  true,
			proxy:  true,
			handle: func(conn net.Conn, stop <-chan struct{}) { readHead(conn); <-stop },
			err:    "no response within",
		},
		"plain proxy never answers": {
			proxy:  true,
			handle: func(conn net.Conn, stop <-chan struct{}) { readHead(conn); <-stop },
			err:    "no response within",
		},
	}
	big := bigBatch(4000)
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var conns atomic.Int32
			stop := make(chan struct{})
			addr := serveConns(t, func(conn net.Conn) {
				conns.Add(1)
				tt.handle(conn, stop)
			})
			t.Cleanup(func() { close(stop) }) // runs before serveConns waits
			scheme := "http://"
			if tt.https {
				scheme = "https://"
			}
			u := scheme + addr
			if tt.proxy {
				u = scheme + "loki.invalid"
			}
			cfg := fastConfig(u)
			cfg.Timeout = 300 * time.Millisecond
			cfg.MaxRetryTime = 100 * time.Millisecond
			c := newTestClient(t, cfg)
			if tt.proxy {
				c.transport.proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: addr})
			}
			b := testBatch(2, 2)
			if tt.big {
				b = big
			}
			err := exportGuarded(t, c, b)
			if classify(err) != retryable || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Export = %v, want a retryable error with %q", err, tt.err)
			}
			// Every attempt had a connection of its own: none was kept
			// after a fault.
			if st := c.Stats(); uint64(conns.Load()) != st.Requests {
				t.Errorf("%d connections for %d requests, want one each", conns.Load(), st.Requests)
			}
		})
	}
}

// readHead reads a request's head (not its body) from conn.
func readHead(conn net.Conn) {
	_, _ = textproto.NewReader(bufio.NewReaderSize(conn, 16)).ReadMIMEHeader()
}

// TestUnreadAnswerBytes checks that a connection is not kept when
// bytes follow the end of an answer (a 204 with a body, two answers to one
// request): they would be taken as the answer to the next request, which
// would then count as delivered whatever the server says.
func TestUnreadAnswerBytes(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	tests := map[string]string{
		"204 with a body":   "HTTP/1.1 204 No Content\r\nContent-Length: 38\r\n\r\n" + ok,
		"two answers":       ok + ok,
		"longer than known": "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + ok,
	}
	for name, first := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u, conns := rawServer(t, func(n int) (string, bool) {
				if n == 0 {
					return first, false
				}
				return "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nfail", false
			})
			cfg := fastConfig(u)
			cfg.MaxRetryTime = 50 * time.Millisecond
			c := newTestClient(t, cfg)
			if err := c.Export(context.Background(), testBatch(1, 1)); err != nil {
				t.Fatalf("first push: %v", err)
			}
			err := c.Export(context.Background(), testBatch(1, 1))
			if se := (*StatusError)(nil); !errors.As(err, &se) || se.Status != http.StatusInternalServerError {
				t.Fatalf("second push = %v, want the server's 500, not the bytes left over from the first answer", err)
			}
			if n := conns.Load(); n != 2 {
				t.Errorf("%d connections, want 2", n)
			}
		})
	}
}

// TestSwitchingProtocols checks that an unasked-for 101 is an error
// and its connection, which no longer speaks HTTP, is not used again.
func TestSwitchingProtocols(t *testing.T) {
	addr, conns := serveRequests(t, func(conn net.Conn, c, _ int) bool {
		if c == 0 {
			io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\n")
			io.Copy(io.Discard, conn) // another protocol now: no HTTP answer ever
			return false
		}
		io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n")
		return true
	})
	cfg := fastConfig("http://" + addr)
	cfg.Timeout = time.Second
	c := newTestClient(t, cfg)
	if err := exportGuarded(t, c, testBatch(2, 2)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	if st := c.Stats(); st.Requests != 2 || conns.Load() != 2 {
		t.Errorf("%d requests on %d connections, want 2 on 2 (the retry on a new one)", st.Requests, conns.Load())
	}
}

// TestBodyClosed checks that the transport closes every request body
// it was given, on errors before any byte was written too (as a
// RoundTripper must): the client's encode buffers are reused only when no
// reader of them is open. It also checks that those errors say what failed.
func TestBodyClosed(t *testing.T) {
	// stale: a server that answers one push, then closes the connection
	// and stops listening, so that the next push finds its kept connection
	// dead and cannot dial a new one.
	stale := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			conn, err := ln.Accept()
			ln.Close()
			if err != nil {
				return
			}
			defer conn.Close()
			req, err := http.ReadRequest(bufio.NewReader(conn))
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(conn, "HTTP/1.1 204 No Content\r\n\r\n")
		}()
		t.Cleanup(func() { ln.Close(); <-done })
		return "http://" + ln.Addr().String()
	}
	tests := map[string]struct {
		url   func(t *testing.T) string
		proxy *url.URL
		warm  bool   // one push first, on a connection the server then closes
		err   string // part of the error
	}{
		"dial refused":       {url: func(*testing.T) string { return "http://127.0.0.1:1" }, err: "connection refused"},
		"unsupported proxy":  {url: func(*testing.T) string { return "http://loki.invalid" }, proxy: &url.URL{Scheme: "socks5", Host: "127.0.0.1:1"}, err: "socks5"},
		"proxy refused":      {url: func(*testing.T) string { return "http://loki.invalid" }, proxy: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, err: "proxy: dial tcp 127.0.0.1:1"},
		"proxy without host": {url: func(*testing.T) string { return "http://loki.invalid" }, proxy: &url.URL{Scheme: "http", Path: "/"}, err: "proxy URL has no host"},
		"resend not dialed":  {url: stale, warm: true, err: "connection refused"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := fastConfig(tt.url(t))
			cfg.MaxRetryTime = 20 * time.Millisecond
			c := newTestClient(t, cfg)
			if tt.proxy != nil {
				c.transport.proxy = http.ProxyURL(tt.proxy)
			}
			if tt.warm {
				if err := c.Export(context.Background(), testBatch(1, 1)); err != nil {
					t.Fatalf("first push: %v", err)
				}
			}
			if err := c.Export(context.Background(), testBatch(1, 1)); classify(err) != retryable || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("Export = %v, want a retryable error with %q", err, tt.err)
			}
			if n := c.out.open.Load() + c.raw.open.Load(); n != 0 {
				t.Errorf("%d request bodies left open", n)
			}
		})
	}
}

// TestRedirects checks the redirects the transport must not follow
// as they are: to plain http from https (the push and its credentials would
// cross the network in clear), and to a URL without a host (":80" is the
// local machine); and that a redirect to another host carries none of the
// configured headers, which may hold keys.
func TestRedirects(t *testing.T) {
	tests := map[string]struct {
		tls      bool                    // the first server is https
		location func(dst string) string // dst is the target's push URL
		want     outcome
		kept     []string // headers the target must see
		dropped  []string // headers the target must not see
	}{
		"https to http": {
			tls:      true,
			location: func(dst string) string { return dst },
			want:     rejected,
		},
		"no host": {
			location: func(string) string { return "http:///loki/api/v1/push" },
			want:     rejected,
		},
		"other host": {
			location: func(dst string) string { return strings.Replace(dst, "127.0.0.1", "localhost", 1) },
			want:     delivered,
			kept:     []string{"Content-Type", "User-Agent", "X-Scope-OrgID"},
			dropped:  []string{"Authorization", "X-Api-Key"},
		},
		"same host": {
			location: func(dst string) string { return dst },
			want:     delivered,
			kept:     []string{"Authorization", "X-Api-Key", "X-Scope-OrgID"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			target := newFake(t, nil)
			dst := target.serve() + "/loki/api/v1/push"
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Location", tt.location(dst))
				w.WriteHeader(http.StatusTemporaryRedirect)
			})
			src := httptest.NewUnstartedServer(h)
			if tt.tls {
				src.StartTLS()
			} else {
				src.Start()
			}
			defer src.Close()
			cfg := fastConfig(src.URL)
			cfg.TLS.InsecureSkipVerify = true
			cfg.BearerToken = "sesame-token"
			cfg.TenantID = "team-a"
			cfg.Headers = map[string]string{"X-Api-Key": "key-secret"}
			c := newTestClient(t, cfg)
			err := c.Export(context.Background(), testBatch(2, 2))
			if got := classify(err); got != tt.want {
				t.Fatalf("Export = %v (%v), want %v", err, got, tt.want)
			}
			reqs := target.requests()
			if tt.want == rejected {
				pe := (*PermanentError)(nil)
				if !errors.As(err, &pe) || pe.Status != http.StatusTemporaryRedirect || !strings.Contains(pe.Reason, "not followed") {
					t.Errorf("Export = %v, want a PermanentError saying the 307 was not followed", err)
				}
				if len(reqs) != 0 {
					t.Errorf("target got %d pushes, want none", len(reqs))
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("target got %d pushes, want 1", len(reqs))
			}
			for _, k := range tt.kept {
				if reqs[0].Header.Get(k) == "" {
					t.Errorf("target did not get %s", k)
				}
			}
			for _, k := range tt.dropped {
				if v := reqs[0].Header.Get(k); v != "" {
					t.Errorf("target got %s: %q", k, v)
				}
			}
		})
	}
}

// TestRequestHead checks that configured headers cannot add a second
// Host or Content-Length, or a Transfer-Encoding, to a request: the body's
// framing is the transport's alone.
func TestRequestHead(t *testing.T) {
	type head struct {
		h    textproto.MIMEHeader
		body int
	}
	got := make(chan head, 1)
	addr := serveConns(t, func(conn net.Conn) {
		br := bufio.NewReader(conn)
		tr := textproto.NewReader(br)
		if _, err := tr.ReadLine(); err != nil {
			return
		}
		h, err := tr.ReadMIMEHeader()
		if err != nil {
			return
		}
		n, _ := strconv.Atoi(h.Get("Content-Length"))
		body, _ := io.CopyN(io.Discard, br, int64(n))
		select {
		case got <- head{h, int(body)}:
		default: // only the first request is checked
		}
		io.WriteString(conn, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
	})
	cfg := fastConfig("http://" + addr)
	cfg.Headers = map[string]string{"Host": "evil.test", "Content-Length": "1", "Transfer-Encoding": "chunked", "X-Kept": "yes"}
	c := newTestClient(t, cfg)
	if err := c.Export(context.Background(), testBatch(2, 2)); err != nil {
		t.Fatalf("Export: %v", err)
	}
	r := <-got
	if v := r.h["Host"]; len(v) != 1 || v[0] != addr {
		t.Errorf("Host headers %q, want just %q", v, addr)
	}
	if v := r.h["Content-Length"]; len(v) != 1 || v[0] != strconv.Itoa(r.body) || r.body == 0 {
		t.Errorf("Content-Length headers %q for a body of %d bytes", v, r.body)
	}
	if v := r.h["Transfer-Encoding"]; v != nil {
		t.Errorf("Transfer-Encoding %q sent", v)
	}
	if r.h.Get("X-Kept") != "yes" {
		t.Errorf("configured header X-Kept not sent")
	}
}

// TestProxyRequestTarget checks the absolute-form request target of
// a push through an HTTP proxy: an IPv6 host keeps its brackets, and a
// fragment (from a redirect's Location) is not sent.
func TestProxyRequestTarget(t *testing.T) {
	tests := map[string]struct {
		url, location, want, host string
	}{
		"ipv6 target": {
			url:  "http://[::1]:3100",
			want: "http://[::1]:3100/loki/api/v1/push",
			host: "[::1]:3100",
		},
		"redirect with fragment": {
			url:      "http://loki.invalid:3100/first",
			location: "/loki/api/v1/push#frag",
			want:     "http://loki.invalid:3100/loki/api/v1/push",
			host:     "loki.invalid:3100",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, nil)
			var seen atomic.Value
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.location != "" && strings.HasPrefix(r.URL.Path, "/first") {
					io.Copy(io.Discard, r.Body)
					w.Header().Set("Location", tt.location)
					w.WriteHeader(http.StatusTemporaryRedirect)
					return
				}
				seen.Store(r.RequestURI + " " + r.Host)
				f.ServeHTTP(w, r)
			}))
			defer proxy.Close()
			c := newTestClient(t, fastConfig(tt.url))
			pu, _ := url.Parse(proxy.URL)
			c.transport.proxy = http.ProxyURL(pu)
			if err := c.Export(context.Background(), testBatch(1, 1)); err != nil {
				t.Fatal(err)
			}
			if got, want := seen.Load(), tt.want+" "+tt.host; got != want {
				t.Errorf("proxy saw %q, want %q", got, want)
			}
		})
	}
}

// proxyPKI is a CA, a certificate for Loki (loki.test and ::1) and one
// for a proxy (127.0.0.1 only), and a CA file that trusts the CA.
type proxyPKI struct {
	caFile      string
	loki, proxy tls.Certificate
}

func newProxyPKI(t *testing.T) *proxyPKI {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "proxy test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, dns []string, ips []net.IP) tls.Certificate {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			DNSNames:    dns, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
	}
	p := &proxyPKI{
		caFile: filepath.Join(t.TempDir(), "ca.crt"),
		loki:   leaf(2, []string{"loki.test"}, []net.IP{net.IPv6loopback}),
		proxy:  leaf(3, nil, []net.IP{net.IPv4(127, 0, 0, 1)}),
	}
	if err := os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProxyTLS checks the TLS names through proxies, with
// certificates verified: the tunnelled handshake names Loki's host (or
// TLSConfig.ServerName), never the proxy's, and the handshake with an https
// proxy names the proxy, never TLSConfig.ServerName (meant for Loki).
func TestProxyTLS(t *testing.T) {
	p := newProxyPKI(t)
	f := newFake(t, nil)
	loki := httptest.NewUnstartedServer(f)
	loki.TLS = &tls.Config{Certificates: []tls.Certificate{p.loki}, MinVersion: tls.VersionTLS12}
	loki.StartTLS()
	defer loki.Close()
	tests := map[string]struct {
		url, serverName string
		httpsProxy      bool
		connect         string // the CONNECT target the proxy must see
	}{
		"http proxy, name":             {url: "https://loki.test", connect: "loki.test:443"},
		"http proxy, ipv6":             {url: "https://[::1]:8443", connect: "[::1]:8443"},
		"https proxy, name":            {url: "https://loki.test", httpsProxy: true, connect: "loki.test:443"},
		"https proxy, server name set": {url: "https://loki.invalid", serverName: "loki.test", httpsProxy: true, connect: "loki.invalid:443"},
		"https proxy, ipv6, name set":  {url: "https://[::1]", serverName: "loki.test", httpsProxy: true, connect: "[::1]:443"},
		"http proxy, server name set":  {url: "https://loki.invalid:1", serverName: "loki.test", connect: "loki.invalid:1"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var asked atomic.Value
			addr := serveConns(t, func(conn net.Conn) {
				if tt.httpsProxy {
					tc := tls.Server(conn, &tls.Config{Certificates: []tls.Certificate{p.proxy}, MinVersion: tls.VersionTLS12})
					defer tc.Close()
					conn = tc
				}
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				asked.Store(req.Method + " " + req.RequestURI)
				tunnel(conn, loki.Listener.Addr().String())
			})
			cfg := fastConfig(tt.url)
			cfg.TLS = TLSConfig{CAFile: p.caFile, ServerName: tt.serverName}
			cfg.MaxRetryTime = 50 * time.Millisecond
			c := newTestClient(t, cfg)
			scheme := "http"
			if tt.httpsProxy {
				scheme = "https"
			}
			c.transport.proxy = http.ProxyURL(&url.URL{Scheme: scheme, Host: addr})
			if err := c.Export(context.Background(), testBatch(1, 1)); err != nil {
				t.Fatalf("Export: %v", err)
			}
			if got, want := asked.Load(), "CONNECT "+tt.connect; got != want {
				t.Errorf("proxy was asked %q, want %q", got, want)
			}
		})
	}
}

// TestNoResendAfterAnswer checks that a kept connection that fails
// after part of an answer arrived is not written to again by the
// transport itself: the server may have stored the push (the client's
// retry, counted as one, is another matter).
func TestNoResendAfterAnswer(t *testing.T) {
	u, conns := rawServer(t, func(n int) (string, bool) {
		if n == 0 {
			return "HTTP/1.1 204 No Content\r\n\r\n", false
		}
		return "HTTP/1.1 2", true
	})
	cfg := fastConfig(u)
	cfg.MaxRetryTime = 20 * time.Millisecond
	c := newTestClient(t, cfg)
	if err := c.Export(context.Background(), testBatch(1, 1)); err != nil {
		t.Fatalf("first push: %v", err)
	}
	if err := c.Export(context.Background(), testBatch(1, 1)); classify(err) != retryable {
		t.Fatalf("second push = %v, want a retryable error", err)
	}
	// Requests are the first push, the second, and the client's retries.
	if st := c.Stats(); st.Requests-st.Retries != 2 || uint64(conns.Load()) != st.Requests-1 {
		t.Errorf("Stats = %+v on %d connections: the transport sent the second push again", st, conns.Load())
	}
}
