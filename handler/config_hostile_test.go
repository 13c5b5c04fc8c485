package handler

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Hostile configuration input: every bad value gets an error that names
// its key, never a panic, a silent acceptance or a secret in the message.

// hostileSecret is the secret the tests below hide in their input; no
// error may contain it.
const hostileSecret = "Zk9q2s3cret"

// TestHostileURLNotShown: a URL that validate refuses is shown in the
// error only without its password, query and opaque part, which may hold
// credentials ("user:pass@host" without a scheme parses as the scheme
// "user" with the opaque part "pass@host").
func TestHostileURLNotShown(t *testing.T) {
	for _, u := range []string{
		"user:" + hostileSecret + "@loki:3100",
		"loki-user:" + hostileSecret + "@loki.example.com",
		"http:user:" + hostileSecret + "@loki",
		"mailto:" + hostileSecret + "@x",
		"ftp://loki/?token=" + hostileSecret,
		"ftp://loki/#" + hostileSecret,
		"http://u:" + hostileSecret + "@",
		"//u:" + hostileSecret + "@h",
		"http://u:" + hostileSecret + "@h:port",
		"http://u:" + hostileSecret + "@[::1",
		"http://u:" + hostileSecret + "@h:99999",
		"///?key=" + hostileSecret,
	} {
		_, err := validate(Config{URL: u})
		if err == nil {
			t.Errorf("%q: no error", u)
			continue
		}
		if !strings.Contains(err.Error(), "url") {
			t.Errorf("%q: error %q does not name the url", u, err)
		}
		if strings.Contains(err.Error(), hostileSecret) {
			t.Errorf("%q: error shows the secret: %v", u, err)
		}
	}
}

// TestHostileURLPort: a port the URL parser takes but no server has is an
// error at New, not a push that can never connect.
func TestHostileURLPort(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"http://loki:3100", true},
		{"http://loki:65535", true},
		{"http://[::1]:1", true},
		{"http://loki:", true}, // empty port: the scheme's
		{"http://loki:0", false},
		{"http://loki:65536", false},
		{"http://loki:99999999999", false},
		{"http://loki:00000000000000000000003100", true},
	} {
		_, err := validate(Config{URL: tt.url})
		switch {
		case tt.ok && err != nil:
			t.Errorf("%q: %v", tt.url, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "port")):
			t.Errorf("%q: error %v, want one about the port", tt.url, err)
		}
	}
}

// TestHostileTenantID: Loki (dskit) refuses tenant IDs longer than 150
// bytes, with characters outside a-z A-Z 0-9 ! - _ . * ' ( ), or "." and
// "..", and reads "a|b" as two tenants (a 400 on push). Each would have
// every push rejected; New says so instead.
func TestHostileTenantID(t *testing.T) {
	good := []string{"", "team-a", "A_b.c!*'()", "1", strings.Repeat("a", 150), "...", ".a"}
	bad := []string{"team a", "a|b", "a/b", ".", "..", strings.Repeat("a", 151), "é", "a:b", "a\tb", "a\r\nX-Evil: 1", " team-a", "team-a\n"}
	for _, id := range good {
		if _, err := validate(Config{TenantID: id}); err != nil {
			t.Errorf("tenant %q: %v", id, err)
		}
	}
	for _, id := range bad {
		_, err := validate(Config{TenantID: id})
		if err == nil || !strings.Contains(err.Error(), "tenant_id") {
			t.Errorf("tenant %q: error %v, want one naming tenant_id", id, err)
			continue
		}
		if strings.ContainsAny(err.Error(), "\r\n\t") || len(err.Error()) > 300 {
			t.Errorf("tenant %q: error not printable or too long: %q", id, err)
		}
	}
}

// TestHostileHeaders: header names must be HTTP tokens, values must not
// hold line breaks (header injection), and two names that differ only in
// case are one header whose value would depend on map order. validate
// reports them with the other problems; values never appear.
func TestHostileHeaders(t *testing.T) {
	for _, tt := range []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{"crlf in value", map[string]string{"X-A": "1\r\nX-Evil: " + hostileSecret}, `headers.X-A`},
		{"lf in value", map[string]string{"X-A": hostileSecret + "\n"}, `headers.X-A`},
		{"nul in value", map[string]string{"X-A": hostileSecret + "\x00"}, `headers.X-A`},
		{"crlf in name", map[string]string{"X-A\r\nX-Evil: 1": hostileSecret}, `header name "X-A\r\nX-Evil: 1"`},
		{"space in name", map[string]string{"X A": hostileSecret}, `header name "X A"`},
		{"colon in name", map[string]string{"X-A:": hostileSecret}, `header name "X-A:"`},
		{"empty name", map[string]string{"": hostileSecret}, `header name ""`},
		{"case twice", map[string]string{"X-Key": hostileSecret, "x-key": hostileSecret + "2"}, "given twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A bad format too: all problems come at once.
			_, err := validate(Config{Headers: tt.headers, Format: "xml"})
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "format") {
				t.Errorf("error %q does not mention %q and format", err, tt.want)
			}
			if strings.Contains(err.Error(), hostileSecret) {
				t.Errorf("error shows a header value: %v", err)
			}
		})
	}
	if _, err := validate(Config{Headers: map[string]string{"X-A": "1\t2", "X-Scope-OrgID": "t", "Authorization": "Bearer x"}}); err != nil {
		t.Errorf("valid headers: %v", err)
	}
	// From the environment too: a name given twice in other case.
	c, err := applyEnv(Config{}, "LOKI_", env{"LOKI_HEADERS": "X-Key=" + hostileSecret + ",x-key=2"}.lookup, files{}.read)
	if err == nil {
		_, err = validate(c)
	}
	if err == nil || !strings.Contains(err.Error(), "twice") || strings.Contains(err.Error(), hostileSecret) {
		t.Errorf("LOKI_HEADERS with a name twice: %v", err)
	}
	// And a line break in a value: header injection.
	c, err = applyEnv(Config{}, "LOKI_", env{"LOKI_HEADERS": "X-Key=" + hostileSecret + "\r\nX-Evil: 1"}.lookup, files{}.read)
	if err == nil {
		_, err = validate(c)
	}
	if err == nil || !strings.Contains(err.Error(), "headers.X-Key") || strings.Contains(err.Error(), hostileSecret) {
		t.Errorf("LOKI_HEADERS with CR LF: %v", err)
	}
}

// TestHostileUsernameColon: basic auth splits user and password at the
// first colon, so a username with one authenticates as someone else.
func TestHostileUsernameColon(t *testing.T) {
	_, err := validate(Config{Username: "team:" + hostileSecret, Password: "p"})
	if err == nil || !strings.Contains(err.Error(), "username") || strings.Contains(err.Error(), hostileSecret) {
		t.Errorf("username with a colon: %v", err)
	}
	if _, err := validate(Config{Username: "user@example.com", Password: "a:b"}); err != nil {
		t.Errorf("colon in the password: %v", err)
	}
}

// TestHostileEnvEmptyPrefix: with an empty prefix ApplyEnv would read
// USERNAME (always set on Windows), URL, LEVEL, FORMAT, TIMEOUT... of
// whatever else runs in the environment.
func TestHostileEnvEmptyPrefix(t *testing.T) {
	t.Setenv("USERNAME", "someone")
	t.Setenv("FORMAT", "xml")
	c := Config{URL: "http://keep"}
	err := c.ApplyEnv("")
	if err == nil || !strings.Contains(err.Error(), "prefix") {
		t.Errorf("empty prefix: %v", err)
	}
	if c.URL != "http://keep" || c.Username != "" {
		t.Errorf("empty prefix changed the config: %+v", c)
	}
	if _, err := ConfigFromEnvPrefix(""); err == nil {
		t.Error("ConfigFromEnvPrefix(\"\"): no error")
	}
}

// TestHostileEnvPairs: malformed LOKI_LABELS and LOKI_HEADERS items.
func TestHostileEnvPairs(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want map[string]string // nil: an error
	}{
		{"a", nil},
		{"=b", nil},
		{" = b", nil},
		{"a=1,a=2", nil},
		{"a=1, a =2", nil},
		{"a==b", map[string]string{"a": "=b"}},
		{"a=", map[string]string{"a": ""}},
		{" a = 1 ,, b=2 ,", map[string]string{"a": "1", "b": "2"}},
	} {
		for _, key := range []string{"LOKI_LABELS", "LOKI_HEADERS"} {
			c, err := applyEnv(Config{}, "LOKI_", env{key: tt.v}.lookup, files{}.read)
			got := c.Labels
			if key == "LOKI_HEADERS" {
				got = c.Headers
			}
			switch {
			case tt.want == nil && err == nil:
				t.Errorf("%s=%q: no error, got %v", key, tt.v, got)
			case tt.want == nil:
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Key != key {
					t.Errorf("%s=%q: error %v does not name the variable", key, tt.v, err)
				}
			case err != nil:
				t.Errorf("%s=%q: %v", key, tt.v, err)
			case len(got) != len(tt.want):
				t.Errorf("%s=%q: %v, want %v", key, tt.v, got, tt.want)
			default:
				for k, v := range tt.want {
					if got[k] != v {
						t.Errorf("%s=%q: %v, want %v", key, tt.v, got, tt.want)
					}
				}
			}
		}
	}
	// Header items are named by position, never quoted.
	_, err := applyEnv(Config{}, "LOKI_", env{"LOKI_HEADERS": "X-A=1," + hostileSecret}.lookup, files{}.read)
	if err == nil || strings.Contains(err.Error(), hostileSecret) {
		t.Errorf("LOKI_HEADERS error: %v", err)
	}
}

// TestHostileSecretFiles: *_FILE variables on real files.
func TestHostileSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	crlf := write("crlf", hostileSecret+"\r\n")
	huge := write("huge", strings.Repeat(hostileSecret, maxSecretFile/len(hostileSecret)+1))
	empty := write("empty", "\r\n\n")
	inner := write("inner", "a\nb\n")
	for _, tt := range []struct {
		name, path, want string // want: the value, or "!" and what the error says
	}{
		{"crlf", crlf, hostileSecret},
		{"inner line break kept", inner, "a\nb"},
		{"huge", huge, "!larger than 65536 bytes"},
		{"empty", empty, "!is empty"},
		{"directory", dir, "!is a directory"},
		{"missing", filepath.Join(dir, "nope"), "!nope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := applyEnv(Config{}, "LOKI_", env{"LOKI_USERNAME": "u", "LOKI_PASSWORD_FILE": tt.path}.lookup, readSecretFile)
			want, isErr := strings.CutPrefix(tt.want, "!")
			switch {
			case !isErr && err != nil:
				t.Fatal(err)
			case !isErr && c.Password != want:
				t.Fatalf("password %q, want %q", c.Password, want)
			case isErr && err == nil:
				t.Fatalf("no error, password %q", c.Password)
			case isErr:
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Key != "LOKI_PASSWORD_FILE" || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v: want a ConfigError for LOKI_PASSWORD_FILE saying %q", err, want)
				}
				if strings.Contains(err.Error(), hostileSecret) {
					t.Errorf("error shows the secret: %v", err)
				}
				if strings.Count(err.Error(), tt.path) > 1 {
					t.Errorf("error repeats the path: %v", err)
				}
			}
		})
	}
	// Both set: an error, and neither value appears.
	_, err := applyEnv(Config{}, "LOKI_", env{"LOKI_BEARER_TOKEN": hostileSecret, "LOKI_BEARER_TOKEN_FILE": crlf}.lookup, readSecretFile)
	if err == nil || strings.Contains(err.Error(), hostileSecret) {
		t.Errorf("both set: %v", err)
	}
}

// TestHostileNumbers: sizes, durations and counts from JSON and the
// environment: errors name the key; nothing wraps or goes negative.
func TestHostileNumbers(t *testing.T) {
	for _, tt := range []struct {
		key, env, v string
		ok          bool
	}{
		{"batch_size", "BATCH_SIZE", "1MiB", true},
		{"batch_size", "BATCH_SIZE", "1.5GB", true},
		{"batch_size", "BATCH_SIZE", " 1 MiB ", true},
		{"max_spool_bytes", "MAX_SPOOL_BYTES", "9999999TiB", false},
		{"max_spool_bytes", "MAX_SPOOL_BYTES", "8388608TiB", false}, // 2^63
		{"max_spool_bytes", "MAX_SPOOL_BYTES", "9223372036854775808", false},
		{"batch_size", "BATCH_SIZE", "-1", false},
		{"batch_size", "BATCH_SIZE", "1e400", false},
		{"batch_size", "BATCH_SIZE", "0x10", false},
		{"batch_size", "BATCH_SIZE", "1.5", false},
		{"batch_size", "BATCH_SIZE", "NaN", false},
		{"batch_size", "BATCH_SIZE", "Inf", false},
		{"max_age", "MAX_AGE", "7d", true},
		{"max_age", "MAX_AGE", "1y", false},
		{"max_age", "MAX_AGE", "9999999h", false},
		{"max_age", "MAX_AGE", "999999999w", false},
		{"max_age", "MAX_AGE", "NaN", false},
		{"max_age", "MAX_AGE", "Infd", false},
		{"max_age", "MAX_AGE", "5", false},
		{"max_streams", "MAX_STREAMS", "99999999999999999999", false},
		{"max_streams", "MAX_STREAMS", "1e3", false},
		{"level", "LEVEL", "99999999999", false},
	} {
		var c Config
		err := json.Unmarshal([]byte(`{"`+tt.key+`":"`+tt.v+`"}`), &c)
		ec, eerr := applyEnv(Config{}, "LOKI_", env{"LOKI_" + tt.env: tt.v}.lookup, files{}.read)
		for _, r := range []struct {
			name string
			err  error
			c    Config
		}{{tt.key, err, c}, {"LOKI_" + tt.env, eerr, ec}} {
			var ce *ConfigError
			switch {
			case tt.ok && r.err != nil:
				t.Errorf("%s=%q: %v", r.name, tt.v, r.err)
			case !tt.ok && r.err == nil:
				t.Errorf("%s=%q: no error (%+v)", r.name, tt.v, r.c)
			case !tt.ok && (!errors.As(r.err, &ce) || ce.Key != r.name):
				t.Errorf("%s=%q: error %v does not name the key", r.name, tt.v, r.err)
			case r.c.BatchSize < 0 || r.c.MaxSpoolBytes < 0 || r.c.MaxAge < 0 || r.c.MaxStreams < 0:
				t.Errorf("%s=%q: negative result %+v", r.name, tt.v, r.c)
			}
		}
	}
	// A negative duration decodes (it is a duration) but New refuses it.
	var c Config
	if err := json.Unmarshal([]byte(`{"max_age":"-1s","batch_wait":"-1d"}`), &c); err != nil {
		t.Fatal(err)
	}
	if _, err := validate(c); err == nil || !strings.Contains(err.Error(), "max_age") || !strings.Contains(err.Error(), "batch_wait") {
		t.Errorf("negative durations: %v", err)
	}
	if c.BatchWait != -24*time.Hour {
		t.Errorf("-1d read as %v", c.BatchWait)
	}
}

// TestHostileStrings: label names and values with control characters,
// invalid UTF-8 and great lengths.
func TestHostileStrings(t *testing.T) {
	for _, tt := range []struct {
		labels map[string]string
		want   string // "" valid
	}{
		{map[string]string{"a": "line\nbreak\x00\x7f"}, ""}, // escaped when written
		{map[string]string{"a\n": "x"}, "label name"},
		{map[string]string{"é": "x"}, "label name"},
		{map[string]string{strings.Repeat("a", 1025): "x"}, "label name"},
		{map[string]string{"a": "\xff\xfe"}, "UTF-8"},
		{map[string]string{"a": strings.Repeat("é", 1025)}, "2048"},
	} {
		_, err := validate(Config{Labels: tt.labels})
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%q: %v", tt.labels, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%q: error %v, want one mentioning %q", tt.labels, err, tt.want)
		case err != nil && len(err.Error()) > 2000:
			t.Errorf("error of %d bytes", len(err.Error()))
		}
	}
}

// TestHostileYAMLNestedDuplicate: a key given twice inside a mapping
// (labels, headers, tls_config) was reported as "cannot unmarshal !!map
// into []handler.yamlNode" on the line of the parent: the YAML libraries
// hand UnmarshalYAML an error whose message list is a window on their own
// list, which the next try overwrote. (yaml.v2's Unmarshal does not look
// for keys given twice at all; its UnmarshalStrict does.)
func TestHostileYAMLNestedDuplicate(t *testing.T) {
	for _, lib := range yamlLibs[:1] {
		for _, in := range []string{
			"labels:\n  a: 1\n  a: 2\n",
			"url: x\nheaders:\n  X-A: 1\n  X-A: 2\n",
			"tls_config:\n  ca_file: a\n  ca_file: b\n",
		} {
			var c Config
			err := lib.unmarshal([]byte(in), &c)
			if err == nil || !strings.Contains(err.Error(), "already defined") || strings.Contains(err.Error(), "yamlNode") {
				t.Errorf("%s: %q: error %v, want the library's \"already defined\"", lib.name, in, err)
			}
		}
	}
}
