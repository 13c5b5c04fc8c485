package receiver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// readyPrefix starts the line a receiver process prints when it listens.
const readyPrefix = "receiver listening on "

// Serve listens on addr (a 127.0.0.1 address; port 0 picks one), prints
// "receiver listening on http://HOST:PORT" to out, and serves until stop
// is closed or SIGINT/SIGTERM arrives. With stdinEOF set it also stops when
// its standard input reaches end of file, so that it ends with the process
// that started it.
func Serve(addr string, out io.Writer, stdinEOF bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: want a loopback address such as 127.0.0.1:0", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: New(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "%shttp://%s\n", readyPrefix, ln.Addr())

	done := make(chan struct{}, 2)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() { <-sig; done <- struct{}{} }()
	if stdinEOF {
		go func() { io.Copy(io.Discard, os.Stdin); done <- struct{}{} }()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-done:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return nil
}

// Process is a receiver running in a child process.
type Process struct {
	// URL is the receiver's base URL, http://127.0.0.1:PORT.
	URL    string
	Client *Client
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	waited chan error
}

// Start runs cmd (a program that calls [Serve] with stdinEOF set, such as
// cmd/receiver with -stdin-eof, or a re-exec of the current binary) and
// waits up to 10 s for it to listen.
func Start(cmd *exec.Cmd) (*Process, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start receiver: %w", err)
	}
	p := &Process{cmd: cmd, stdin: stdin, waited: make(chan error, 1)}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, readyPrefix) {
				select {
				case lines <- strings.TrimPrefix(line, readyPrefix):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		p.waited <- cmd.Wait()
	}()
	select {
	case u := <-lines:
		if _, err := url.Parse(u); err != nil {
			p.Close()
			return nil, fmt.Errorf("receiver printed a bad URL %q", u)
		}
		p.URL = u
		p.Client = NewClient(u)
		return p, nil
	case err := <-p.waited:
		return nil, fmt.Errorf("receiver exited before listening: %v", err)
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("receiver did not listen within 10s")
	}
}

// Close stops the receiver: it closes its standard input and kills it if
// it has not exited 5 s later.
func (p *Process) Close() error {
	p.stdin.Close()
	select {
	case <-p.waited:
		return nil
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.waited
		return errors.New("receiver did not stop; killed")
	}
}

// Client talks to a receiver's control endpoints.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient returns a client for the receiver at base.
func NewClient(base string) *Client {
	return &Client{base: strings.TrimSuffix(base, "/"), hc: &http.Client{Timeout: 10 * time.Second}}
}

func (c *Client) post(path string) error {
	resp, err := c.hc.Post(c.base+path, "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// Reset zeroes the receiver's counters and sizes its bitmap for n ids.
func (c *Client) Reset(n uint64) error { return c.post(fmt.Sprintf("/control/reset?n=%d", n)) }

// Outage makes the receiver answer 503 for d.
func (c *Client) Outage(d time.Duration) error {
	return c.post("/control/outage?for=" + url.QueryEscape(d.String()))
}

// Stats fetches the receiver's counters.
func (c *Client) Stats() (Stats, error) {
	var st Stats
	resp, err := c.hc.Get(c.base + "/control/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("stats: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// Pid returns the receiver process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }
