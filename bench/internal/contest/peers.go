//go:build !nopeers

package contest

import (
	"context"

	"github.com/grafana/loki-client-go/loki"
	slogloki "github.com/samber/slog-loki/v3"
	"go.opentelemetry.io/contrib/bridges/otelslog"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

var peers = []Contestant{
	{Name: SlogLoki, Desc: "github.com/samber/slog-loki/v3 with loki-client-go's default config", Ships: true, New: newSlogLoki},
	{Name: OTel, Desc: "otelslog + sdk/log BatchProcessor + otlploghttp (defaults)", Ships: true, New: newOTel},
}

func newSlogLoki(env Env) (*Instance, error) {
	cfg, err := loki.NewDefaultConfig(env.ReceiverURL + "/loki/api/v1/push")
	if err != nil {
		return nil, err
	}
	client, err := loki.New(cfg)
	if err != nil {
		return nil, err
	}
	// loki-client-go has no flush: Stop sends the pending batches (with
	// retries) and stops. It is idempotent.
	stop := func(context.Context) error { client.Stop(); return nil }
	return &Instance{
		Handler: slogloki.Option{Client: client}.NewLokiHandler(),
		Flush:   stop,
		Close:   stop,
	}, nil
}

func newOTel(env Env) (*Instance, error) {
	exp, err := otlploghttp.New(context.Background(), otlploghttp.WithEndpointURL(env.ReceiverURL+"/v1/logs"))
	if err != nil {
		return nil, err
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	return &Instance{
		Handler: otelslog.NewHandler("bench", otelslog.WithLoggerProvider(lp)),
		Flush:   lp.ForceFlush,
		Close:   lp.Shutdown,
	}, nil
}
