package receiver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lokislog/lokislog/bench/internal/receiver/ctl"
)

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
	fmt.Fprintf(out, "%shttp://%s\n", ctl.ReadyPrefix, ln.Addr())

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
