package deps

import (
	_ "github.com/cenkalti/backoff/v4"
	_ "github.com/grafana/loki/pkg/push"
	_ "github.com/klauspost/compress/s2"
	_ "github.com/samber/slog-multi"
	_ "go.opentelemetry.io/otel/metric"
	_ "go.opentelemetry.io/otel/sdk/metric"
	_ "go.opentelemetry.io/otel/trace"
	_ "go.uber.org/goleak"
	_ "google.golang.org/protobuf/encoding/protowire"
	_ "go.yaml.in/yaml/v3"
)
