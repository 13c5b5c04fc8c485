package handler_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lokislog/lokislog/exporter/lokitest"
	"github.com/lokislog/lokislog/handler"
)

// A service logs through the handler; the fake Loki shows what arrived:
// the stream's labels, the line and the structured metadata.
func Example() {
	loki := lokitest.NewServer() // a fake Loki on 127.0.0.1
	defer loki.Close()

	h, err := handler.New(handler.Config{
		URL:          loki.URL(),
		Labels:       map[string]string{"service_name": "shop"},
		LabelKeys:    []string{"env", "http.method"},
		MetadataKeys: []string{"request_id"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	logger := slog.New(h).With("env", "prod")
	logger.Info("request handled",
		slog.Group("http", "method", "GET", "path", "/cart", "status", 200),
		"request_id", "r-42")
	logger.Warn("slow query", "table", "orders", "ms", 812)

	// Shutdown sends what is queued (waiting at most 5s).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		fmt.Println(err)
	}
	for _, e := range loki.Entries() {
		fmt.Println(e.LabelString)
		fmt.Println(" ", e.Line)
		if e.Metadata != nil {
			fmt.Println(" ", e.Metadata)
		}
	}
	// Output:
	// {env="prod", http_method="GET", service_name="shop"}
	//   level=INFO msg="request handled" http.path=/cart http.status=200
	//   map[request_id:r-42]
	// {env="prod", service_name="shop"}
	//   level=WARN msg="slow query" table=orders ms=812
}
