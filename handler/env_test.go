package handler

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env is a fake environment for applyEnv.
type env map[string]string

func (e env) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }

// files is a fake file system for *_FILE variables.
type files map[string]string

func (f files) read(path string) (string, error) {
	v, ok := f[path]
	if !ok {
		return "", errors.New("open " + path + ": no such file or directory")
	}
	return strings.TrimRight(v, "\r\n"), nil
}

func TestApplyEnv(t *testing.T) {
	e := env{
		"LOKI_URL": "https://loki:3100", "LOKI_TENANT_ID": "team-a",
		"LOKI_LABELS":     " service_name = api , env=prod,empty= ",
		"LOKI_LABEL_KEYS": "http.method, level,", "LOKI_METADATA_KEYS": "request_id",
		"LOKI_LEVEL": "warn", "LOKI_ADD_SOURCE": "yes", "LOKI_FORMAT": "json", "LOKI_PROTOCOL": "json",
		"LOKI_COMPRESSION": "none", "LOKI_BATCH_WAIT": "250ms", "LOKI_BATCH_SIZE": "512KB",
		"LOKI_MAX_BUFFER_BYTES": "16MiB", "LOKI_MAX_STREAMS": "50", "LOKI_MAX_LINE_SIZE": "65536",
		"LOKI_TIMEOUT": "5s", "LOKI_MIN_BACKOFF": "100ms", "LOKI_MAX_BACKOFF": "10s", "LOKI_MAX_RETRY_TIME": "2m",
		"LOKI_USERNAME": "user", "LOKI_PASSWORD_FILE": "/run/secrets/pw",
		"LOKI_HEADERS": "X-A=1, X-B = two=2", "LOKI_CA_FILE": "/ca.pem", "LOKI_CERT_FILE": "/c.pem",
		"LOKI_KEY_FILE": "/k.pem", "LOKI_SERVER_NAME": "loki.internal", "LOKI_INSECURE_SKIP_VERIFY": "true",
		"LOKI_SPOOL_DIR": "/spool", "LOKI_SPOOL_MODE": "always", "LOKI_SPOOL_SYNC": "batch",
		"LOKI_SPOOL_SYNC_INTERVAL": "2s", "LOKI_MAX_SPOOL_BYTES": "1GiB", "LOKI_MAX_AGE": "3d", "LOKI_SPILL_AFTER": "1m",
		"OTHER_URL": "http://ignored",
	}
	got, err := applyEnv(Config{}, "LOKI_", e.lookup, files{"/run/secrets/pw": "hunter2\n"}.read)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		URL: "https://loki:3100", TenantID: "team-a",
		Labels:    map[string]string{"service_name": "api", "env": "prod", "empty": ""},
		LabelKeys: []string{"http.method", "level"}, MetadataKeys: []string{"request_id"},
		Level: slog.LevelWarn, AddSource: true, Format: "json", Protocol: "json", Compression: "none",
		BatchWait: 250 * time.Millisecond, BatchSize: 512 << 10, MaxBufferBytes: 16 << 20, MaxStreams: 50, MaxLineSize: 65536,
		Timeout: 5 * time.Second, MinBackoff: 100 * time.Millisecond, MaxBackoff: 10 * time.Second, MaxRetryTime: 2 * time.Minute,
		Username: "user", Password: "hunter2", Headers: map[string]string{"X-A": "1", "X-B": "two=2"},
		TLS:      TLSConfig{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "loki.internal", InsecureSkipVerify: true},
		SpoolDir: "/spool", SpoolMode: "always", SpoolSync: "batch", SpoolSyncInterval: 2 * time.Second,
		MaxSpoolBytes: 1 << 30, MaxAge: 72 * time.Hour, SpillAfter: time.Minute,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}

	// Another prefix; the bearer token from a file.
	got, err = applyEnv(Config{}, "APP_LOKI_", env{"APP_LOKI_URL": "http://x", "LOKI_URL": "http://no",
		"APP_LOKI_BEARER_TOKEN_FILE": "/tok"}.lookup, files{"/tok": "abc\r\n"}.read)
	if err != nil || got.URL != "http://x" || got.BearerToken != "abc" {
		t.Errorf("prefix: %+v, %v", got, err)
	}
}

// TestApplyEnvKeeps checks that unset and empty variables leave fields
// alone, code-only fields included, and that set ones replace them.
func TestApplyEnvKeeps(t *testing.T) {
	lv := new(slog.LevelVar)
	base := Config{URL: "http://a", TenantID: "t", Labels: map[string]string{"a": "1"}, Level: lv, ErrorHandler: func(error) {}}
	got, err := applyEnv(base, "LOKI_", env{"LOKI_TENANT_ID": "", "LOKI_URL": " \t", "LOKI_LABELS": "b=2"}.lookup, files{}.read)
	if err != nil {
		t.Fatal(err)
	}
	if got.URL != "http://a" || got.TenantID != "t" || got.Level != lv || got.ErrorHandler == nil ||
		!reflect.DeepEqual(got.Labels, map[string]string{"b": "2"}) {
		t.Errorf("got %+v", got)
	}
}

func TestApplyEnvErrors(t *testing.T) {
	const secret = "hunter2-very-secret"
	fs := files{"/empty": "\n", "/pw": secret}
	tests := []struct {
		name string
		env  env
		want []string // all in the error
	}{
		{"duration", env{"LOKI_BATCH_WAIT": "soon"}, []string{"LOKI_BATCH_WAIT", `"soon"`}},
		{"bare number duration", env{"LOKI_TIMEOUT": "10"}, []string{"LOKI_TIMEOUT", "unit"}},
		{"size", env{"LOKI_BATCH_SIZE": "1XB"}, []string{"LOKI_BATCH_SIZE", `"1XB"`}},
		{"size int64", env{"LOKI_MAX_SPOOL_BYTES": "lots"}, []string{"LOKI_MAX_SPOOL_BYTES"}},
		{"streams", env{"LOKI_MAX_STREAMS": "1k"}, []string{"LOKI_MAX_STREAMS", `"1k"`}},
		{"level", env{"LOKI_LEVEL": "loud"}, []string{"LOKI_LEVEL", `"loud"`}},
		{"bool", env{"LOKI_ADD_SOURCE": "maybe"}, []string{"LOKI_ADD_SOURCE", `"maybe"`}},
		{"tls bool", env{"LOKI_INSECURE_SKIP_VERIFY": "2"}, []string{"LOKI_INSECURE_SKIP_VERIFY"}},
		{"label without =", env{"LOKI_LABELS": "app=a, env"}, []string{"LOKI_LABELS", `item "env"`, "key=value"}},
		{"label empty key", env{"LOKI_LABELS": "=x"}, []string{"LOKI_LABELS", `"=x"`, "empty key"}},
		{"label twice", env{"LOKI_LABELS": "a=1,a=2"}, []string{"LOKI_LABELS", `"a"`, "twice"}},
		{"label name", env{"LOKI_LABELS": "bad-name=1"}, []string{"LOKI_LABELS", `"bad-name"`}},
		{"header without =", env{"LOKI_HEADERS": "X-A=1," + secret}, []string{"LOKI_HEADERS", "item 2"}},
		{"both password", env{"LOKI_PASSWORD": secret, "LOKI_PASSWORD_FILE": "/pw"}, []string{"LOKI_PASSWORD and LOKI_PASSWORD_FILE"}},
		{"both token", env{"LOKI_BEARER_TOKEN": secret, "LOKI_BEARER_TOKEN_FILE": "/pw"}, []string{"LOKI_BEARER_TOKEN and LOKI_BEARER_TOKEN_FILE"}},
		{"missing file", env{"LOKI_BEARER_TOKEN_FILE": "/nope"}, []string{"LOKI_BEARER_TOKEN_FILE", "/nope"}},
		{"several", env{"LOKI_BATCH_WAIT": "x", "LOKI_LEVEL": "y"}, []string{"LOKI_BATCH_WAIT", "LOKI_LEVEL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := applyEnv(Config{}, "LOKI_", tt.env.lookup, fs.read)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks a secret: %q", err)
			}
		})
	}
}

// TestConfigFromEnv goes through the real environment and files.
func TestConfigFromEnv(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxSecretFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LOKI_URL", "http://loki:3100")
	t.Setenv("LOKI_USERNAME", "u")
	t.Setenv("LOKI_PASSWORD_FILE", pw)
	t.Setenv("LOKI_BATCH_SIZE", "1MiB")
	c, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.URL != "http://loki:3100" || c.Username != "u" || c.Password != "s3cret" || c.BatchSize != 1<<20 {
		t.Errorf("got %+v", c)
	}
	if _, err := validate(c); err != nil {
		t.Errorf("does not validate: %v", err)
	}

	for path, want := range map[string]string{empty: "empty", big: "larger", filepath.Join(dir, "none"): "LOKI_PASSWORD_FILE"} {
		t.Setenv("LOKI_PASSWORD_FILE", path)
		if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("password file %s: %v, want an error mentioning %q", filepath.Base(path), err, want)
		}
	}
	t.Setenv("LOKI_PASSWORD_FILE", "")

	t.Setenv("MY_LOKI_URL", "http://other")
	if c, err := ConfigFromEnvPrefix("MY_LOKI_"); err != nil || c.URL != "http://other" || c.Username != "" {
		t.Errorf("prefix: %+v, %v", c, err)
	}

	// ApplyEnv leaves c unchanged on error.
	t.Setenv("LOKI_BATCH_WAIT", "bad")
	c = Config{TenantID: "keep"}
	if err := c.ApplyEnv(EnvPrefix); err == nil || !strings.HasPrefix(err.Error(), "handler: environment: ") || c.TenantID != "keep" || c.URL != "" {
		t.Errorf("ApplyEnv with a bad variable: %+v, %v", c, err)
	}
}

// TestEnvCoversEveryKey checks that every configuration key has its
// variable: the key in upper case (tls_config's keys without a prefix).
func TestEnvCoversEveryKey(t *testing.T) {
	have := map[string]bool{}
	for _, ev := range envVars() {
		if have[ev.name] {
			t.Errorf("%s listed twice", ev.name)
		}
		have[ev.name] = true
	}
	var keys []string
	add := func(typ reflect.Type) {
		for i := range typ.NumField() {
			if n, _, _ := strings.Cut(typ.Field(i).Tag.Get("yaml"), ","); n != "" && n != "-" && n != "tls_config" {
				keys = append(keys, n)
			}
		}
	}
	add(reflect.TypeFor[fileConfig]())
	add(reflect.TypeFor[TLSConfig]())
	for _, k := range keys {
		if !have[strings.ToUpper(k)] {
			t.Errorf("no environment variable for %q", k)
		}
	}
	if len(keys) != len(envVars()) {
		t.Errorf("%d keys, %d variables", len(keys), len(envVars()))
	}
}
