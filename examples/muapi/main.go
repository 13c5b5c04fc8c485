// Command muapi is a small HTTP API service that logs straight to Grafana
// Loki through lokislog, as a Go service in Kubernetes would without a
// log-shipping sidecar.
//
//	go run ./examples/muapi                                # embedded fake Loki
//	LOKI_URL=http://localhost:3100 go run ./examples/muapi # a real Loki
//	curl -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' localhost:8080/users/1
//
// Routes: GET /healthz, GET /users/{id}, POST /orders (JSON {"user_id": 1,
// "item": "book", "quantity": 2}).
//
// A middleware logs every request once (method, path, route, status,
// bytes, duration, request_id, user_agent) with the request's trace
// context, so Loki stores trace_id and span_id as structured metadata; the
// request id goes to structured metadata too, not to a label.
//
// # Configuration (environment)
//
//   - ADDR: listen address, default ":8080".
//   - SHUTDOWN_TIMEOUT: how long SIGTERM may take, draining HTTP requests
//     and then sending queued logs, default "5s". Kubernetes'
//     terminationGracePeriodSeconds must be longer.
//   - LOKI_URL, LOKI_TENANT_ID, LOKI_LABELS ("k=v,k=v"), LOKI_LABEL_KEYS,
//     LOKI_METADATA_KEYS, LOKI_SPOOL_DIR, LOKI_BEARER_TOKEN_FILE, ...:
//     lokislog's settings, read by handler.ConfigFromEnv. With LOKI_URL
//     unset the service starts an embedded fake Loki (exporter/lokitest)
//     on 127.0.0.1 and prints what it received at exit. service_name
//     defaults to "mu-api" and the metadata keys to "request_id".
//
// # Shutdown
//
// On SIGTERM or SIGINT the server stops accepting connections and waits
// for requests in flight (http.Server.Shutdown), then the log handler sends
// what is queued (Handler.Shutdown); both share the SHUTDOWN_TIMEOUT
// deadline. What is not sent by then stays in the spool directory, when
// one is set, and is sent by the next start.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lokislog/lokislog/exporter/lokitest"
	"github.com/lokislog/lokislog/handler"

	// The operators of this service may run Loki behind mutual TLS
	// (LOKI_CERT_FILE, LOKI_KEY_FILE): link client certificates in. A
	// service that never needs them leaves this out and is 0.17 MB
	// smaller; exporter/jsongzip does the same for LOKI_PROTOCOL=json.
	_ "github.com/lokislog/lokislog/exporter/clientcert"
)

// Defaults of [Config].
const (
	defaultAddr            = ":8080"
	defaultShutdownTimeout = 5 * time.Second
	defaultServiceName     = "mu-api"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadConfig()
	if err == nil {
		cfg.Out = os.Stdout
		err = run(ctx, cfg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mu-api:", err)
		os.Exit(1)
	}
}

// Config is the service's configuration.
type Config struct {
	// Addr is the listen address. Default ":8080".
	Addr string
	// ShutdownTimeout bounds the shutdown: draining HTTP requests, then
	// sending queued logs. Default 5s.
	ShutdownTimeout time.Duration
	// Loki configures the log handler. An empty URL starts an embedded
	// fake Loki.
	Loki handler.Config
	// Out receives the service's own messages (embedded Loki, stats at
	// exit). Default: discarded.
	Out io.Writer

	// onListen, when set, is called with the listening address before the
	// first request is served (for tests).
	onListen func(net.Addr)
	// routes, when set, adds routes to the service's mux (for tests).
	routes func(*http.ServeMux)
}

// loadConfig reads the configuration from the environment: ADDR,
// SHUTDOWN_TIMEOUT, and the LOKI_* variables of handler.ConfigFromEnv.
func loadConfig() (Config, error) {
	cfg := Config{Addr: os.Getenv("ADDR"), ShutdownTimeout: defaultShutdownTimeout}
	if cfg.Addr == "" {
		cfg.Addr = defaultAddr
	}
	var errs []error
	if v := os.Getenv("SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("SHUTDOWN_TIMEOUT %q: want a duration such as \"5s\"", v))
		case d <= 0:
			errs = append(errs, fmt.Errorf("SHUTDOWN_TIMEOUT %q: must be positive", v))
		default:
			cfg.ShutdownTimeout = d
		}
	}
	loki, err := handler.ConfigFromEnv()
	if err != nil {
		errs = append(errs, err)
	}
	if loki.Labels == nil {
		loki.Labels = map[string]string{}
	}
	if _, ok := loki.Labels["service_name"]; !ok {
		loki.Labels["service_name"] = defaultServiceName
	}
	if len(loki.MetadataKeys) == 0 {
		loki.MetadataKeys = []string{"request_id"}
	}
	cfg.Loki = loki
	if len(errs) > 0 {
		return Config{}, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// run serves the API until ctx ends, then shuts down: HTTP first, so that
// the last requests are logged, then the log handler, within
// cfg.ShutdownTimeout.
func run(ctx context.Context, cfg Config) (err error) {
	if cfg.Addr == "" {
		cfg.Addr = defaultAddr
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = defaultShutdownTimeout
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}

	var fake *lokitest.Server
	if cfg.Loki.URL == "" {
		fake, err = lokitest.New()
		if err != nil {
			return fmt.Errorf("start embedded loki: %w", err)
		}
		defer fake.Close()
		cfg.Loki.URL = fake.URL()
		fmt.Fprintf(out, "LOKI_URL not set: using the embedded fake Loki at %s\n", fake.URL())
	}

	h, err := handler.New(cfg.Loki)
	if err != nil {
		return err
	}
	logger := slog.New(h)
	// shutdownLogs sends the queued records; every return below goes
	// through it, so nothing logged is left behind.
	shutdownLogs := func(ctx context.Context) error {
		if err := h.Shutdown(ctx); err != nil {
			return fmt.Errorf("shutdown log handler: %w", err)
		}
		return nil
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		logger.Error("listen failed", slog.String("addr", cfg.Addr), slog.Any("err", err))
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		return errors.Join(fmt.Errorf("listen: %w", err), shutdownLogs(sctx))
	}

	a := newAPI(logger)
	mux := a.routes()
	if cfg.routes != nil {
		cfg.routes(mux)
	}
	srv := &http.Server{
		Handler:           withRequestLogging(logger, mux),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		// net/http's own errors (TLS handshakes, panics) go to Loki too.
		ErrorLog: slog.NewLogLogger(h.WithAttrs([]slog.Attr{slog.String("component", "http")}), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", slog.String("addr", ln.Addr().String()))
	if cfg.onListen != nil {
		cfg.onListen(ln.Addr())
	}

	var errs []error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", slog.String("cause", context.Cause(ctx).Error()),
			slog.Duration("timeout", cfg.ShutdownTimeout))
	case err := <-serveErr:
		serveErr = nil
		logger.Error("serve failed", slog.Any("err", err))
		errs = append(errs, fmt.Errorf("serve: %w", err))
	}

	// One deadline for both steps, so that the whole shutdown fits in the
	// pod's termination grace period.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("requests still running at the deadline", slog.Any("err", err))
		errs = append(errs, fmt.Errorf("shutdown http: %w", err))
		_ = srv.Close()
	}
	if serveErr != nil {
		<-serveErr // http.ErrServerClosed once Shutdown or Close was called
	}
	logger.Info("stopped")
	errs = append(errs, shutdownLogs(sctx))

	st := h.Stats()
	fmt.Fprintf(out, "logs: enqueued=%d exported=%d dropped=%d spooled=%d\n",
		st.Enqueued, st.Exported, sum(st.Dropped), st.SpoolEntries)
	if fake != nil {
		d := fake.Dump()
		if d != "" && !strings.HasSuffix(d, "\n") {
			d += "\n"
		}
		fmt.Fprintf(out, "what the embedded Loki received:\n%s", d)
	}
	return errors.Join(errs...)
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
