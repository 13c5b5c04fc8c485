package handler

import (
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	yamlv3 "go.yaml.in/yaml/v3"
	yamlv2 "gopkg.in/yaml.v2"
)

// yamlLibs are the YAML libraries a Config must decode with: both call the
// UnmarshalYAML(func(any) error) form.
var yamlLibs = []struct {
	name      string
	unmarshal func([]byte, any) error
}{
	{"yaml.v3", yamlv3.Unmarshal},
	{"yaml.v2", yamlv2.Unmarshal},
}

// TestNoYAMLImport: package handler and what it imports must not import a
// YAML library, whose init keeps regexp and the unicode tables in every
// binary (issue 4's footprint target). Files are read by package config.
func TestNoYAMLImport(t *testing.T) {
	// The package's own non-test files, read directly: this part needs no
	// go command.
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); strings.Contains(strings.ToLower(path), "yaml") {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
	// Everything the package imports, transitively, as the linker sees it.
	goCmd := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goCmd); err != nil {
		if goCmd, err = exec.LookPath("go"); err != nil {
			t.Skipf("no go command to list the dependencies (%v); the package's own imports were checked", err)
		}
	}
	out, err := exec.Command(goCmd, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !slicesContains(deps, "github.com/lokislog/lokislog/handler") {
		t.Fatalf("go list -deps printed no dependency list:\n%s", out)
	}
	for _, d := range deps {
		if strings.Contains(strings.ToLower(d), "yaml") {
			t.Errorf("package handler depends on %s", d)
		}
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestFileConfigMatchesConfig checks that fileConfig has exactly Config's
// json/yaml keys, plus "level", and that each field's json and yaml names
// are the same: the decoder reads the json names in both formats.
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
	for _, typ := range []reflect.Type{reflect.TypeFor[fileConfig](), reflect.TypeFor[TLSConfig]()} {
		for i := range typ.NumField() {
			f := typ.Field(i)
			j, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			y, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if j != y {
				t.Errorf("%s.%s: json name %q, yaml name %q", typ.Name(), f.Name, j, y)
			}
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
		return Config{URL: "http://a", TenantID: "t", Level: lv, MeterProvider: mp, ErrorHandler: func(error) {},
			Labels: map[string]string{"app": "a"}}
	}
	c := base()
	if err := json.Unmarshal([]byte(`{"tenant_id":"u","batch_wait":"3s","labels":{"env":"e"}}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://a" || c.TenantID != "u" || c.BatchWait != 3*time.Second || c.Level != lv || c.MeterProvider != mp || c.ErrorHandler == nil ||
		!reflect.DeepEqual(c.Labels, map[string]string{"app": "a", "env": "e"}) {
		t.Errorf("json over a Config: %+v", c)
	}
	for _, lib := range yamlLibs {
		c = base()
		if err := lib.unmarshal([]byte("tenant_id: u\nlevel: info\nlabels: {env: e}\n"), &c); err != nil {
			t.Fatal(err)
		}
		if c.URL != "http://a" || c.TenantID != "u" || c.Level != slog.LevelInfo || c.MeterProvider != mp ||
			!reflect.DeepEqual(c.Labels, map[string]string{"app": "a", "env": "e"}) {
			t.Errorf("%s over a Config: %+v", lib.name, c)
		}
	}
	c = base()
	if err := json.Unmarshal([]byte(`{"tenant_id":"u","labels":{"x":"y"},"batch_wait":"never"}`), &c); err == nil || c.TenantID != "t" || len(c.Labels) != 1 {
		t.Errorf("failed json changed the Config: %+v, %v", c, err)
	}
	for _, lib := range yamlLibs {
		if err := lib.unmarshal([]byte("tenant_id: u\nlabels: {x: y}\nnope: 1\n"), &c); err == nil || c.TenantID != "t" || len(c.Labels) != 1 {
			t.Errorf("failed %s changed the Config: %+v, %v", lib.name, c, err)
		}
	}
}

// TestConfigEmbedded shows Config as a section of an application's own
// configuration, with both YAML libraries and with JSON.
func TestConfigEmbedded(t *testing.T) {
	type appConfig struct {
		Listen string `yaml:"listen" json:"listen"`
		Loki   Config `yaml:"loki" json:"loki"`
	}
	for _, lib := range yamlLibs {
		t.Run(lib.name, func(t *testing.T) {
			var app appConfig
			src := "listen: :8080\nloki:\n  url: http://loki:3100\n  batch_wait: 250ms\n  max_buffer_bytes: 4MiB\n" +
				"  tls_config: {server_name: loki.internal}\n  level: warn\n"
			if err := lib.unmarshal([]byte(src), &app); err != nil {
				t.Fatal(err)
			}
			if app.Listen != ":8080" || app.Loki.URL != "http://loki:3100" || app.Loki.BatchWait != 250*time.Millisecond ||
				app.Loki.MaxBufferBytes != 4<<20 || app.Loki.TLS.ServerName != "loki.internal" || app.Loki.Level != slog.LevelWarn {
				t.Errorf("%+v", app)
			}
			// A typo names its key; the line is added by package config,
			// which has the document.
			err := lib.unmarshal([]byte("loki:\n  url: x\n  batch_wiat: 1s\n"), &app)
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Key != "batch_wiat" || !errors.Is(err, ErrUnknownField) ||
				!strings.Contains(err.Error(), "batch_wiat: unknown field") {
				t.Errorf("typo in an embedded section: %v", err)
			}
			// An empty section does not reach UnmarshalYAML: yaml.v3 leaves
			// the Config alone, yaml.v2 sets it to the zero Config.
			app.Loki = Config{URL: "keep"}
			want := map[string]string{"yaml.v3": "keep", "yaml.v2": ""}[lib.name]
			if err := lib.unmarshal([]byte("listen: x\nloki:\n"), &app); err != nil || app.Loki.URL != want {
				t.Errorf("empty section: %+v, %v", app.Loki, err)
			}
		})
	}
	var app appConfig
	if err := json.Unmarshal([]byte(`{"listen":":1","loki":{"url":"http://j","max_age":"2d"}}`), &app); err != nil {
		t.Fatal(err)
	}
	if app.Loki.URL != "http://j" || app.Loki.MaxAge != 48*time.Hour {
		t.Errorf("json: %+v", app)
	}
}

// TestUnmarshalYAMLScalars: a YAML scalar given for a string reads as it
// is written, whatever type YAML would give it; booleans take YAML 1.1's
// words in both libraries.
func TestUnmarshalYAMLScalars(t *testing.T) {
	src := "url: 1\ntenant_id: true\nlabels: {v: 1.10, n: 0x1F, e: 1e3, d: 2024-01-02, s: '7'}\n" +
		"label_keys: [1, null_not]\nheaders: {X-N: 007}\nadd_source: yes\ntls_config: {insecure_skip_verify: on}\n"
	for _, lib := range yamlLibs {
		var c Config
		if err := lib.unmarshal([]byte(src), &c); err != nil {
			t.Fatalf("%s: %v", lib.name, err)
		}
		want := Config{URL: "1", TenantID: "true",
			Labels:    map[string]string{"v": "1.10", "n": "0x1F", "e": "1e3", "d": "2024-01-02", "s": "7"},
			LabelKeys: []string{"1", "null_not"}, Headers: map[string]string{"X-N": "007"},
			AddSource: true, TLS: TLSConfig{InsecureSkipVerify: true}}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("%s:\n%+v\nwant\n%+v", lib.name, c, want)
		}
	}
}

// TestConfigErrorKey: every key error of both decoders and of ApplyEnv is
// a *ConfigError naming the key.
func TestConfigErrorKey(t *testing.T) {
	tests := []struct {
		name string
		run  func(*Config) error
		key  string
	}{
		{"json unknown", func(c *Config) error { return json.Unmarshal([]byte(`{"tls":{}}`), c) }, "tls"},
		{"json nested", func(c *Config) error { return json.Unmarshal([]byte(`{"tls_config":{"ca_file":1}}`), c) }, "tls_config.ca_file"},
		{"json list item", func(c *Config) error { return json.Unmarshal([]byte(`{"label_keys":["a",false]}`), c) }, "label_keys[1]"},
		{"json deep", func(c *Config) error { return c.UnmarshalJSON([]byte(strings.Repeat("[", 100))) }, ""},
		{"yaml value", func(c *Config) error { return yamlv3.Unmarshal([]byte("max_age: soon\n"), c) }, "max_age"},
		{"yaml level", func(c *Config) error { return yamlv2.Unmarshal([]byte("level: [info]\n"), c) }, "level"},
		{"yaml root", func(c *Config) error { return yamlv3.Unmarshal([]byte("just text\n"), c) }, ""},
		{"env", func(c *Config) error {
			_, err := applyEnv(*c, "LOKI_", func(k string) (string, bool) { return map[string]string{"LOKI_MAX_AGE": "x"}[k], true }, nil)
			return err
		}, "LOKI_MAX_AGE"},
		{"env secret", func(c *Config) error {
			_, err := applyEnv(*c, "X_", func(k string) (string, bool) { return map[string]string{"X_HEADERS": "s3cret"}[k], true }, nil)
			return err
		}, "X_HEADERS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := tt.run(&c)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v: no ConfigError", err)
			}
			if ce.Key != tt.key || ce.Err == nil || errors.Unwrap(ce) != ce.Err {
				t.Errorf("ConfigError %+v, want key %q", ce, tt.key)
			}
			if !strings.Contains(err.Error(), ce.Error()) {
				t.Errorf("error %q does not hold %q", err, ce.Error())
			}
		})
	}
	ce := &ConfigError{Key: "a.b", Err: ErrUnknownField}
	if ce.Error() != "a.b: unknown field" || !errors.Is(ce, ErrUnknownField) {
		t.Errorf("%q", ce.Error())
	}
	if ce := (&ConfigError{Err: errTwice}); ce.Error() != "given twice" {
		t.Errorf("no key: %q", ce.Error())
	}
}

// FuzzUnmarshal feeds a document to Config.UnmarshalJSON and to both YAML
// libraries over a Config that has fields set: each must return or fail
// without a panic, and a failure must leave the Config as it was.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		"url: x\nlabels: {a: 1}\nlabel_keys: [a, b]\ntls_config: {ca_file: c}\nlevel: info+2\n",
		`{"url":"x","labels":{"a":"b"},"max_spool_bytes":"1GiB","level":-4}`,
		"<<: {url: x}\nbatchwait: 1s\n",
		`{"labels":{"a":"1","a":"2"}}`,
		"a: &a [*a]\n",
	} {
		f.Add([]byte(s))
	}
	base := func() Config {
		return Config{URL: "u", Labels: map[string]string{"k": "v"}, LabelKeys: []string{"l"}, BatchWait: time.Second, Level: slog.LevelWarn}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decoders := map[string]func([]byte, any) error{"json": json.Unmarshal}
		for _, lib := range yamlLibs {
			decoders[lib.name] = lib.unmarshal
		}
		for name, unmarshal := range decoders {
			c := base()
			if err := unmarshal(data, &c); err != nil && !reflect.DeepEqual(c, base()) {
				t.Fatalf("%s: failed (%v) and changed the Config: %+v", name, err, c)
			}
		}
	})
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
