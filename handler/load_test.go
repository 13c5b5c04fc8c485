package handler

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.yaml.in/yaml/v3"
)

// exampleConfig is what testdata/config.yaml and config.json hold.
func exampleConfig() Config {
	return Config{
		URL: "https://loki.example.com:3100", TenantID: "team-a",
		Labels:    map[string]string{"service_name": "mu-api", "env": "prod"},
		LabelKeys: []string{"http.method"}, MetadataKeys: []string{"request_id", "user_id"},
		Level: slog.LevelDebug, AddSource: true, Format: "json",
		Protocol: "json", Compression: "gzip", BatchWait: 2 * time.Second, BatchSize: 512 << 10,
		MaxBufferBytes: 16 << 20, MaxStreams: 500, MaxLineSize: 128 << 10,
		Timeout: 15 * time.Second, MinBackoff: 250 * time.Millisecond, MaxBackoff: time.Minute, MaxRetryTime: 5 * time.Minute,
		Username: "loki-user", Password: "s3cret", Headers: map[string]string{"X-Env": "prod"},
		TLS:      TLSConfig{ServerName: "loki.internal"},
		SpoolDir: "/var/lib/mu-api/loki-spool", SpoolMode: "spill", SpoolSync: "interval",
		SpoolSyncInterval: 500 * time.Millisecond, MaxSpoolBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour, SpillAfter: 10 * time.Second,
	}
}

func TestLoadConfigFile(t *testing.T) {
	want := exampleConfig()
	for _, file := range []string{"config.yaml", "config.json"} {
		t.Run(file, func(t *testing.T) {
			got, err := LoadConfigFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("loaded\n%+v\nwant\n%+v", got, want)
			}
			if _, err := validate(got); err != nil {
				t.Errorf("example does not validate: %v", err)
			}
		})
	}
	got, err := LoadConfigFile(filepath.Join("testdata", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got.URL != "http://loki:3100" || got.Labels["service_name"] != "api" || got.Level != nil || got.BatchWait != 0 {
		t.Errorf("minimal: %+v", got)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := []struct {
		name, format, in string
		want             []string // all must be in the error
	}{
		{"unknown key", "yaml", "url: x\nbogus: 1\n", []string{"line 2", `unknown field "bogus"`}},
		{"promtail name", "yaml", "batchwait: 1s\n", []string{`"batchwait"`, "batch_wait"}},
		{"nested unknown yaml", "yaml", "tls_config:\n  ca_fle: x\n", []string{"line 2", `"tls_config.ca_fle"`}},
		{"nested unknown json", "json", `{"tls_config":{"ca_fle":"x"}}`, []string{`"tls_config.ca_fle"`}},
		{"unknown json", "json", `{"url":"x","batchsize":1}`, []string{`"batchsize"`, "batch_size"}},
		{"bad duration", "yaml", "batch_wait: 1x\n", []string{"line 1", "batch_wait", `"1x"`}},
		{"bare number duration", "yaml", "timeout: 5\n", []string{"timeout", `"5"`}},
		{"bare number duration json", "json", `{"timeout":5}`, []string{"timeout", "5"}},
		{"negative size", "yaml", "batch_size: -1\n", []string{"batch_size", `"-1"`}},
		{"bad size unit", "json", `{"batch_size":"1XB"}`, []string{"batch_size", `"1XB"`}},
		{"size overflow", "yaml", "max_spool_bytes: 99999999999TiB\n", []string{"max_spool_bytes", "too large"}},
		{"bad level", "yaml", "level: loud\n", []string{"level", `"loud"`}},
		{"bad level json", "json", `{"level":true}`, []string{"level"}},
		{"list for map", "yaml", "labels: [a, b]\n", []string{"line 1", "labels"}},
		{"string for int json", "json", `{"max_streams":"many"}`, []string{"max_streams", `"many"`}},
		{"fraction for int yaml", "yaml", "max_streams: 1.5\n", []string{"max_streams", `"1.5"`}},
		{"number for label json", "json", `{"labels":{"a":1}}`, []string{"labels", "number", "string"}},
		{"string for bool yaml", "yaml", "add_source: sometimes\n", []string{"add_source"}},
		{"duplicate yaml", "yaml", "url: a\nurl: b\n", []string{"url", "twice"}},
		{"duplicate json", "json", `{"url":"a","url":"b"}`, []string{"url", "twice"}},
		{"not a mapping", "yaml", "- url\n", []string{"mapping"}},
		{"not an object", "json", `["url"]`, []string{"object"}},
		{"tls not a mapping", "yaml", "tls_config: yes\n", []string{"tls_config", "mapping"}},
		{"merge key", "yaml", "base: &b {url: x}\n", []string{`unknown field "base"`}},
		{"merge", "yaml", "<<: {url: x}\n", []string{"merge"}},
		{"json trailing", "json", `{"url":"x"} {}`, []string{"invalid"}},
		{"json syntax", "json", `{"url":`, []string{"unexpected end"}},
		{"format", "toml", "url = 'x'", []string{"toml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(strings.NewReader(tt.in), tt.format)
			if err == nil {
				t.Fatalf("no error for %q", tt.in)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	for file, want := range map[string]string{
		"promtail_style.yaml": "batch_wait",
		"typo_nested.json":    "tls_config.ca_fle",
		"missing.yaml":        "no such file",
		"config.toml":         "extension",
	} {
		_, err := LoadConfigFile(filepath.Join("testdata", file))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", file, err, want)
		}
	}
	big := strings.Repeat("#", MaxConfigSize+1)
	if _, err := LoadConfig(strings.NewReader(big), "yaml"); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized config: %v", err)
	}
	if c, err := LoadConfig(strings.NewReader("# nothing\n"), "yaml"); err != nil || !reflect.DeepEqual(c, Config{}) {
		t.Errorf("empty YAML: %+v, %v", c, err)
	}
}

// TestConfigRoundTrip writes a Config with every serialisable field set
// and reads it back, in both formats.
func TestConfigRoundTrip(t *testing.T) {
	c := exampleConfig()
	c.TLS = TLSConfig{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "s", InsecureSkipVerify: true}
	c.BearerToken = "tok"
	c.Level = slog.LevelWarn + 2
	// Every field with a json name must be set, so that a new field that
	// the round trip loses fails here.
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if tag := f.Tag.Get("json"); tag != "-" && v.Field(i).IsZero() {
			t.Errorf("field %s is zero in the round-trip config", f.Name)
		}
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON Config
	if err := json.Unmarshal(j, &fromJSON); err != nil {
		t.Fatalf("%v\n%s", err, j)
	}
	if !reflect.DeepEqual(fromJSON, c) {
		t.Errorf("json round trip:\n%+v\nwant\n%+v\n%s", fromJSON, c, j)
	}
	if !bytes.Contains(j, []byte(`"batch_wait":"2s"`)) || !bytes.Contains(j, []byte(`"level":"WARN+2"`)) {
		t.Errorf("json form: %s", j)
	}
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var fromYAML Config
	if err := yaml.Unmarshal(y, &fromYAML); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if !reflect.DeepEqual(fromYAML, c) {
		t.Errorf("yaml round trip:\n%+v\nwant\n%+v\n%s", fromYAML, c, y)
	}
	// The zero Config writes nothing.
	if j, _ := json.Marshal(Config{}); string(j) != "{}" {
		t.Errorf("zero Config as JSON: %s", j)
	}
}

// TestFileConfigMatchesConfig checks that fileConfig has exactly Config's
// json/yaml keys, plus "level".
func TestFileConfigMatchesConfig(t *testing.T) {
	names := func(typ reflect.Type, format string) map[string]bool {
		m := map[string]bool{}
		for i := range typ.NumField() {
			if n, _, _ := strings.Cut(typ.Field(i).Tag.Get(format), ","); n != "" && n != "-" {
				m[n] = true
			}
		}
		return m
	}
	for _, format := range []string{"json", "yaml"} {
		cfg, file := names(reflect.TypeFor[Config](), format), names(reflect.TypeFor[fileConfig](), format)
		cfg["level"] = true
		if !reflect.DeepEqual(cfg, file) {
			t.Errorf("%s keys differ:\nConfig     %v\nfileConfig %v", format, cfg, file)
		}
	}
}

// TestUnmarshalKeepsFields checks that decoding over a Config keeps the
// fields the input does not name, code-only fields included, and leaves
// the Config unchanged on error.
func TestUnmarshalKeepsFields(t *testing.T) {
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelError)
	mp := noop.NewMeterProvider()
	base := func() Config {
		return Config{URL: "http://a", TenantID: "t", Level: lv, MeterProvider: mp, ErrorHandler: func(error) {}}
	}
	c := base()
	if err := json.Unmarshal([]byte(`{"tenant_id":"u","batch_wait":"3s"}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://a" || c.TenantID != "u" || c.BatchWait != 3*time.Second || c.Level != lv || c.MeterProvider != mp || c.ErrorHandler == nil {
		t.Errorf("json over a Config: %+v", c)
	}
	c = base()
	if err := yaml.Unmarshal([]byte("tenant_id: u\nlevel: info\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://a" || c.TenantID != "u" || c.Level != slog.LevelInfo || c.MeterProvider != mp {
		t.Errorf("yaml over a Config: %+v", c)
	}
	c = base()
	if err := json.Unmarshal([]byte(`{"tenant_id":"u","batch_wait":"never"}`), &c); err == nil || c.TenantID != "t" {
		t.Errorf("failed json changed the Config: %+v, %v", c, err)
	}
	if err := yaml.Unmarshal([]byte("tenant_id: u\nnope: 1\n"), &c); err == nil || c.TenantID != "t" {
		t.Errorf("failed yaml changed the Config: %+v, %v", c, err)
	}
}

// TestConfigEmbedded shows Config as a section of an application's own
// configuration.
func TestConfigEmbedded(t *testing.T) {
	var app struct {
		Listen string `yaml:"listen" json:"listen"`
		Loki   Config `yaml:"loki" json:"loki"`
	}
	src := "listen: :8080\nloki:\n  url: http://loki:3100\n  batch_wait: 250ms\n  max_buffer_bytes: 4MiB\n"
	if err := yaml.Unmarshal([]byte(src), &app); err != nil {
		t.Fatal(err)
	}
	if app.Listen != ":8080" || app.Loki.URL != "http://loki:3100" || app.Loki.BatchWait != 250*time.Millisecond || app.Loki.MaxBufferBytes != 4<<20 {
		t.Errorf("yaml: %+v", app)
	}
	err := yaml.Unmarshal([]byte("loki:\n  url: x\n  batch_wiat: 1s\n"), &app)
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "batch_wiat") {
		t.Errorf("typo in an embedded section: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"listen":":1","loki":{"url":"http://j","max_age":"2d"}}`), &app); err != nil {
		t.Fatal(err)
	}
	if app.Loki.URL != "http://j" || app.Loki.MaxAge != 48*time.Hour {
		t.Errorf("json: %+v", app)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1s", time.Second, true},
		{"500ms", 500 * time.Millisecond, true},
		{"1h30m", 90 * time.Minute, true},
		{"0", 0, true},
		{" 2s ", 2 * time.Second, true},
		{"7d", 7 * 24 * time.Hour, true},
		{"1w", 7 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"1.5d", 36 * time.Hour, true},
		{"2w3d4h5m", (14+3)*24*time.Hour + 4*time.Hour + 5*time.Minute, true},
		{"-1d", -24 * time.Hour, true},
		{"5", 0, false},
		{"", 0, false},
		{"d", 0, false},
		{"1x", 0, false},
		{"1dd", 0, false},
		{"1..5d", 0, false},
		{"-", 0, false},
		{"1d5", 0, false},
		{"999999999w", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"0", 0, true},
		{"1MiB", 1 << 20, true},
		{"1MB", 1 << 20, true},
		{"1m", 1 << 20, true},
		{"512KB", 512 << 10, true},
		{"512 kib", 512 << 10, true},
		{"2G", 2 << 30, true},
		{"1TiB", 1 << 40, true},
		{"100B", 100, true},
		{"1.5KiB", 1536, true},
		{"0.5MiB", 512 << 10, true},
		{"1.3B", 0, false},
		{"", 0, false},
		{"MiB", 0, false},
		{"-1", 0, false},
		{"1XB", 0, false},
		{"1 MiBs", 0, false},
		{"1Ki", 0, false},
		{"1e6", 0, false},
		{"9223372036854775807", 1<<63 - 1, true},
		{"9223372036854775808", 0, false},
		{"8388608TiB", 0, false},
		{"1.2.3", 0, false},
	}
	for _, tt := range tests {
		got, err := parseBytes(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseBytes(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
		ok   bool
	}{
		{"debug", slog.LevelDebug, true},
		{"INFO", slog.LevelInfo, true},
		{"warn", slog.LevelWarn, true},
		{"Warning", slog.LevelWarn, true},
		{"error", slog.LevelError, true},
		{"info+2", slog.LevelInfo + 2, true},
		{"-4", slog.LevelDebug, true},
		{"12", 12, true},
		{"loud", 0, false},
		{"", 0, false},
		{"99999999999", 0, false},
	}
	for _, tt := range tests {
		got, err := parseLevel(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseLevel(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzLoadConfig feeds configuration files to both decoders: they must
// return a Config or an error, never panic, and a Config they return must
// survive a round trip through its own format.
func FuzzLoadConfig(f *testing.F) {
	for _, file := range []string{"config.yaml", "config.json", "minimal.yaml", "promtail_style.yaml", "typo_nested.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("batch_wait: 1d2h\nmax_spool_bytes: 1.5GiB\nlevel: -8\n"))
	f.Add([]byte(`{"labels":null,"tls_config":null,"level":3}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, format := range []string{"yaml", "json"} {
			c, err := LoadConfig(bytes.NewReader(data), format)
			if err != nil {
				continue
			}
			var out []byte
			if format == "json" {
				out, err = json.Marshal(c)
			} else {
				out, err = yaml.Marshal(c)
			}
			if err != nil {
				t.Fatalf("%s: marshal a loaded config: %v", format, err)
			}
			c2, err := LoadConfig(bytes.NewReader(out), format)
			if err != nil {
				t.Fatalf("%s: reload %q: %v", format, out, err)
			}
			if !reflect.DeepEqual(normalize(c), normalize(c2)) {
				t.Fatalf("%s: round trip changed the config:\n%+v\n%+v\n%s", format, c, c2, out)
			}
		}
	})
}

// normalize makes empty maps and slices nil: omitempty drops them.
func normalize(c Config) Config {
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	if len(c.Headers) == 0 {
		c.Headers = nil
	}
	if len(c.LabelKeys) == 0 {
		c.LabelKeys = nil
	}
	if len(c.MetadataKeys) == 0 {
		c.MetadataKeys = nil
	}
	return c
}
