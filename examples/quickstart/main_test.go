package main

import (
	"context"
	"strings"
	"testing"
)

func TestQuickstartWithEmbeddedLoki(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), "", &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		`stream {env="dev", http_method="GET", service_name="quickstart"} (2 entries)`,
		`stream {env="dev", http_method="POST", service_name="quickstart"} (2 entries)`,
		`level=INFO msg="request handled" version=1.4.2 http.path=/users/42 http.status=200 duration=3ms`,
		`metadata: request_id=req-0004 span_id=00f067aa0ba902b7 trace_id=4bf92f3577b34da6a3ce929d0e0e4736`,
		`enqueued=4 exported=4 dropped=0`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
