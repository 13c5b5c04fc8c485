package handler

import (
	"fmt"
	"time"

	"github.com/lokislog/lokislog/buffer"
	"github.com/lokislog/lokislog/exporter"
)

// TLSConfig holds the TLS settings for https URLs: CA file, client
// certificate and key (mTLS), server name, and InsecureSkipVerify (only
// when asked). It is the exporter's type.
type TLSConfig = exporter.TLSConfig

// New validates cfg and builds the pipeline: the Loki push client and the
// buffer with its sending goroutine. It never contacts Loki; a Loki that is
// down at start-up is normal. Call [Handler.Shutdown] to send what is
// queued and stop the goroutine.
func New(cfg Config) (*Handler, error) {
	s, err := validate(cfg)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(s.MeterProvider)
	if err != nil {
		return nil, fmt.Errorf("handler: metrics: %w", err)
	}
	h, err := build(s, m)
	if err != nil {
		_ = m.stop()
		return nil, err
	}
	m.src.Store(h)
	return h, nil
}

// build creates the client, the buffer and the Handler, with m's hooks.
func build(s *settings, m *metrics) (*Handler, error) {
	cc := exporter.Config{
		URL:          s.URL,
		TenantID:     s.TenantID,
		Protocol:     s.Protocol,
		Username:     s.Username,
		Password:     s.Password,
		BearerToken:  s.BearerToken,
		Headers:      s.Headers,
		TLS:          s.TLS,
		HTTPClient:   s.HTTPClient,
		Timeout:      s.Timeout,
		Compression:  s.Compression,
		MinBackoff:   s.MinBackoff,
		MaxBackoff:   s.MaxBackoff,
		MaxRetryTime: s.MaxRetryTime,
		OnRequest:    m.recordRequest,
	}
	// Two clients: a memory-only buffer sends a second batch through the
	// other while one is in flight (buffer.Config.Exporter2).
	client, err := exporter.NewClient(cc)
	if err != nil {
		return nil, fmt.Errorf("handler: %w", err)
	}
	// The second client makes one attempt per push: a failed push goes
	// back to the queue and is sent next by the first, whose retries wait
	// for Loki. Two clients retrying side by side would hold the worker
	// until the later of their backoffs ended.
	cc.MaxRetryTime = time.Nanosecond
	client2, _ := exporter.NewClient(cc) // cc was valid just above
	buf, err := buffer.New(buffer.Config{
		Exporter:          client,
		Exporter2:         client2,
		BatchWait:         s.BatchWait,
		BatchSize:         s.BatchSize,
		MaxBufferBytes:    s.MaxBufferBytes,
		ErrorHandler:      s.ErrorHandler,
		SpoolDir:          s.SpoolDir,
		SpoolMode:         s.SpoolMode,
		SpoolSync:         s.SpoolSync,
		MaxSpoolBytes:     s.MaxSpoolBytes,
		MaxAge:            s.MaxAge,
		SpoolSyncInterval: s.SpoolSyncInterval,
		SpillAfter:        s.SpillAfter,
	})
	if err != nil {
		return nil, fmt.Errorf("handler: %w", err)
	}
	p := newPipeline(s, meteredSink{Buffer: buf, m: m})
	p.clientStats = func() clientCounters {
		cs, c2 := client.Stats(), client2.Stats()
		return clientCounters{Requests: cs.Requests + c2.Requests, Retries: cs.Retries + c2.Retries, BytesSent: cs.BytesSent + c2.BytesSent}
	}
	return &Handler{p: p, base: baseStream{set: p.staticSet}}, nil
}
