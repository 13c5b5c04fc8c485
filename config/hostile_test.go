package config

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lokislog/lokislog/handler"
)

// Hostile configuration files: every bad input gets an error that names
// its key (and line), never a panic, a silent acceptance or a secret in
// the message.

// secret is what the tests below hide in their input; no error may
// contain it.
const secret = "Zk9q2s3cret"

// TestHostileSecretNotShown: YAML's own errors quote anchors and values;
// a password that starts with '*' is read as an alias whose name is the
// password.
func TestHostileSecretNotShown(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"alias password", "username: u\npassword: *" + secret + "\n", "line 2"},
		{"alias token", "bearer_token: *" + secret + "x\n", "line 1"},
		{"alias header", "headers:\n  X-Key: *" + secret + "\n", "line 2"},
		{"alias url", "url: *" + secret + "@loki\n", "yaml"}, // the library's own error, no line
		{"alias anywhere", "tenant_id: t\nspool_dir: *" + secret + "\n", "line 2"},
		{"self alias", "password: &" + secret + " [*" + secret + "]\n", "password"},
		{"tag on password", "password: !!int " + secret + "\n", "password"},
		{"float tag on password", "password: !!float " + secret + "\n", "password"},
		{"tag on header", "headers: {X-Key: !!bool " + secret + "}\n", "headers.X-Key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tt.in), "yaml")
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// TestHostileSecretMangled: YAML reads "&x rest" as an anchor named x on
// "rest", and "!x rest" as a tag: a secret that starts with '&' or '!'
// loses its start without a word. On a secret (url, username, password,
// bearer_token, headers) they are an error that asks for quotes.
func TestHostileSecretMangled(t *testing.T) {
	for _, tt := range []struct{ in, key string }{
		{"username: u\npassword: &" + secret + "\n", "password"},
		{"username: u\npassword: &" + secret + " rest\n", "password"},
		{"username: u\npassword: !" + secret + "\n", "password"},
		{"username: u\npassword: !" + secret + " rest\n", "password"},
		{"bearer_token: !!" + secret + " rest\n", "bearer_token"},
		{"username: &" + secret + " u\n", "username"},
		{"url: !" + secret + " http://loki\n", "url"},
		{"headers:\n  X-Key: &" + secret + "\n", "headers.X-Key"},
		{"tenant_id: !" + secret + " t\n", "tenant_id"}, // an unknown tag anywhere
		{"labels: {a: !" + secret + " v}\n", "labels.a"},
	} {
		_, err := Load(strings.NewReader(tt.in), "yaml")
		var ce *handler.ConfigError
		switch {
		case err == nil:
			t.Errorf("%q: no error", tt.in)
		case strings.Contains(err.Error(), secret):
			t.Errorf("%q: error shows the secret: %v", tt.in, err)
		case !errors.As(err, &ce) || ce.Key != tt.key:
			t.Errorf("%q: error %v, want a ConfigError for %q", tt.in, err, tt.key)
		case !strings.Contains(err.Error(), "line "):
			t.Errorf("%q: error %v has no line", tt.in, err)
		}
	}
	// Quoted, and with the library's own tags and anchors elsewhere, all
	// is well.
	for _, in := range []string{
		"username: u\npassword: \"&" + secret + "\"\n",
		"username: u\npassword: '*" + secret + "'\n",
		"username: u\npassword: !!str " + secret + "\n",
		"url: !!binary aHR0cDovL2xva2k=\n",
		"labels: &l {a: b}\n",
		"<<: &d {tenant_id: t}\nlabels: {a: &v x, b: *v}\n",
	} {
		if _, err := Load(strings.NewReader(in), "yaml"); err != nil {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// TestHostileMultiDocument: a second YAML document was ignored; JSON with
// data after the object is already an error.
func TestHostileMultiDocument(t *testing.T) {
	for _, in := range []string{
		"url: http://a\n---\nurl: http://b\n",
		"url: http://a\n---\n- x\n",
		"url: http://a\n---\nbogus: [\n", // even a broken one
	} {
		_, err := Load(strings.NewReader(in), "yaml")
		if err == nil || !strings.Contains(err.Error(), "document") {
			t.Errorf("%q: error %v, want one about the second document", in, err)
		}
	}
	for _, in := range []string{"url: http://a\n---\n", "url: http://a\n...\n", "---\nurl: http://a\n", "url: http://a\n---\n# only a comment\n"} {
		c, err := Load(strings.NewReader(in), "yaml")
		if err != nil || c.URL != "http://a" {
			t.Errorf("%q: %+v, %v", in, c.URL, err)
		}
	}
}

// TestHostileBOM: editors on Windows start files with a byte order mark.
func TestHostileBOM(t *testing.T) {
	for format, in := range map[string]string{"yaml": "\ufeffurl: http://x\n", "json": "\ufeff{\"url\":\"http://x\"}"} {
		c, err := Load(strings.NewReader(in), format)
		if err != nil || c.URL != "http://x" {
			t.Errorf("%s with a BOM: %+v, %v", format, c.URL, err)
		}
	}
	// Only one, and only at the start.
	if _, err := Load(strings.NewReader("{\"url\":\"http://x\"}\ufeff"), "json"); err == nil {
		t.Error("json with a BOM at the end: no error")
	}
}

// TestHostileFiles: LoadFile on what is not a configuration file.
func TestHostileFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sub := filepath.Join(dir, "conf.d.yaml")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, path, want string }{
		{"directory", sub, "is a directory"},
		{"too big", write("big.yaml", "url: x\n"+strings.Repeat("#", MaxSize)), "larger than"},
		{"empty json", write("empty.json", ""), "unexpected end"},
		{"billion laughs", write("lol.yaml", laughs), "excessive aliasing"},
		{"list for map", write("list.yaml", "labels: [a, b]\n"), "line 1: labels: want a mapping"},
		{"map for list", write("map.json", `{"label_keys":{"a":"b"}}`), "label_keys: want a list"},
		{"unknown nested", write("nested.yaml", "tls_config:\n  server_name: x\n  bogus: 1\n"), "line 3: tls_config.bogus: unknown field"},
		{"key twice json", write("twice.json", `{"tls_config":{"ca_file":"a","ca_file":"b"}}`), "tls_config.ca_file: given twice"},
		{"key twice yaml", write("twice.yaml", "labels:\n  a: 1\n  a: 2\n"), "already defined"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFile(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one saying %q", err, tt.want)
			}
			if strings.Count(err.Error(), tt.path) > 1 {
				t.Errorf("error repeats the path: %v", err)
			}
		})
	}
	// An empty YAML file is the zero Config, as documented.
	if c, err := LoadFile(write("empty.yaml", "")); err != nil || !reflect.DeepEqual(c, handler.Config{}) {
		t.Errorf("empty yaml: %+v, %v", c, err)
	}
}

// laughs is the "billion laughs" document: nine levels of nine aliases.
var laughs = func() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		p := "*a" + string(rune('0'+i-1))
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [" + strings.Repeat(p+", ", 8) + p + "]\n")
	}
	b.WriteString("label_keys: *a9\n")
	return b.String()
}()

// TestHostileFIFO: a named pipe is read like a file once a writer opens
// it (as cat reads it); opening waits for the writer, as open(2) does.
func TestHostileFIFO(t *testing.T) {
	mkfifo, err := exec.LookPath("mkfifo")
	if err != nil {
		t.Skipf("no mkfifo command: %v", err)
	}
	p := filepath.Join(t.TempDir(), "pipe.yaml")
	if out, err := exec.Command(mkfifo, p).CombinedOutput(); err != nil {
		t.Skipf("mkfifo: %v: %s", err, out)
	}
	done := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err == nil {
			_, err = f.WriteString("url: http://from-pipe\n")
			f.Close()
		}
		done <- err
	}()
	c, err := LoadFile(p)
	if werr := <-done; werr != nil {
		t.Fatal(werr)
	}
	if err != nil || c.URL != "http://from-pipe" {
		t.Errorf("from a pipe: %+v, %v", c.URL, err)
	}
}
