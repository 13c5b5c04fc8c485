package handler

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigValidation(t *testing.T) {
	long := strings.Repeat("v", 2049)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" = valid
	}{
		{"zero value", Config{}, ""},
		{"full", Config{URL: "https://loki.example:3100/loki/api/v1/push", Labels: map[string]string{"app": "a", "_x": "y"},
			LabelKeys: []string{"http.method", "level"}, MetadataKeys: []string{"trace-x"}, Format: "json", Protocol: "json",
			BatchWait: time.Second, BatchSize: 1, MaxBufferBytes: 1, MaxStreams: 1, MaxLineSize: 64,
			SpoolMode: "always", SpoolSync: "batch", MaxSpoolBytes: 1, MaxAge: time.Hour,
			Compression: "none", MinBackoff: time.Millisecond, MaxBackoff: time.Second, MaxRetryTime: time.Minute,
			SpoolSyncInterval: time.Second, SpillAfter: time.Second}, ""},
		{"json gzip", Config{Protocol: "json", Compression: "GZIP"}, ""},
		{"protobuf snappy", Config{Compression: "snappy"}, ""},
		{"only max backoff above default min", Config{MaxBackoff: time.Second}, ""},
		{"compression unknown", Config{Protocol: "json", Compression: "zstd"}, "compression"},
		{"compression gzip with protobuf", Config{Compression: "gzip"}, "compression"},
		{"compression snappy with json", Config{Protocol: "json", Compression: "snappy"}, "compression"},
		{"negative min backoff", Config{MinBackoff: -1}, "min_backoff"},
		{"negative max backoff", Config{MaxBackoff: -1}, "max_backoff"},
		{"negative retry time", Config{MaxRetryTime: -1}, "max_retry_time"},
		{"negative sync interval", Config{SpoolSyncInterval: -1}, "spool_sync_interval"},
		{"negative spill after", Config{SpillAfter: -1}, "spill_after"},
		{"max backoff below min", Config{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "max_backoff"},
		{"max backoff below default min", Config{MaxBackoff: time.Millisecond}, "min_backoff 500ms"},
		{"bad url", Config{URL: "://nope"}, "url"},
		{"url scheme", Config{URL: "ftp://x"}, "url"},
		{"url no host", Config{URL: "http://"}, "url"},
		{"url password not echoed", Config{URL: "ftp://u:hunter2secret@x"}, "url"},
		{"label name", Config{Labels: map[string]string{"bad-name": "x"}}, `label name "bad-name"`},
		{"label reserved", Config{Labels: map[string]string{"__name__": "x"}}, "label name"},
		{"label digit", Config{Labels: map[string]string{"1a": "x"}}, "label name"},
		{"label value long", Config{Labels: map[string]string{"a": long}}, "2048"},
		{"label value utf8", Config{Labels: map[string]string{"a": "\xff"}}, "UTF-8"},
		{"too many labels", Config{Labels: sixteen()}, "15"},
		{"format", Config{Format: "xml"}, "format"},
		{"protocol", Config{Protocol: "grpc"}, "protocol"},
		{"spool mode", Config{SpoolMode: "sometimes"}, "spool_mode"},
		{"spool sync", Config{SpoolSync: "often"}, "spool_sync"},
		{"negative batch wait", Config{BatchWait: -1}, "batch_wait"},
		{"negative timeout", Config{Timeout: -1}, "timeout"},
		{"negative max age", Config{MaxAge: -1}, "max_age"},
		{"negative batch size", Config{BatchSize: -1}, "batch_size"},
		{"negative buffer", Config{MaxBufferBytes: -1}, "max_buffer_bytes"},
		{"negative streams", Config{MaxStreams: -1}, "max_streams"},
		{"negative line", Config{MaxLineSize: -1}, "max_line_size"},
		{"tiny line", Config{MaxLineSize: 10}, "max_line_size"},
		{"negative spool", Config{MaxSpoolBytes: -1}, "max_spool_bytes"},
		{"empty label key", Config{LabelKeys: []string{""}}, "label_keys"},
		{"key in both", Config{LabelKeys: []string{"a"}, MetadataKeys: []string{"a"}}, "both"},
		{"cert without key", Config{TLS: TLSConfig{CertFile: "c.pem"}}, "cert_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := validate(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want one containing %q", tt.wantErr)
			case err != nil && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not mention %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "hunter2"):
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func sixteen() map[string]string {
	m := map[string]string{}
	for _, c := range "abcdefghijklmnop" {
		m[string(c)] = "x"
	}
	return m
}

func TestConfigDefaults(t *testing.T) {
	s, err := validate(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.URL != DefaultURL || s.Format != "logfmt" || s.Protocol != "protobuf" || s.BatchWait != time.Second ||
		s.BatchSize != 1<<20 || s.MaxBufferBytes != 8<<20 || s.MaxStreams != 1000 || s.MaxLineSize != 256*1024 {
		t.Errorf("defaults: %+v", s.Config)
	}
	if len(s.static) != 1 || s.static[0].Name != "service_name" {
		t.Errorf("static labels %v", s.static)
	}
	// With a spool, memory defaults to half as much; a value set stays.
	if s, err := validate(Config{SpoolDir: t.TempDir()}); err != nil || s.MaxBufferBytes != 4<<20 {
		t.Errorf("MaxBufferBytes with a SpoolDir: %d, %v; want 4 MiB", s.MaxBufferBytes, err)
	}
	if s, err := validate(Config{SpoolDir: t.TempDir(), MaxBufferBytes: 16 << 20}); err != nil || s.MaxBufferBytes != 16<<20 {
		t.Errorf("MaxBufferBytes 16 MiB set with a SpoolDir: %d, %v", s.MaxBufferBytes, err)
	}
}

func TestConfigTags(t *testing.T) {
	src := `
url: http://loki:3100
tenant_id: t1
labels: {app: api}
label_keys: [env]
metadata_keys: [request_id]
batch_wait: 2s
batch_size: 1024
max_line_size: 4096
tls_config: {ca_file: ca.pem, insecure_skip_verify: true}
`
	var c Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://loki:3100" || c.TenantID != "t1" || c.Labels["app"] != "api" || c.LabelKeys[0] != "env" ||
		c.MetadataKeys[0] != "request_id" || c.BatchWait != 2*time.Second || c.BatchSize != 1024 ||
		c.MaxLineSize != 4096 || c.TLS.CAFile != "ca.pem" || !c.TLS.InsecureSkipVerify {
		t.Errorf("yaml: %+v", c)
	}
	var j Config
	if err := json.Unmarshal([]byte(`{"url":"http://x","tenant_id":"t","max_streams":5,"format":"json"}`), &j); err != nil {
		t.Fatal(err)
	}
	if j.URL != "http://x" || j.TenantID != "t" || j.MaxStreams != 5 || j.Format != "json" {
		t.Errorf("json: %+v", j)
	}
}
