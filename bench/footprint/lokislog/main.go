// Command lokislog is a tiny net/http service that logs one line per request
// with lokislog. cmd/benchrun builds it with -ldflags="-s -w" to compare binary
// sizes; -check sets up the logger and exits (for GODEBUG=inittrace=1).
package main

import (
	"context"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lokislog/lokislog/handler"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	check := flag.Bool("check", false, "set up the logger and exit")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	h, err := handler.New(handler.Config{URL: os.Getenv("LOKI_URL")})
	if err != nil {
		slog.Error("lokislog", "err", err)
		os.Exit(1)
	}
	defer func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(shutdown)
	}()
	logger := slog.New(h)
	if *check {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Write([]byte("ok\n"))
		logger.InfoContext(r.Context(), "request handled", "method", r.Method, "path", r.URL.Path,
			"status", http.StatusOK, "duration", time.Since(start))
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		logger.Error("serve", "err", err)
	}
}
