// Package ctl starts a receiver process and talks to its control
// endpoints. It is apart from package receiver so that a program that only
// watches a receiver (a benchmark's logging child) links none of the
// receiver's decoders (Loki's and OpenTelemetry's protobuf types, gRPC)
// and runs none of their initialisation: the logging child's memory is
// then the application's and the contestant's alone.
package ctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ReadyPrefix starts the line a receiver process prints when it listens.
const ReadyPrefix = "receiver listening on "

// Stats are the receiver's counters since the last reset.
type Stats struct {
	// Requests is the number of pushes accepted (2xx).
	Requests uint64 `json:"requests"`
	// Rejected is the number of pushes answered 503 during an outage.
	Rejected uint64 `json:"rejected"`
	// Failed is the number of pushes that did not decode (answered 400).
	Failed uint64 `json:"failed"`
	// Entries is the number of entries (log records) in accepted pushes.
	Entries uint64 `json:"entries"`
	// Unique is the number of distinct workload records among them;
	// Duplicates the entries whose record had arrived before; Unidentified
	// the entries without a workload request_id below the reset's n.
	Unique       uint64 `json:"unique"`
	Duplicates   uint64 `json:"duplicates"`
	Unidentified uint64 `json:"unidentified"`
	// BodyBytes is the size of the accepted push bodies as sent
	// (compressed). WireBytes adds the request line and headers;
	// RejectedWireBytes is the same for pushes answered 503.
	BodyBytes         uint64 `json:"body_bytes"`
	WireBytes         uint64 `json:"wire_bytes"`
	RejectedWireBytes uint64 `json:"rejected_wire_bytes"`
	// LokiProtobuf, LokiJSON and OTLP count entries by protocol.
	LokiProtobuf uint64 `json:"loki_protobuf"`
	LokiJSON     uint64 `json:"loki_json"`
	OTLP         uint64 `json:"otlp"`
	// LastNewUnixNano is the wall-clock time at which Unique last grew;
	// zero if it never did.
	LastNewUnixNano int64 `json:"last_new_unix_nano"`
	// OutageUntilUnixNano is the end of the current or last outage.
	OutageUntilUnixNano int64 `json:"outage_until_unix_nano"`
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

// Start runs cmd (a program that calls receiver.Serve with stdinEOF set, such as
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
			if line := sc.Text(); strings.HasPrefix(line, ReadyPrefix) {
				select {
				case lines <- strings.TrimPrefix(line, ReadyPrefix):
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

// CloseIdleConnections closes the client's idle connections to the receiver.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }
