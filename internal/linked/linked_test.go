package linked_test

// This test binary imports neither exporter/clientcert nor exporter/jsongzip:
// it sees what a program that did not opt in sees.

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lokislog/lokislog/exporter"
	"github.com/lokislog/lokislog/handler"
	"github.com/lokislog/lokislog/internal/linked"
)

func TestNotLinked(t *testing.T) {
	if linked.AppendGzip != nil || linked.LoadKeyPair != nil {
		t.Fatal("a feature is linked in although nothing imported it")
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("not read"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name string
		cfg  exporter.Config
		want string // "" for no error
	}{
		{"json default compression", exporter.Config{URL: "http://loki:3100", Protocol: "json"}, "exporter/jsongzip"},
		{"json gzip", exporter.Config{URL: "http://loki:3100", Protocol: "json", Compression: "GZIP"}, "exporter/jsongzip"},
		{"json none", exporter.Config{URL: "http://loki:3100", Protocol: "json", Compression: "none"}, ""},
		{"protobuf", exporter.Config{URL: "http://loki:3100"}, ""},
		{"client certificate", exporter.Config{URL: "https://loki:3100",
			TLS: exporter.TLSConfig{CertFile: cert, KeyFile: key}}, "exporter/clientcert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := exporter.NewClient(tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("NewClient: %v", err)
				}
				c.Shutdown(t.Context())
				return
			}
			if err == nil {
				c.Shutdown(t.Context())
				t.Fatalf("NewClient succeeded, want an error naming %s", tc.want)
			}
			if !strings.Contains(err.Error(), `import _ "github.com/lokislog/lokislog/`+tc.want+`"`) {
				t.Fatalf("error %q does not name the import %s", err, tc.want)
			}
		})
	}

	// The handler reports both at once, with its other checks.
	_, err := handler.New(handler.Config{URL: "https://loki:3100", Protocol: "json",
		TLS: handler.TLSConfig{CertFile: cert, KeyFile: key}})
	if err == nil {
		t.Fatal("handler.New succeeded")
	}
	for _, want := range []string{"exporter/jsongzip", "exporter/clientcert"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("handler.New error %q does not name %s", err, want)
		}
	}

	// With an HTTPClient of the program's own, TLS settings are its
	// business (they are ignored): no error for them.
	h, err := handler.New(handler.Config{URL: "https://loki:3100", HTTPClient: http.DefaultClient,
		TLS: handler.TLSConfig{CertFile: cert, KeyFile: key}})
	if err != nil {
		t.Fatalf("handler.New with an HTTPClient: %v", err)
	}
	h.Shutdown(t.Context())
}
