package config

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/lokislog/lokislog/handler"
)

//go:embed testdata
var testdata embed.FS

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// exampleConfig is what testdata/config.yaml and config.json hold.
func exampleConfig() handler.Config {
	return handler.Config{
		URL: "https://loki.example.com:3100", TenantID: "team-a",
		Labels:    map[string]string{"service_name": "mu-api", "env": "prod"},
		LabelKeys: []string{"http.method"}, MetadataKeys: []string{"request_id", "user_id"},
		Level: slog.LevelDebug, AddSource: true, Format: "json",
		Protocol: "json", Compression: "gzip", BatchWait: 2 * time.Second, BatchSize: 512 << 10,
		MaxBufferBytes: 16 << 20, MaxStreams: 500, MaxLineSize: 128 << 10,
		Timeout: 15 * time.Second, MinBackoff: 250 * time.Millisecond, MaxBackoff: time.Minute, MaxRetryTime: 5 * time.Minute,
		Username: "loki-user", Password: "s3cret", Headers: map[string]string{"X-Env": "prod"},
		TLS:      handler.TLSConfig{ServerName: "loki.internal"},
		SpoolDir: "/var/lib/mu-api/loki-spool", SpoolMode: "spill", SpoolSync: "interval",
		SpoolSyncInterval: 500 * time.Millisecond, MaxSpoolBytes: 1 << 30, MaxAge: 7 * 24 * time.Hour, SpillAfter: 10 * time.Second,
	}
}

func TestLoadFile(t *testing.T) {
	want := exampleConfig()
	for _, file := range []string{"config.yaml", "config.json"} {
		t.Run(file, func(t *testing.T) {
			got, err := LoadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("loaded\n%+v\nwant\n%+v", got, want)
			}
			// The example must be a valid configuration: New validates
			// and never contacts Loki. The spool goes to a temporary
			// directory.
			got.SpoolDir = t.TempDir()
			h, err := handler.New(got)
			if err != nil {
				t.Fatalf("example does not validate: %v", err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing to send: do not wait for Loki
			_ = h.Shutdown(ctx)
		})
	}
	got, err := LoadFile(filepath.Join("testdata", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got.URL != "http://loki:3100" || got.Labels["service_name"] != "api" || got.Level != nil || got.BatchWait != 0 {
		t.Errorf("minimal: %+v", got)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, format, in string
		key              string   // the ConfigError's Key; "-" for none
		want             []string // all must be in the error
	}{
		{"unknown key", "yaml", "url: x\nbogus: 1\n", "bogus", []string{"line 2: bogus: unknown field"}},
		{"promtail name", "yaml", "batchwait: 1s\n", "batchwait", []string{"batchwait: unknown field", "batch_wait"}},
		{"nested unknown yaml", "yaml", "tls_config:\n  ca_fle: x\n", "tls_config.ca_fle", []string{"line 2: tls_config.ca_fle: unknown field"}},
		{"nested unknown json", "json", `{"tls_config":{"ca_fle":"x"}}`, "tls_config.ca_fle", []string{"tls_config.ca_fle: unknown field"}},
		{"unknown json", "json", `{"url":"x","batchsize":1}`, "batchsize", []string{"batchsize: unknown field", "batch_size"}},
		{"bad duration", "yaml", "batch_wait: 1x\n", "batch_wait", []string{"line 1", "batch_wait", `"1x"`}},
		{"bare number duration", "yaml", "timeout: 5\n", "timeout", []string{"timeout", `"5"`}},
		{"bare number duration json", "json", `{"timeout":5}`, "timeout", []string{"timeout", "5"}},
		{"negative size", "yaml", "batch_size: -1\n", "batch_size", []string{"batch_size", `"-1"`}},
		{"bad size unit", "json", `{"batch_size":"1XB"}`, "batch_size", []string{"batch_size", `"1XB"`}},
		{"size overflow", "yaml", "max_spool_bytes: 99999999999TiB\n", "max_spool_bytes", []string{"max_spool_bytes", "too large"}},
		{"bad level", "yaml", "level: loud\n", "level", []string{"level", `"loud"`}},
		{"bad level json", "json", `{"level":true}`, "level", []string{"level"}},
		{"list for map", "yaml", "labels: [a, b]\n", "labels", []string{"line 1", "labels", "mapping"}},
		{"string for int json", "json", `{"max_streams":"many"}`, "max_streams", []string{"max_streams", `"many"`}},
		{"fraction for int yaml", "yaml", "max_streams: 1.5\n", "max_streams", []string{"max_streams", `"1.5"`}},
		{"number for label json", "json", `{"labels":{"a":1}}`, "labels.a", []string{"labels", "number", "string"}},
		{"string for bool yaml", "yaml", "add_source: sometimes\n", "add_source", []string{"add_source"}},
		{"string for bool json", "json", `{"add_source":"true"}`, "add_source", []string{"add_source", "boolean"}},
		{"map for string yaml", "yaml", "url:\n  a: b\n", "url", []string{"line 2", "url", "want a string"}},
		{"bad list item", "yaml", "label_keys:\n  - a\n  - [b]\n", "label_keys[1]", []string{"line 3", "label_keys[1]"}},
		// yaml.v3 refuses a key given twice itself, with both lines.
		{"duplicate yaml", "yaml", "url: a\nurl: b\n", "-", []string{"line 2", `"url"`, "already defined at line 1"}},
		{"duplicate json", "json", `{"url":"a","url":"b"}`, "url", []string{"url", "twice"}},
		{"duplicate label json", "json", `{"labels":{"a":"1","a":"2"}}`, "labels.a", []string{"labels.a", "twice"}},
		{"not a mapping", "yaml", "- url\n", "", []string{"mapping"}},
		{"not an object", "json", `["url"]`, "", []string{"object"}},
		{"tls not a mapping", "yaml", "tls_config: yes\n", "tls_config", []string{"tls_config", "mapping"}},
		{"merge key", "yaml", "base: &b {url: x}\n", "base", []string{"base: unknown field"}},
		{"unknown key in a merged mapping", "yaml", "url: x\n<<: {bogus: 1}\n", "bogus", []string{"line 2", "bogus: unknown field"}},
		{"bad tag", "yaml", "max_streams: !!int many\n", "-", []string{"many"}},
		{"json trailing", "json", `{"url":"x"} {}`, "-", []string{"invalid"}},
		{"json syntax", "json", `{"url":`, "-", []string{"unexpected end"}},
		{"format", "toml", "url = 'x'", "-", []string{"toml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.in), tt.format)
			if err == nil {
				t.Fatalf("no error for %q", tt.in)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			var ce *handler.ConfigError
			switch found := errors.As(err, &ce); {
			case tt.key == "-" && found:
				t.Errorf("error %q has a ConfigError for %q, want none", err, ce.Key)
			case tt.key != "-" && !found:
				t.Errorf("error %q has no ConfigError, want one for %q", err, tt.key)
			case found && ce.Key != tt.key:
				t.Errorf("ConfigError key %q, want %q", ce.Key, tt.key)
			}
			if !strings.HasPrefix(err.Error(), "config: ") || strings.Contains(err.Error(), "handler: ") {
				t.Errorf("error %q: want one prefix, \"config: \"", err)
			}
		})
	}
}

// TestLoadMerge: merge keys and aliases are the YAML library's; a key of
// the document replaces the merged one.
func TestLoadMerge(t *testing.T) {
	src := "defaults: &d {url: http://x, tenant_id: a}\n"
	c, err := Load(strings.NewReader("<<: {url: http://x, tenant_id: a}\ntenant_id: b\n"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://x" || c.TenantID != "b" {
		t.Errorf("merged: %+v", c)
	}
	var app struct {
		Defaults map[string]string `yaml:"defaults"`
		Loki     handler.Config    `yaml:"loki"`
	}
	if err := yaml.Unmarshal([]byte(src+"loki:\n  <<: *d\n  labels: {env: prod}\n"), &app); err != nil {
		t.Fatal(err)
	}
	if app.Loki.URL != "http://x" || app.Loki.TenantID != "a" || app.Loki.Labels["env"] != "prod" {
		t.Errorf("merged from an anchor: %+v", app.Loki)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct{ file, want string }{
		{"promtail_style.yaml", "line 3: batchwait: unknown field (lokislog calls it batch_wait)"},
		{"typo_nested.json", "tls_config.ca_fle"},
		{"missing.yaml", "no such file"},
		{"config.toml", "extension"},
	}
	for _, tt := range tests {
		_, err := LoadFile(filepath.Join("testdata", tt.file))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tt.file, err, tt.want)
		}
	}
	big := strings.Repeat("#", MaxSize+1)
	if _, err := Load(strings.NewReader(big), "yaml"); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("oversized config: %v", err)
	}
	if c, err := Load(strings.NewReader(strings.Repeat("#", MaxSize)), "yaml"); err != nil || !reflect.DeepEqual(c, handler.Config{}) {
		t.Errorf("config of MaxSize bytes: %+v, %v", c, err)
	}
	if c, err := Load(strings.NewReader("# nothing\n"), "yaml"); err != nil || !reflect.DeepEqual(c, handler.Config{}) {
		t.Errorf("empty YAML: %+v, %v", c, err)
	}
}

// TestLoadLimits: inputs that would make the decoders slow or deep are
// refused with a clear error.
func TestLoadLimits(t *testing.T) {
	labels := func(n int) string {
		var b strings.Builder
		b.WriteString("url: x\nlabels:\n")
		for i := range n {
			fmt.Fprintf(&b, "  k%d: v\n", i)
		}
		return b.String()
	}
	c, err := Load(strings.NewReader(labels(maxKeys)), "yaml")
	if err != nil || len(c.Labels) != maxKeys {
		t.Errorf("%d labels: %d, %v", maxKeys, len(c.Labels), err)
	}
	if _, err := Load(strings.NewReader(labels(maxKeys+1)), "yaml"); err == nil || !strings.Contains(err.Error(), "line 3: a mapping of more than 1000 keys") {
		t.Errorf("%d labels: %v", maxKeys+1, err)
	}
	deep := `{"labels":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "}"
	if _, err := Load(strings.NewReader(deep), "json"); err == nil || !strings.Contains(err.Error(), "config: nested deeper") {
		t.Errorf("deep JSON: %v", err)
	}
	deep = "labels: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n"
	if _, err := Load(strings.NewReader(deep), "yaml"); err == nil || !strings.Contains(err.Error(), "labels: want a mapping, got a list") {
		t.Errorf("deep YAML: %v", err)
	}
}

// TestConfigRoundTrip writes a Config with every serialisable field set
// and reads it back, in both formats.
func TestConfigRoundTrip(t *testing.T) {
	c := exampleConfig()
	c.TLS = handler.TLSConfig{CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem", ServerName: "s", InsecureSkipVerify: true}
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
	for format, marshal := range marshalers {
		out, err := marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Load(strings.NewReader(string(out)), format)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, out)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("%s round trip:\n%+v\nwant\n%+v\n%s", format, back, c, out)
		}
		if format == "json" && (!strings.Contains(string(out), `"batch_wait":"2s"`) || !strings.Contains(string(out), `"level":"WARN+2"`)) {
			t.Errorf("json form: %s", out)
		}
	}
	// The zero Config writes nothing.
	if j, _ := json.Marshal(handler.Config{}); string(j) != "{}" {
		t.Errorf("zero Config as JSON: %s", j)
	}
}

// marshalers write a Config in each format Load reads.
var marshalers = map[string]func(any) ([]byte, error){"json": json.Marshal, "yaml": yaml.Marshal}

// FuzzLoad feeds configuration files to both decoders: they must return a
// Config or an error, never panic, and a Config they return must survive
// a round trip through its own format.
func FuzzLoad(f *testing.F) {
	for _, file := range []string{"config.yaml", "config.json", "minimal.yaml", "promtail_style.yaml", "typo_nested.json"} {
		b, err := testdata.ReadFile("testdata/" + file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("batch_wait: 1d2h\nmax_spool_bytes: 1.5GiB\nlevel: -8\n"))
	f.Add([]byte(`{"labels":null,"tls_config":null,"level":3}`))
	f.Add([]byte("<<: {url: x}\nlabels: {a: 1.10, b: true}\nlabel_keys: [1, ~]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for format, marshal := range marshalers {
			c, err := Load(strings.NewReader(string(data)), format)
			if err != nil {
				continue
			}
			out, err := marshal(c)
			if err != nil {
				t.Fatalf("%s: marshal a loaded config: %v", format, err)
			}
			c2, err := Load(strings.NewReader(string(out)), format)
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
func normalize(c handler.Config) handler.Config {
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
